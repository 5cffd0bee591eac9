"""Prometheus metrics shared by the API and the workers.

When ``PROMETHEUS_MULTIPROC_DIR`` is set before this module is imported (the CLI does it from
``NESYDET_METRICS_DIR``), every process writes its samples to files there and ``/metrics``
aggregates them, so worker metrics join the API's on one endpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from nesydet.observability.metrics_dir import MULTIPROC_ENV

API_REQUESTS = Counter(
    "api_requests_total", "Total number of API requests", ["method", "endpoint", "status"]
)
API_LATENCY = Histogram(
    "api_request_duration_seconds",
    "API request latency",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
UPLOADED_FILES = Counter("uploaded_files_total", "Total number of uploaded files")
UPLOADED_BYTES = Counter("uploaded_bytes_total", "Total bytes of accepted uploaded files")
REJECTED_FILES = Counter(
    "upload_rejected_files_total", "Uploaded files rejected by validation", ["error_code"]
)
INFERENCE_JOBS = Counter("inference_jobs_total", "Total number of inference jobs", ["status"])
ACTIVE_JOBS = Gauge(
    "active_jobs", "Jobs a worker is processing right now", multiprocess_mode="livesum"
)
INFERENCE_DURATION = Histogram(
    "inference_duration_seconds",
    "Duration of inference jobs, from start to completion",
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
MODEL_INFERENCE_TIME = Histogram(
    "model_inference_time_seconds",
    "Time taken for model inference per image",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
PIPELINE_STAGE_TIME = Histogram(
    "pipeline_stage_seconds",
    "Time per image spent in each pipeline stage",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
DETECTIONS = Counter("detection_count", "Total number of objects detected", ["class"])


def multiprocess_dir() -> Path | None:
    """Return the multiprocess directory in use, or None in single-process mode."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def mark_process_dead(pid: int) -> None:
    """Drop a finished process's live gauges so ``livesum`` stops counting them."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def render_latest() -> tuple[bytes, str]:
    """Return the exposition text of every metric (all processes in multiprocess mode)."""
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
