"""A real Prometheus scrapes a real API server, and PromQL sees what the requests did.

The API runs as ``nesydet serve`` (SQLite, local storage, multiprocess metrics in a temporary
directory); Prometheus scrapes it every second. Without the ``prometheus`` server those tests are
skipped, and under ``CI=true`` they fail. The Grafana dashboard's queries are checked here too:
its panels are well formed, name the service's metrics, and are valid PromQL.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

# Registers the service's metrics, those only workers record included.
import nesydet.observability.metrics
import nesydet.observability.worker_metrics  # noqa: F401
from tests.integration.prom import (
    ApiServer,
    Prometheus,
    PromQLError,
    prometheus_binary,
    start_api_server,
    start_prometheus,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "grafana" / "dashboards" / "nesydet.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
# Series the dashboard must chart (the spec's panels).
DASHBOARD_METRICS = {
    "api_requests_total",
    "api_request_duration_seconds_bucket",
    "inference_jobs_total",
    "queue_length",
    "active_workers",
    "active_jobs",
    "inference_duration_seconds_bucket",
    "model_inference_time_seconds_bucket",
    "detection_count_total",
    "uploaded_files_total",
    "upload_rejected_files_total",
}
# Every API replica reports the same value of these: read once, with max(), never added up.
CLUSTER_GAUGES = ("queue_length", "active_workers", "jobs_current")
WORKER_JOB = 'job="celery_workers"'
# What the "Per worker" row charts for each worker (``instance`` of the workers' job).
PER_WORKER_METRICS = {
    "inference_jobs_total",
    "model_inference_time_seconds_count",
    "model_inference_time_seconds_bucket",
    "active_jobs",
    "cpu_usage_percent",
    "memory_usage_bytes",
}
# Read at scrape time by the API's /metrics collector, so in no registry.
SCRAPE_TIME_GAUGES = {"queue_length", "active_workers"}
# Grafana's own variables, replaced as Grafana would before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$__range": "1h", "$__rate_interval": "1m", "$__interval": "15s"}

UPLOAD = "/api/v1/inference/upload"
UPLOAD_TEMPLATE = "/api/v1/uploads/{upload_id}"
UNKNOWN_UPLOAD = "upl_000000000000"


def small_png() -> bytes:
    """Return a 96x80 RGB PNG with some structure in it."""
    image = Image.new("RGB", (96, 80), (30, 90, 150))
    for x in range(0, 96, 8):
        image.putpixel((x, x % 80), (255, 255, 0))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    prometheus_binary()  # skip before paying for a server when Prometheus is missing
    server = start_api_server(tmp_path_factory.mktemp("api"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def prometheus(
    api_server: ApiServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    prom = start_prometheus(tmp_path_factory.mktemp("prometheus"), [api_server.target])
    try:
        yield prom
    finally:
        prom.stop()


def promql_sel(metric: str, **labels: str) -> str:
    """Return ``metric{a="x",...}`` with the label values quoted."""
    inner = ",".join(f'{name}="{value}"' for name, value in labels.items())
    return f"{metric}{{{inner}}}"


@pytest.mark.slow
def test_prometheus_scrapes_request_and_upload_metrics(
    api_server: ApiServer, prometheus: Prometheus
) -> None:
    with httpx.Client(base_url=api_server.url, timeout=30) as http:
        upload = http.post(UPLOAD, files=[("files", ("scene.png", small_png(), "image/png"))])
        assert upload.status_code == 200, upload.text
        upload_id = upload.json()["data"]["upload_id"]
        assert upload_id.startswith("upl_")
        found = http.get(f"/api/v1/uploads/{upload_id}")
        assert found.status_code == 200, found.text
        missing = http.get(f"/api/v1/uploads/{UNKNOWN_UPLOAD}")
        assert missing.status_code == 404, missing.text
    done = time.time()

    prometheus.wait_for_scrape_after(done + 0.05)

    up = prometheus.value(promql_sel("up", job=prometheus.job, instance=api_server.target))
    assert up == 1, api_server.process.output()

    def requests(method: str, endpoint: str, status: str) -> float | None:
        return prometheus.value(
            promql_sel("api_requests_total", method=method, endpoint=endpoint, status=status)
        )

    assert (
        prometheus.value(promql_sel("api_requests_total", endpoint=UPLOAD_TEMPLATE, status="404"))
        == 1
    )
    assert requests("GET", UPLOAD_TEMPLATE, "404") == 1
    assert requests("GET", UPLOAD_TEMPLATE, "200") == 1
    assert requests("POST", UPLOAD, "200") == 1
    assert prometheus.value("uploaded_files_total") == 1
    assert (
        prometheus.value(promql_sel("api_request_duration_seconds_count", endpoint=UPLOAD_TEMPLATE))
        == 2
    )

    # Route templates only: no identifier ever becomes a label value.
    assert prometheus.query('count(api_requests_total{endpoint=~".*upl_.*"})') == []
    for ident in (upload_id, UNKNOWN_UPLOAD):
        assert prometheus.query(f'{{endpoint=~".*{ident}.*"}}') == []

    # Queries of the Grafana dashboard parse and give data once two scrapes saw the requests.
    rate_by_endpoint = "sum by (endpoint) (rate(api_requests_total[1m]))"
    p95 = "histogram_quantile(0.95, sum by (le) (rate(api_request_duration_seconds_bucket[1m])))"
    wait_until(
        lambda: bool(prometheus.values(rate_by_endpoint)) and bool(prometheus.values(p95)),
        timeout=15,
        what="rates over the scraped samples",
    )


def dashboard_panels() -> list[dict[str, Any]]:
    """Return every panel of the dashboard, rows' nested panels included."""
    panels: list[dict[str, Any]] = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_exprs() -> list[str]:
    """Return the PromQL of every query of the dashboard."""
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def series_names(family: Metric) -> set[str]:
    """Return the names of the series a metric family is exposed as (even with no samples)."""
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_count", "_sum"],
        "summary": ["_count", "_sum"],
    }.get(family.type, [""])
    return {family.name + suffix for suffix in suffixes}


