"""Liveness, readiness and the Prometheus endpoint."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from nesydet import API_VERSION, __version__
from nesydet.api.errors import error_response
from nesydet.observability import metrics
from nesydet.observability.host_metrics import HostFigures
from nesydet.schemas.common import ErrorResponse, error_example
from nesydet.schemas.system import (
    HEALTH_EXAMPLE,
    READY_EXAMPLE,
    HealthResponse,
    ReadinessResponse,
)
from nesydet.services.monitoring import cluster_figures

router = APIRouter(tags=["system"])


class ReadinessCheck(StrEnum):
    """A dependency readiness checks."""

    DATABASE = "database"
    STORAGE = "storage"
    BROKER = "broker"


_NOT_READY_EXAMPLE = {
    **error_example("NOT_READY", "Not ready: database", "database: ConnectionRefusedError: ..."),
    "checks": {
        "database": {"ok": False, "error": "ConnectionRefusedError: ..."},
        "storage": {"ok": True, "latency_ms": 0.3},
    },
}


@router.get(
    "/healthz",
    summary="Liveness",
    response_model=HealthResponse,
    responses={200: {"content": {"application/json": {"example": HEALTH_EXAMPLE}}}},
)
async def healthz() -> HealthResponse:
    """Return ok while the process can answer at all."""
    return HealthResponse(version=__version__, api_version=API_VERSION)


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=ReadinessResponse,
    responses={
        200: {"content": {"application/json": {"example": READY_EXAMPLE}}},
        503: {
            "description": "A dependency is down; the failing part is named",
            "model": ErrorResponse,
            "content": {"application/json": {"example": _NOT_READY_EXAMPLE}},
        },
    },
)
async def readyz(
    request: Request,
    require: Annotated[
        list[ReadinessCheck] | None,
        Query(
            description="the checks that decide the answer (all three by default); e.g. a "
            "load balancer or Kubernetes probe asks `require=database&require=storage`, because "
            "the API keeps serving while the broker is away (jobs wait and are sent when it is "
            "back) and must not be taken out of rotation for it. Every check is reported.",
        ),
    ] = None,
) -> Response:
    """Return 200 when the required dependencies (by default the database, storage and broker)
    answer, else 503 naming what failed."""
    results = await request.app.state.readiness.check()
    required = set(require or ReadinessCheck)
    failing = [name for name, result in results.items() if not result["ok"] and name in required]
    if failing:
        return error_response(
            503,
            code="NOT_READY",
            message=f"Not ready: {', '.join(failing)}",
            details="; ".join(f"{name}: {results[name]['error']}" for name in failing),
            extra={"checks": results},
        )
    return JSONResponse(
        ReadinessResponse.model_validate({"checks": results}).model_dump(exclude_none=True)
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"example": "api_requests_total{...} 1.0"}}}},
)
async def prometheus_metrics(request: Request) -> Response:
    """Return this host's API processes' metrics, its CPU and memory, and the cluster-wide
    gauges (queue length, active workers, jobs by status) in the Prometheus text format.

    Workers serve their own metrics (``nesydet worker``, port 9091).
    """
    state = request.app.state
    figures = await cluster_figures(sessionmaker=state.sessionmaker, settings=state.settings)
    cluster = metrics.ClusterGauges(
        queue_length=figures.queue_length,
        active_workers=figures.live_workers,
        jobs_by_status=figures.jobs_by_status,
    )
    host = HostFigures(scope="api", main_pid=metrics.group_main_pid())
    payload, content_type = await anyio.to_thread.run_sync(metrics.render_latest, cluster, host)
    return Response(content=payload, media_type=content_type)
