"""Server-Sent Events of a job's status: one event per change, until the job ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.services import jobs as job_service
from nesydet.services.job_status import is_terminal
from nesydet.services.status_cache import StatusCache

POLL_S = 0.5
KEEPALIVE_S = 15.0


async def status_events(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    cache: StatusCache,
    job_id: str,
    owner: str | None,
    disconnected: Callable[[], Awaitable[bool]],
    poll_s: float = POLL_S,
    keepalive_s: float = KEEPALIVE_S,
) -> AsyncIterator[str]:
    """Yield the stream's text: a ``status`` event whenever the job's status payload changes,
    a comment every ``keepalive_s`` of silence, and nothing more once the job has ended or
    the client has gone (``disconnected`` tells)."""
    last: str | None = None
    sent = 0
    idle = 0.0
    yield "retry: 2000\n\n"
    while True:
        async with sessionmaker() as session:
            payload = await job_service.get_status(
                session=session, cache=cache, job_id=job_id, owner=owner
            )
        text = json.dumps(payload)
        if text != last:
            sent += 1
            last = text
            idle = 0.0
            yield f"id: {sent}\nevent: status\ndata: {text}\n\n"
            if is_terminal(payload["status"]):
                return
        elif idle >= keepalive_s:
            idle = 0.0
            yield ": keep-alive\n\n"
        if await disconnected():
            return
        await asyncio.sleep(poll_s)
        idle += poll_s