def test_dashboard_is_well_formed_and_charts_the_service_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "nesydet"
    assert board["schemaVersion"] >= 39
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= grid.keys(), panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), panel["title"]
        for t in targets:
            assert t["expr"].strip(), panel["title"]
            assert t["datasource"] == DATASOURCE, panel["title"]

    cells = [
        (x, y, p["title"])
        for p in panels
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    taken: dict[tuple[int, int], str] = {}
    for x, y, title in cells:
        assert (x, y) not in taken, f"{title!r} overlaps {taken[(x, y)]!r}"
        taken[(x, y)] = title

    text = "\n".join(dashboard_exprs())
    charted = {m for m in DASHBOARD_METRICS if re.search(rf"\b{m}\b", text)}
    assert charted == DASHBOARD_METRICS, f"not charted: {DASHBOARD_METRICS - charted}"
    defined = {name for family in REGISTRY.collect() for name in series_names(family)}
    unknown = DASHBOARD_METRICS - defined - SCRAPE_TIME_GAUGES
    assert not unknown, f"the dashboard names metrics the service does not define: {unknown}"


@pytest.mark.slow
def test_dashboard_queries_are_valid_promql(prometheus: Prometheus) -> None:
    failures = []
    for expr in dashboard_exprs():
        query = expr
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        try:
            prometheus.query(query)
        except PromQLError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


def enclosed_by(expr: str, start: int, aggregation: str) -> bool:
    """Return whether ``expr[start:]`` is the first argument of ``aggregation`` (``by`` allowed)."""
    pattern = rf"\b{aggregation}\s*(?:by\s*\([^)]*\)\s*)?\(\s*$"
    return re.search(pattern, expr[:start]) is not None


def alert_expr(name: str) -> str:
    """Return the expression of the alert ``name`` of alerts.yml, on one line."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == name]
    return " ".join(str(rule["expr"]).split())


def test_dashboard_reads_cluster_gauges_once_and_adds_up_counters() -> None:
    for expr in dashboard_exprs():
        for gauge in CLUSTER_GAUGES:
            for found in re.finditer(rf"\b{gauge}\b", expr):
                assert enclosed_by(expr, found.start(), "max"), f"{gauge} without max(): {expr}"
        for found in re.finditer(r"\b(?:rate|increase)\(", expr):
            assert enclosed_by(expr, found.start(), "sum"), (
                f"a rate not summed over targets: {expr}"
            )


def test_dashboard_charts_each_worker_and_the_alerts_expressions() -> None:
    panels = dashboard_panels()
    rows = sorted((p["gridPos"]["y"], p["title"]) for p in panels if p["type"] == "row")
    start = next(y for y, title in rows if title == "Per worker")
    end = min((y for y, _ in rows if y > start), default=10**6)
    per_worker = [
        t["expr"]
        for p in panels
        if p["type"] != "row" and start < p["gridPos"]["y"] < end
        for t in p["targets"]
    ]
    charted: set[str] = set()
    for expr in per_worker:
        assert WORKER_JOB in expr, expr
        if re.search(r"\bby\s*\([^)]*\binstance\b", expr):
            charted |= {m for m in PER_WORKER_METRICS if re.search(rf"\b{m}\b", expr)}
    assert charted == PER_WORKER_METRICS, f"not charted per worker: {PER_WORKER_METRICS - charted}"

    (ratio,) = [p for p in panels if p["title"] == "Job failure ratio"]
    ratio_expr = " ".join(ratio["targets"][0]["expr"].split())
    parts = re.findall(
        r"sum\(rate\(inference_jobs_total\{[^}]*\}\[5m\]\)\)",
        alert_expr("InferenceJobFailureRatioHigh"),
    )
    assert len(parts) == 2, "the alert divides failed jobs by ended jobs"
    for part in parts:
        assert part in ratio_expr, f"the failure ratio panel does not chart {part}"
    excluded = re.search(r'endpoint!~"[^"]*"', alert_expr("ApiLatencyP95High"))
    assert excluded is not None
    assert any(
        e.startswith("histogram_quantile(0.95,") and excluded.group(0) in e
        for e in dashboard_exprs()
    ), "no panel charts the p95 the latency alert sees"
