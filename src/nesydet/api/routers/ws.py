"""WebSocket ``/api/v1/jobs/{job_id}/ws``: a job's status changes and log lines, live.

Frames are JSON text, server to client only (what a client sends is ignored):

- ``{"event": "status", "id": n, "data": <the status endpoint's data>}`` at once, then on
  every change (the events of the SSE stream);
- ``{"event": "log", "id": n, "data": {"seq", "time", "level", "message", ...}}`` for each
  line of the job's log: stage changes, retries, failures (with Redis only);
- after the final status (completed, failed, cancelled) the server closes with 1000 and the
  status as the reason.

Credentials as on every job endpoint (``Authorization: Bearer``, ``X-API-Key``), or, for
browsers, which cannot set headers on a WebSocket: the subprotocols
``["nesydet.v1", "bearer.<access token or API key>"]``; the server answers ``nesydet.v1``
and never echoes the credential (which stays out of URLs and access logs). Missing or wrong
credentials, and an unknown or another owner's job, get an ``{"event": "error", ...}`` frame
in the error envelope, then close 1008 (policy violation) with the error code as the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

from nesydet.api.auth import auth_error_of, principal_of
from nesydet.api.errors import error_body
from nesydet.errors import AppError, AuthenticationRequired, JobNotFound
from nesydet.ids import JOB, id_pattern
from nesydet.observability.logging import request_id_var
from nesydet.services import jobs as job_service
from nesydet.services.auth import LOCAL, Principal
from nesydet.services.job_ws import JobHub, Watch

log = logging.getLogger(__name__)

SUBPROTOCOL = "nesydet.v1"
CREDENTIAL_PREFIX = "bearer."
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
_JOB_ID = re.compile(id_pattern(JOB))


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Make this process's hub of watched jobs, and end every watch at shutdown."""
    hub = JobHub(sessionmaker=app.state.sessionmaker, redis_url=app.state.settings.redis_url)
    app.state.job_hub = hub
    try:
        yield
    finally:
        await hub.close()


router = APIRouter(prefix="/api/v1", tags=["jobs"], lifespan=_lifespan)


def _subprotocol_credential(offered: list[str]) -> str | None:
    for name in offered:
        if name.startswith(CREDENTIAL_PREFIX) and len(name) > len(CREDENTIAL_PREFIX):
            return name[len(CREDENTIAL_PREFIX) :]
    return None


async def _principal(websocket: WebSocket) -> Principal:
    """Return the caller, from the headers or the subprotocols.

    Raises:
        InvalidCredentials: credentials were sent and are wrong, expired or revoked.
        AuthenticationRequired: none were sent.
    """
    if websocket.app.state.settings.auth_mode == "none":
        return LOCAL
    error = auth_error_of(websocket.scope)
    if error is not None:
        raise error
    principal = principal_of(websocket.scope)
    if principal is not None:
        return principal
    credential = _subprotocol_credential(list(websocket.scope.get("subprotocols", [])))
    if credential is None:
        raise AuthenticationRequired(
            details="send Authorization: Bearer <token or key> or X-API-Key: <key>; from a "
            f"browser, the subprotocols ['{SUBPROTOCOL}', '{CREDENTIAL_PREFIX}<token or key>']"
        )
    resolved: Principal = await websocket.app.state.authenticator.resolve(credential)
    return resolved


async def _refuse(websocket: WebSocket, exc: AppError, subprotocol: str | None) -> None:
    """Accept (a frame can only be sent on an open socket), send the error, close 1008."""
    log.info("job watch refused", extra={"error_code": exc.code, "details": exc.details})
    await websocket.accept(subprotocol=subprotocol)
    body = error_body(code=exc.code, message=exc.message, details=exc.details, errors=exc.errors)
    await websocket.send_json({"event": "error", **body})
    await websocket.close(code=POLICY_VIOLATION, reason=exc.code)


async def _send_events(websocket: WebSocket, watch: Watch) -> None:
    """Send the watch's events; close when it ends (1000 with the final status)."""
    sent = 0
    final: dict[str, Any] | None = None
    while (event := await watch.next()) is not None:
        sent += 1
        await websocket.send_json({"event": event.kind, "id": sent, "data": event.data})
        if event.kind == "status":
            final = event.data
    if watch.error is not None:
        exc = watch.error
        body = error_body(code=exc.code, message=exc.message, details=exc.details)
        await websocket.send_json({"event": "error", **body})
        await websocket.close(code=POLICY_VIOLATION, reason=exc.code)
    elif watch.overflowed:
        await websocket.close(code=TRY_AGAIN_LATER, reason="client too slow: reconnect")
    else:
        await websocket.close(code=1000, reason=str((final or {}).get("status", "")))


async def _until_disconnect(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


@router.websocket("/jobs/{job_id}/ws")
async def job_ws(websocket: WebSocket, job_id: str) -> None:
    """Stream the job's statuses and log lines until it ends (see the module's docstring)."""
    request_id_var.set(f"req_{random.getrandbits(48):012x}")
    offered = list(websocket.scope.get("subprotocols", []))
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
    try:
        principal = await _principal(websocket)
        if not _JOB_ID.match(job_id):
            raise JobNotFound(details="no such job_id: ids look like job_0123456789ab")
        async with websocket.app.state.sessionmaker() as session:
            await job_service.get_job(session=session, job_id=job_id, owner=principal.owner)
    except AppError as exc:
        await _refuse(websocket, exc, subprotocol)
        return
    hub: JobHub = websocket.app.state.job_hub
    await websocket.accept(subprotocol=subprotocol)
    async with hub.watch(job_id) as watch:
        sender = asyncio.create_task(_send_events(websocket, watch))
        receiver = asyncio.create_task(_until_disconnect(websocket))
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, receiver):
                task.cancel()
            for task in (sender, receiver):
                with contextlib.suppress(
                    asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError
                ):
                    await task
