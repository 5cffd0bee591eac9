"""Liveness, readiness and the Prometheus endpoint."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from nesydet import API_VERSION, __version__
from nesydet.api.errors import error_response
from nesydet.observability import metrics
from nesydet.schemas.common import ErrorResponse, error_example
from nesydet.schemas.system import (
    HEALTH_EXAMPLE,
    READY_EXAMPLE,
    HealthResponse,
    ReadinessResponse,
)
from nesydet.services.monitoring import cluster_figures

router = APIRouter(tags=["system"])

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
async def readyz(request: Request) -> Response:
    """Return 200 when the database, storage and broker answer, else 503 naming what failed."""
    results = await request.app.state.readiness.check()
    failing = [name for name, result in results.items() if not result["ok"]]
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
    """Return every metric in the Prometheus text format (API and worker processes)."""
    state = request.app.state
    figures = await cluster_figures(sessionmaker=state.sessionmaker, settings=state.settings)
    extra = metrics.PointInTime(
        queue_length=figures.queued_jobs, active_workers=figures.live_workers
    )
    payload, content_type = await anyio.to_thread.run_sync(metrics.render_latest, extra)
    return Response(content=payload, media_type=content_type)
