"""The capacity and load benches run and print their tables, on tiny batches and short loads.

The load test's plumbing is checked without load too: the locustfile names requests by real
route templates, and ``bench.load`` reads Locust's CSV statistics into the report it prints.
The locustfile is read as source, never imported: importing Locust patches the standard
library (gevent) in the importing process. Structure only: no figure is held to a target.
"""

from __future__ import annotations

import ast
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bench import _routes as routes
from bench.capacity import read_keda
from bench.load import format_stats, read_stats, summary

from nesydet.api.app import create_app
from nesydet.config import Settings

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "bench" / "locustfile.py"
STATS_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


def test_every_load_test_route_is_a_route_of_the_app() -> None:
    templates = set(create_app(Settings()).openapi()["paths"])
    assert set(routes.ALL) - templates == set()


def _is_template(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "routes"
        and node.attr in vars(routes)
    )


def test_the_locustfile_names_every_request_by_its_template() -> None:
    tree = ast.parse(LOCUSTFILE.read_text())
    # The GET helper passes on the template its callers give it; they are checked below.
    helper = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_get")
    inside = {id(n) for n in ast.walk(helper)}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and id(n) not in inside]
    requests = [
        c
        for c in calls
        if isinstance(c.func, ast.Attribute)
        and c.func.attr in {"get", "post"}
        and isinstance(c.func.value, ast.Attribute)
        and c.func.value.attr == "client"
    ]
    assert len(requests) == 3  # log in, upload, start a job; every GET goes through _get
    for call in requests:
        names = [k.value for k in call.keywords if k.arg == "name"]
        assert len(names) == 1, ast.unparse(call)
        assert _is_template(names[0]), ast.unparse(call)
    helpers = [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "_get"]
    assert helpers, "the GET helper is used"
    assert all(_is_template(c.args[0]) for c in helpers), [ast.unparse(c) for c in helpers]
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and _is_template(n)}
    # Every endpoint the spec's client flow needs is exercised.
    assert {"UPLOAD", "PREDICT", "JOB_STATUS", "JOB_RESULTS", "JOBS", "HEALTHZ"} <= used


def test_locust_statistics_become_the_report(tmp_path: Path) -> None:
    stats = tmp_path / "locust_stats.csv"
    stats.write_text(
        STATS_HEADER
        + "\nGET,/api/v1/jobs/{job_id}/status,112,0,4,5.1,2,40,900,1.9,0,"
        + "4,5,6,7,8,10,12,13,40,40,40\n"
        + "POST,/api/v1/inference/upload,10,1,300,310,100,900,2000,0.2,0,"
        + "300,310,320,330,340,250,400,900,900,900,900\n"
        + "GET,/api/v1/uploads/{upload_id},0,0,0,0,0,0,0,0,0,"
        + "N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A\n"
        + ",Aggregated,122,1,5,30,2,900,1000,2.1,0,5,6,7,8,20,199,300,800,900,900,900\n"
    )
    rows = read_stats(stats)
    assert [(r.name, r.requests, r.failures, r.p95_ms, r.verdict) for r in rows[:2]] == [
        ("/api/v1/jobs/{job_id}/status", 112, 0, 10.0, "PASS"),
        ("/api/v1/inference/upload", 10, 1, 250.0, "FAIL"),
    ]
    lines = format_stats(rows)
    assert lines[1].split()[:3] == ["GET", "/api/v1/jobs/{job_id}/status", "112"]
    assert lines[-1].split() == ["Aggregated", "122", "1", "5", "199", "800", "PASS"]
    # An endpoint without requests has no percentiles, and no verdict.
    assert lines[3].split() == ["GET", "/api/v1/uploads/{upload_id}", "0", "0", "-", "-", "-", "-"]
    assert summary(rows).startswith(
        "p95 < 200 ms: 1 of 2 endpoints; over: POST /api/v1/inference/upload (250 ms); "
        "1 with under 20 requests"
    )


def run_bench(module: str, *args: str, timeout: float) -> str:
    """Returns what ``python -m module args`` printed; fails the test if it did not exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


PLAN_ROW = re.compile(r"^\s+(100|1,000|10,000)\s+(\d[\d,]*)\s+(\d[\d,]*)$")
KEDA_FIGURES = ("images_per_hour_per_replica", "images_per_job", "target_wait_s")


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(600)
def test_the_capacity_bench_prints_scaling_the_plan_and_keda(
    postgres_server: str, redis_server: str
) -> None:
    # One and two workers of a k8s replica's kind: the scaling pair, and the replica KEDA needs.
    threads = read_keda().replica_threads
    one, two = f"1x{threads}", f"2x{threads}"
    out = run_bench(
        "bench.capacity", "--jobs", "2", "--images", "1", "--size", "256", "--rounds", "1",
        "--configs", f"{one},{two}", timeout=540,
    )  # fmt: skip
    lines = out.splitlines()
    assert re.search(rf"^scaling {two} / {one}: \d+\.\d\d \(ideal 2\.0", out, re.M), out
    # The workers table and the replicas table, each with the spec's three phases.
    rows = [m[1] for line in lines if (m := PLAN_ROW.match(line))]
    assert rows == ["100", "1,000", "10,000"] * 2, out
    assert re.search(r"target img/h\s+(CPU|GPU) workers\s+scaling-adjusted", out), out
    assert "GPU: none measured" in out or "are GPU workers" in out, out
    # The KEDA lines to paste give the listLength they state, by the manifest's formula.
    found = {n: re.search(rf"^\s+#\s+{n} = ([\d.]+)$", out, re.M) for n in KEDA_FIGURES}
    figures = {n: float(m[1]) for n, m in found.items() if m is not None}
    assert len(figures) == len(KEDA_FIGURES), out
    per_job_s = 3600 * figures["images_per_job"] / figures["images_per_hour_per_replica"]
    length = max(1, math.floor(figures["target_wait_s"] / per_job_s))
    assert f'"running + queued / {length}"' in out, out
    assert f'listLength: "{length}"' in out, out


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(400)
def test_the_load_bench_prints_p95_per_endpoint(postgres_server: str, redis_server: str) -> None:
    out = run_bench(
        "bench.load", "--users", "2", "--spawn-rate", "2", "--seconds", "8", timeout=360
    )
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("method "))
    assert lines[header].endswith("p95 < 200 ms"), out
    end = next(i for i, line in enumerate(lines) if line.startswith("p95 < "))
    table = lines[header + 1 : end]
    assert table[-1].split()[0] == "Aggregated", out
    assert table[:-1], f"no request was made:\n{out}"
    for row in table[:-1]:
        method, name, *_, verdict = row.split()
        assert method in {"GET", "POST"}, row
        assert name in routes.ALL, row  # named by route template, never by a job's id
        assert verdict in {"PASS", "FAIL", "-"}, row
