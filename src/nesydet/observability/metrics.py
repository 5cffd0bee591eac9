"""Prometheus metrics of the API and the workers.

Each process group serves its own: the API's ``/metrics`` (port 8000) covers the API processes
of its host plus the cluster-wide gauges, a worker's ``/metrics`` (port 9091) covers its pool
processes; each counts an event once, so sums over all targets never double-count. When
``PROMETHEUS_MULTIPROC_DIR`` is set before this module is imported (the CLI does it, see
``metrics_dir``), the processes of a group write their samples to files in the group's folder
and a scrape aggregates them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nesydet.observability.metrics_dir import MULTIPROC_ENV, main_pid, process_identifier

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
RATE_LIMIT_FALLBACK = Counter(
    "rate_limit_fallback_total",
    "Times the shared (Redis) rate-limit counts were unreachable and a process counted alone",
)
DELETED_OBJECTS = Counter("storage_deleted_objects_total", "Stored objects deleted", ["reason"])
DELETED_BYTES = Counter(
    "storage_deleted_bytes_total", "Bytes of stored objects deleted", ["reason"]
)
EXPIRED_UPLOADS = Counter(
    "retention_expired_uploads_total", "Uploads deleted by retention, with all made from them"
)
INFERENCE_JOBS = Counter("inference_jobs_total", "Total number of inference jobs", ["status"])
# The A/B split: jobs created per model and version (version "" for a file not registered).
MODEL_JOBS = Counter(
    "model_jobs_total",
    "Inference jobs created, by the model version they run",
    ["model", "version"],
)


def multiprocess_dir() -> Path | None:
    """Return the multiprocess directory in use, or None in single-process mode."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def group_main_pid() -> int:
    """Return the pid of this process group's main process (``nesydet serve`` or ``worker``)."""
    folder = multiprocess_dir()
    pid = main_pid(folder) if folder is not None else None
    return pid if pid is not None and psutil.pid_exists(pid) else os.getpid()


def mark_process_dead(pid: int) -> None:
    """Drop a finished process's live gauges so ``livesum`` stops counting them."""
    if multiprocess_dir() is not None:
        for ident in (process_identifier(pid), str(pid)):
            multiprocess.mark_process_dead(ident)  # type: ignore[no-untyped-call]


class ClusterGauges(Collector):
    """Figures about the whole service, read once per scrape by the API (the same on every
    API replica: combine them with max(), never sum()). A figure that is None is left out."""

    def __init__(
        self,
        *,
        queue_length: int | None,
        active_workers: int | None,
        jobs_by_status: Mapping[str, int],
    ) -> None:
        self.queue_length = queue_length
        self.active_workers = active_workers
        self.jobs_by_status = jobs_by_status

    def collect(self) -> Iterable[Metric]:
        """Yield the gauges that are known."""
        if self.queue_length is not None:
            queue = GaugeMetricFamily("queue_length", "Number of jobs in queue", labels=["queue"])
            queue.add_metric(["inference"], self.queue_length)
            yield queue
        if self.active_workers is not None:
            yield GaugeMetricFamily(
                "active_workers",
                "Worker processes with a recent heartbeat",
                value=self.active_workers,
            )
        if self.jobs_by_status:
            jobs = GaugeMetricFamily("jobs_current", "Jobs by status right now", labels=["status"])
            for status, count in sorted(self.jobs_by_status.items()):
                jobs.add_metric([status], count)
            yield jobs


def scrape_registry(*extra: Collector) -> CollectorRegistry:
    """Return a registry of this process group's metrics (all its processes in multiprocess
    mode) and ``extra``."""
    registry = CollectorRegistry()
    if multiprocess_dir() is not None:
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return registry


def render_latest(*extra: Collector) -> tuple[bytes, str]:
    """Return the exposition text of this process group's metrics and ``extra``."""
    return generate_latest(scrape_registry(*extra)), CONTENT_TYPE_LATEST


class _Forward(Collector):
    """Exposes another registry's metrics inside a per-scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        """Yield the source registry's metrics."""
        return self.source.collect()
