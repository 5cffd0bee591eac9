"""Tracing across processes: a real ``nesydet serve`` and a real ``nesydet worker`` send their
spans over OTLP/HTTP to a receiver run by the test, and one predict request with the job it
starts forms one trace:

    POST /api/v1/inference/predict       nesydet-api     (the request, job_id)
      send nesydet.run_inference         nesydet-api     (the task's message, traceparent)
        job                              nesydet-worker  (a pool process, job_id)
          inference, nms, reasoning, visualization       (one per stage of each image)

The upload before it is a trace of its own: nothing links an upload to the jobs made from it
later. With ``NESYDET_TRACE_REPORT=<file>`` the trace's spans are written there, one JSON line
each (name, service, pid, parent's name).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from pydantic import ValidationError

from nesydet.config import Settings
from tests import images
from tests.integration.prom import (
    Process,
    free_port,
    nesydet_command,
    nesydet_env,
    spawn,
    start_api_server,
    wait_until,
)

STAGES = {"inference", "nms", "reasoning", "visualization"}
PREDICT = "POST /api/v1/inference/predict"


@dataclass(frozen=True)
class Span:
    """One received span, ids as hex."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name"))

    @property
    def pid(self) -> int:
        return int(self.resource.get("process.pid", -1))


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _spans_of(request: ExportTraceServiceRequest) -> list[Span]:
    found = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                found.append(
                    Span(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        name=s.name,
                        kind=s.kind,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        resource=resource,
                    )
                )
    return found


class Receiver:
    """A minimal OTLP/HTTP trace receiver on 127.0.0.1: ``POST /v1/traces``, protobuf."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.lock:
                    receiver.spans.extend(_spans_of(request))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def received(self) -> list[Span]:
        with self.lock:
            return list(self.spans)

    def find(self, match: Callable[[Span], bool]) -> list[Span]:
        return [s for s in self.received() if match(s)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()


def report(spans: list[Span]) -> list[str]:
    """Return (and write to ``NESYDET_TRACE_REPORT``, when set) one JSON line per span,
    in start order."""
    names = {s.span_id: s.name for s in spans}
    lines = [
        json.dumps(
            {
                "name": s.name,
                "service": s.service,
                "pid": s.pid,
                "parent": names.get(s.parent_id, s.parent_id or None),
                "trace_id": s.trace_id,
                "span_id": s.span_id,
                **{
                    k: s.attributes[k]
                    for k in ("job_id", "http.route", "stage")
                    if k in s.attributes
                },
            }
        )
        for s in sorted(spans, key=lambda s: s.start_ns)
    ]
    target = os.environ.get("NESYDET_TRACE_REPORT")
    if target:
        with open(target, "a") as out:
            out.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return lines


def ancestors(span: Span, spans: list[Span]) -> list[Span]:
    """Return the span's parents, nearest first (as far as they were received)."""
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def worker_log_records(worker: Process, job_id: str) -> list[dict[str, Any]]:
    """Return the worker's JSON log records about the job."""
    records = []
    for line in worker.log_text().splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("job_id") == job_id:
                records.append(record)
    return records


