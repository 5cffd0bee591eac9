"""The monitoring dashboard's response (spec, Workflow 4: the desktop app's monitoring panel)
and its ``window`` parameter."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError

from nesydet.schemas.common import Timestamp
from nesydet.schemas.jobs import Progress

WINDOW_PATTERN = r"^[1-9][0-9]{0,4}[mhd]$"
DEFAULT_WINDOW = "6h"
MAX_WINDOW = timedelta(days=7)
DEFAULT_BUCKETS = 60
MAX_BUCKETS = 120
# Active jobs listed at most; ``current_jobs_total`` counts them all.
CURRENT_JOBS_SHOWN = 50
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def window_length(text: str) -> timedelta:
    """Return the length of a window written as ``<count><m|h|d>``, e.g. ``15m`` or ``7d``."""
    match = re.fullmatch(WINDOW_PATTERN, text)
    if match is None:
        raise ValueError(f"not a window: {text!r}")
    return int(text[:-1]) * _UNITS[text[-1]]


def _at_most_a_week(text: str) -> str:
    if window_length(text) > MAX_WINDOW:
        raise PydanticCustomError("window_too_long", "Must be at most 7d (168h, 10080m)")
    return text


Window = Annotated[str, AfterValidator(_at_most_a_week)]


class CurrentJob(BaseModel):
    """A queued or processing job, with its progress as the status endpoint shows it."""

    job_id: str
    status: str
    upload_id: str
    progress: Progress
    created_at: Timestamp
    started_at: Timestamp | None
    status_url: str


class CompletionBucket(BaseModel):
    """Jobs that completed or failed in ``[start, end)``."""

    start: Timestamp
    end: Timestamp
    completed: int
    failed: int


class QueuePoint(BaseModel):
    """Jobs waiting for a worker at the instant ``at`` (the end of a bucket)."""

    at: Timestamp
    queued: int


class DashboardSeries(BaseModel):
    completions: list[CompletionBucket] = Field(
        description="completed and failed jobs per bucket, oldest first"
    )
    queue_length: list[QueuePoint] = Field(
        description="jobs waiting at the end of each bucket, oldest first; the last point is now"
    )


class DashboardData(BaseModel):
    scope: Literal["all", "own"] = Field(
        description="whose jobs `current_jobs`, `avg_inference_time_s` and the completions "
        "series count: everyone's (admins, viewers, no authentication) or the caller's own"
    )
    window: str = Field(description="the window asked for, e.g. `6h`")
    window_start: Timestamp
    window_end: Timestamp
    bucket_seconds: float = Field(description="the length of one bucket of the series")
    current_jobs: list[CurrentJob] = Field(
        description=f"queued and processing jobs, newest first, at most {CURRENT_JOBS_SHOWN}"
    )
    current_jobs_total: int = Field(description="how many jobs are queued or processing")
    queue_length: int = Field(
        description="jobs waiting for a worker (status `queued`, counted in the database), "
        "all owners"
    )
    active_workers: int = Field(description="worker processes with a recent heartbeat")
    avg_inference_time_s: float | None = Field(
        description="mean processing time of the jobs completed in the window; null if none"
    )
    series: DashboardSeries


class DashboardResponse(BaseModel):
    status: Literal["success"] = "success"
    data: DashboardData


def _bucket(start: str, end: str, completed: int, failed: int) -> dict[str, Any]:
    return {
        "start": f"2026-02-02T{start}Z",
        "end": f"2026-02-02T{end}Z",
        "completed": completed,
        "failed": failed,
    }


DASHBOARD_EXAMPLE: dict[str, Any] = {
    "status": "success",
    "data": {
        "scope": "all",
        "window": "15m",
        "window_start": "2026-02-02T18:45:00.000Z",
        "window_end": "2026-02-02T19:00:00.000Z",
        "bucket_seconds": 300.0,
        "current_jobs": [
            {
                "job_id": "job_abc123xyz789",
                "status": "processing",
                "upload_id": "upl_a1b2c3d4e5f6",
                "progress": {
                    "total_images": 2,
                    "processed_images": 1,
                    "percentage": 50,
                    "current_stage": "Running SAHI inference",
                    "estimated_completion": "2026-02-02T19:00:45.000Z",
                },
                "created_at": "2026-02-02T18:58:57.324Z",
                "started_at": "2026-02-02T18:59:00.000Z",
                "status_url": "/api/v1/jobs/job_abc123xyz789/status",
            }
        ],
        "current_jobs_total": 4,
        "queue_length": 3,
        "active_workers": 4,
        "avg_inference_time_s": 45.2,
        "series": {
            "completions": [
                _bucket("18:45:00.000", "18:50:00.000", 2, 0),
                _bucket("18:50:00.000", "18:55:00.000", 3, 1),
                _bucket("18:55:00.000", "19:00:00.000", 1, 0),
            ],
            "queue_length": [
                {"at": "2026-02-02T18:50:00.000Z", "queued": 1},
                {"at": "2026-02-02T18:55:00.000Z", "queued": 0},
                {"at": "2026-02-02T19:00:00.000Z", "queued": 3},
            ],
        },
    },
}
