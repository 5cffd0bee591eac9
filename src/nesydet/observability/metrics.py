"""Prometheus metrics shared by the API and the workers.

When ``PROMETHEUS_MULTIPROC_DIR`` is set before this module is imported (the CLI does it from
``NESYDET_METRICS_DIR``), every process writes its samples to files there and ``/metrics``
aggregates them, so worker metrics join the API's on one endpoint.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import psutil
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
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nesydet.observability.metrics_dir import MULTIPROC_ENV, process_identifier

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
        for ident in (process_identifier(pid), str(pid)):
            multiprocess.mark_process_dead(ident)  # type: ignore[no-untyped-call]


class PointInTime(Collector):
    """Gauges read at scrape time: queue, workers and this machine's CPU, memory and GPU."""

    def __init__(self, *, queue_length: int, active_workers: int) -> None:
        self.queue_length = queue_length
        self.active_workers = active_workers

    def collect(self) -> Iterable[Metric]:
        """Yield the gauges."""
        queue = GaugeMetricFamily("queue_length", "Number of jobs in queue", labels=["queue"])
        queue.add_metric(["inference"], self.queue_length)
        yield queue
        yield GaugeMetricFamily(
            "active_workers", "Worker processes with a recent heartbeat", value=self.active_workers
        )
        yield GaugeMetricFamily(
            "cpu_usage_percent", "CPU utilization of this host", value=psutil.cpu_percent(None)
        )
        memory = GaugeMetricFamily("memory_usage_bytes", "Memory in use", labels=["scope"])
        memory.add_metric(["host"], float(psutil.virtual_memory().used))
        memory.add_metric(["api_process"], float(psutil.Process().memory_info().rss))
        yield memory
        gpus = gpu_utilization()
        if gpus:
            gpu = GaugeMetricFamily("gpu_utilization_percent", "GPU utilization", labels=["gpu"])
            for index, percent in gpus.items():
                gpu.add_metric([str(index)], percent)
            yield gpu


def gpu_utilization() -> dict[int, float]:
    """Return each NVIDIA GPU's utilization, or nothing when there is none (or no NVML)."""
    try:
        import pynvml  # optional: present with the CUDA builds of torch

        pynvml.nvmlInit()
    except Exception:  # no driver, no GPU, no library: simply no GPU metrics
        return {}
    try:
        return {
            i: float(pynvml.nvmlDeviceGetUtilizationRates(pynvml.nvmlDeviceGetHandleByIndex(i)).gpu)
            for i in range(pynvml.nvmlDeviceGetCount())
        }
    except Exception:
        return {}
    finally:
        pynvml.nvmlShutdown()


def render_latest(extra: Collector | None = None) -> tuple[bytes, str]:
    """Return the exposition text of every metric (all processes in multiprocess mode)."""
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    if extra is not None:
        registry.register(extra)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Forward(Collector):
    """Exposes another registry's metrics inside a per-scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        """Yield the source registry's metrics."""
        return self.source.collect()
