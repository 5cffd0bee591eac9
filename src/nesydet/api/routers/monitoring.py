"""The monitoring dashboard of the desktop app (spec, Workflow 4), read from the database."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from nesydet.api.auth import ReaderDep
from nesydet.api.deps import SessionDep, SettingsDep
from nesydet.schemas.common import error_responses
from nesydet.schemas.monitoring import (
    DASHBOARD_EXAMPLE,
    DEFAULT_BUCKETS,
    DEFAULT_WINDOW,
    MAX_BUCKETS,
    WINDOW_PATTERN,
    DashboardResponse,
    Window,
)
from nesydet.services import dashboard as dashboard_service

router = APIRouter(prefix="/api/v1/monitoring", tags=["system"])

_DESCRIPTION = """
What the desktop app's monitoring panel shows, from the database alone (no Prometheus needed):
the jobs queued or processing now with their progress, the queue's length, the worker
processes with a recent heartbeat, the mean processing time of the jobs completed in the
window, and two series over the window cut into `buckets` equal buckets: jobs completed and
failed per bucket, and jobs waiting for a worker at the end of each bucket (the last point is
now). A job waits from its `created_at` until it starts or, if it never started, ends; a job
queued again for a retry waits again.

**Queue length** is counted from the job rows: the jobs in status `queued`, the same count as
the last point of its series. It includes jobs whose task has not reached the broker yet (the
broker was down) and jobs waiting to be retried; `/metrics`' `queue_length` gauge counts the
messages in the broker's queue instead, so the two can differ for a while.

**Who sees what.** `current_jobs`, `current_jobs_total`, `avg_inference_time_s` and the
completions series count the caller's own jobs; an admin or a viewer (and everyone when
authentication is off) sees all jobs (`scope` says which). `queue_length`, the queue-length
series and `active_workers` are figures of the whole service, the same for every reader:
they count jobs and workers (as `/metrics` does) and name none.
"""


@router.get(
    "/dashboard",
    response_model=DashboardResponse,
    summary="Monitoring dashboard: current jobs, queue, workers, completions over time",
    description=_DESCRIPTION,
    responses={
        200: {"content": {"application/json": {"example": DASHBOARD_EXAMPLE}}},
        **error_responses(
            (
                400,
                "VALIDATION_ERROR",
                "Request validation failed",
                "window: Must be at most 7d (168h, 10080m)",
            ),
        ),
    },
)
async def dashboard(
    session: SessionDep,
    settings: SettingsDep,
    principal: ReaderDep,
    window: Annotated[
        Window,
        Query(
            pattern=WINDOW_PATTERN,
            description="how far back the series and the average go: a count and a unit, "
            "`m` (minutes), `h` (hours) or `d` (days); at most `7d`",
            examples=["15m", "1h", "6h", "24h", "7d"],
        ),
    ] = DEFAULT_WINDOW,
    buckets: Annotated[
        int, Query(ge=1, le=MAX_BUCKETS, description="how many points each series has")
    ] = DEFAULT_BUCKETS,
) -> Response:
    """Return the dashboard's figures and series."""
    data = await dashboard_service.dashboard(
        session=session,
        settings=settings,
        owner=principal.owner,
        window=window,
        buckets=buckets,
    )
    # Serialized here, once: FastAPI would validate the finished model again first.
    return Response(DashboardResponse(data=data).model_dump_json(), media_type="application/json")
