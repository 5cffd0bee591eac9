"""Metrics only a worker's processes record: what they ran and how long it took.

Kept apart from ``metrics`` so that API processes, which never import this module, do not
expose them (as zeros): a worker's ``/metrics`` is the one place they come from.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
    ["model", "version"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
PIPELINE_STAGE_TIME = Histogram(
    "pipeline_stage_seconds",
    "Time per image spent in each pipeline stage",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
DETECTIONS = Counter("detection_count", "Total number of objects detected", ["class"])

WORKER_PROCESSES = Gauge(
    "worker_processes",
    "Pool processes of this worker that are up and can take a job",
    multiprocess_mode="livesum",
)