def run_one_job(client: httpx.Client, worker: Process) -> tuple[str, str]:
    """Upload one image, start a job on it, wait until it is completed; return both ids."""
    files = [("files", ("one.png", images.png(320, 256), "image/png"))]
    response = client.post("/api/v1/inference/upload", files=files)
    assert response.status_code == 200, response.text
    upload_id: str = response.json()["data"]["upload_id"]
    response = client.post(
        "/api/v1/inference/predict",
        json={"upload_id": upload_id, "config": {"sahi": {"enabled": False}}},
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["data"]["job_id"]

    def completed() -> bool:
        state = client.get(f"/api/v1/jobs/{job_id}/status").json()["data"]["status"]
        assert state != "failed", f"job {job_id} failed:\n{worker.output()}"
        return bool(state == "completed")

    wait_until(completed, timeout=300, what=f"job {job_id} completed", process=worker)
    return upload_id, job_id


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_job_is_one_trace_from_the_request_to_its_stages(
    receiver: Receiver, tmp_path: Path
) -> None:
    root = tmp_path / "deploy"
    api = start_api_server(
        root,
        NESYDET_OTEL_ENDPOINT=receiver.url,
        OTEL_BSP_SCHEDULE_DELAY="200",
        NESYDET_LOG_FORMAT="json",
        NESYDET_WORKER_METRICS_PORT="0",
        NESYDET_HEARTBEAT_INTERVAL_S="1",
    )
    worker = spawn("worker", nesydet_command("worker", "--concurrency", "1"), env=api.env, cwd=root)
    try:
        with httpx.Client(base_url=api.url, timeout=60) as client:
            upload_id, job_id = run_one_job(client, worker)

            def job_traced() -> bool:
                jobs = receiver.find(lambda s: s.attributes.get("job_id") == job_id)
                names = {s.name for s in jobs} | {
                    s.name for s in receiver.received() if s.name in STAGES
                }
                return {PREDICT, "job", "GET /api/v1/jobs/{job_id}/status"} | STAGES <= names

            wait_until(job_traced, timeout=60, what="the job's spans at the receiver")
        [job] = receiver.find(lambda s: s.name == "job" and s.attributes.get("job_id") == job_id)
        spans = receiver.find(lambda s: s.trace_id == job.trace_id)
        report(spans)
        check_the_trace(spans, job, job_id, api_pid=api.process.proc.pid, worker=worker)
        check_other_requests(receiver, job, job_id, upload_id)
        check_worker_logs(worker, job, job_id)
    finally:
        worker.stop()
        api.stop()


def check_the_trace(
    spans: list[Span], job: Span, job_id: str, *, api_pid: int, worker: Process
) -> None:
    """The predict request is an ancestor of the job, which parents one span per stage."""
    [predict] = [s for s in spans if s.name == PREDICT]
    assert predict.service == "nesydet-api"
    assert predict.pid == api_pid
    assert predict.parent_id == "", "the predict request starts the trace"
    assert predict.attributes["http.route"] == "/api/v1/inference/predict"
    assert predict.attributes["http.request.method"] == "POST"
    assert predict.attributes["http.response.status_code"] == 202
    assert predict.attributes["job_id"] == job_id
    assert predict.resource["host.name"]

    assert job.service == "nesydet-worker"
    assert job.attributes["job_id"] == job_id
    assert job.attributes["job.status"] == "completed"
    # A pool process of the worker: neither the API nor the worker's main process.
    assert job.pid not in {api_pid, worker.proc.pid, -1}
    chain = ancestors(job, spans)
    assert predict in chain, [s.name for s in chain]
    [send] = [s for s in chain if s.name == "send nesydet.run_inference"]
    assert (send.service, send.parent_id) == ("nesydet-api", predict.span_id)
    assert job.parent_id == send.span_id

    stages = [s for s in spans if s.parent_id == job.span_id]
    assert {s.name for s in stages} == STAGES
    for stage in stages:
        assert stage.attributes["stage"] == stage.name
        assert stage.pid == job.pid
        assert job.start_ns <= stage.start_ns <= stage.end_ns <= job.end_ns
    ordered = sorted(stages, key=lambda s: s.start_ns)
    assert [s.name for s in ordered] == ["inference", "nms", "reasoning", "visualization"]


def check_other_requests(receiver: Receiver, job: Span, job_id: str, upload_id: str) -> None:
    """The upload is a trace of its own; a request about the job carries its id."""
    [upload] = receiver.find(lambda s: s.name == "POST /api/v1/inference/upload")
    assert upload.trace_id != job.trace_id
    assert upload.attributes["http.response.status_code"] == 200
    polls = receiver.find(lambda s: s.name == "GET /api/v1/jobs/{job_id}/status")
    assert polls
    assert {p.attributes.get("job_id") for p in polls} == {job_id}
    assert all(p.attributes["http.route"] == "/api/v1/jobs/{job_id}/status" for p in polls)
    assert upload_id not in {p.attributes.get("upload_id") for p in polls}


def check_worker_logs(worker: Process, job: Span, job_id: str) -> None:
    """The worker's JSON log lines about the job carry the job span's trace and span ids."""
    records = worker_log_records(worker, job_id)
    messages = {r["message"] for r in records}
    assert {"job started", "job completed"} <= messages, records
    for record in records:
        if record["message"] in {"job started", "job completed"}:
            assert record["trace_id"] == job.trace_id, record
            assert record["span_id"] == job.span_id, record


# Run in a fresh interpreter: what this process imported or started must not count.
NO_ENDPOINT_PROBE = """
import json, sys, threading
from celery.signals import worker_process_init
from starlette.testclient import TestClient
from opentelemetry import trace
from nesydet.api.app import create_app
from nesydet.config import get_settings
from nesydet.observability import tracing
from nesydet.tasks.tracing import connect_tracing

app = create_app()
with TestClient(app) as client:
    status = client.get("/healthz").status_code
connect_tracing(get_settings())
worker_process_init.send(sender=None)
print(json.dumps({
    "status": status,
    "enabled": tracing.enabled(),
    "headers": tracing.inject(),
    "provider": type(trace.get_tracer_provider()).__name__,
    "exporter_modules": sorted(m for m in sys.modules if m.startswith("opentelemetry.exporter")),
    "sdk_trace_modules": sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk.trace")),
    "threads": sorted(t.name for t in threading.enumerate()),
}))
"""


def test_without_the_endpoint_no_exporter_is_created(tmp_path: Path) -> None:
    env = nesydet_env(tmp_path, NESYDET_SWEEPER_INTERVAL_S="0", NESYDET_CLEANUP_INTERVAL_S="0")
    env.pop("NESYDET_OTEL_ENDPOINT", None)
    result = subprocess.run(
        [sys.executable, "-c", NO_ENDPOINT_PROBE],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["status"] == 200
    assert probe["enabled"] is False
    assert probe["headers"] == {}
    assert probe["provider"] == "ProxyTracerProvider"
    assert probe["exporter_modules"] == []
    assert probe["sdk_trace_modules"] == []  # (the redis client imports the SDK's metrics)
    assert not [t for t in probe["threads"] if t.startswith("OtelBatch")]


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("http://collector:4318", "http://collector:4318"),
        ("https://c.example/", "https://c.example"),
    ],
)
def test_the_endpoint_is_an_http_url(given: str, kept: str) -> None:
    assert Settings(otel_endpoint=given).otel_endpoint == kept
    assert Settings(otel_endpoint="").otel_endpoint is None
    for wrong in ("collector:4318", "ftp://collector", "http://"):
        with pytest.raises(ValidationError, match="otel_endpoint"):
            Settings(otel_endpoint=wrong)


def test_a_collector_that_is_down_fails_no_request(tmp_path: Path) -> None:
    """Spans for a collector nobody listens on are dropped in the background; requests are
    answered as usual, and the server keeps running."""
    root = tmp_path / "deploy"
    dead = f"http://127.0.0.1:{free_port()}"
    api = start_api_server(root, NESYDET_OTEL_ENDPOINT=dead, OTEL_BSP_SCHEDULE_DELAY="50")
    try:
        with httpx.Client(base_url=api.url, timeout=30) as client:
            for _ in range(20):
                assert client.get("/healthz").status_code == 200
            files = [("files", ("one.png", images.png(), "image/png"))]
            assert client.post("/api/v1/inference/upload", files=files).status_code == 200
            wait_until(
                lambda: "spans batch" in api.process.log_text(),  # the exporter's complaint
                timeout=60,
                what="a failed export in the API's log",
                process=api.process,
            )
            assert client.get("/healthz").status_code == 200
    finally:
        api.stop()
