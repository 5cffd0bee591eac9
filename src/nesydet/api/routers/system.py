"""Liveness, readiness and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import anyio
from celery import Celery
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from nesydet import API_VERSION, __version__
from nesydet.api.errors import error_response
from nesydet.db.base import utcnow
from nesydet.db.models import JobStatus
from nesydet.db.repositories import jobs as job_repo
from nesydet.observability import metrics
from nesydet.schemas.common import ErrorResponse, error_example
from nesydet.schemas.system import (
    HEALTH_EXAMPLE,
    READY_EXAMPLE,
    HealthResponse,
    ReadinessResponse,
)

router = APIRouter(tags=["system"])

_NOT_READY_EXAMPLE = {
    **error_example("NOT_READY", "Not ready: database", "database: ConnectionRefusedError: ..."),
    "checks": {
        "database": {"ok": False, "error": "ConnectionRefusedError: ..."},
        "storage": {"ok": True, "latency_ms": 0.3},
    },
}

_CHECK_TIMEOUT_S = 3.0


@router.get(
    "/healthz",
    summary="Liveness",
    response_model=HealthResponse,
    responses={200: {"content": {"application/json": {"example": HEALTH_EXAMPLE}}}},
)
async def healthz() -> HealthResponse:
    """Return ok while the process can answer at all."""
    return HealthResponse(version=__version__, api_version=API_VERSION)


async def _timed(check: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), _CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {_CHECK_TIMEOUT_S:g} s"}
    except Exception as exc:  # readiness reports any failure instead of raising it
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def readiness_checks(request: Request) -> dict[str, Callable[[], Awaitable[None]]]:
    """Return the named checks that must all pass for the service to take traffic."""
    state = request.app.state

    async def database() -> None:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def storage() -> None:
        await anyio.to_thread.run_sync(state.storage.check)

    async def broker() -> None:
        await anyio.to_thread.run_sync(check_broker, state.celery, abandon_on_cancel=True)

    return {"database": database, "storage": storage, "broker": broker}


def check_broker(celery: Celery) -> None:
    """Connect to the broker once; raise when it cannot be reached."""
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=int(_CHECK_TIMEOUT_S))


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
    checks = readiness_checks(request)
    results = dict(
        zip(checks, await asyncio.gather(*(_timed(c) for c in checks.values())), strict=True)
    )
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
    settings = state.settings
    async with state.sessionmaker() as session:
        queued = await job_repo.count_by_status(session=session, status=JobStatus.QUEUED)
        workers = await job_repo.live_workers(
            session=session, since=utcnow() - timedelta(seconds=settings.heartbeat_stale_s)
        )
    extra = metrics.PointInTime(queue_length=queued, active_workers=workers)
    payload, content_type = await anyio.to_thread.run_sync(metrics.render_latest, extra)
    return Response(content=payload, media_type=content_type)
