"""Readiness: can this API process reach its database, storage and broker right now?

Concurrent callers share one run of the checks (a load balancer and a Kubernetes probe asking
at once cost one round of checks), and every run uses probes of its own, so two runs never
step on each other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from celery import Celery
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from nesydet.storage import Storage

CHECK_TIMEOUT_S = 3.0
Check = Callable[[], Awaitable[None]]


def check_broker(celery: Celery) -> None:
    """Connect to the broker once; raise when it cannot be reached."""
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=int(CHECK_TIMEOUT_S))


async def _timed(check: Check) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {CHECK_TIMEOUT_S:g} s"}
    except Exception as exc:  # readiness reports any failure instead of raising it
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


class Readiness:
    """The checks of one API process, run at most once at a time."""

    def __init__(self, *, engine: AsyncEngine, storage: Storage, celery: Celery) -> None:
        self._checks: dict[str, Check] = {
            "database": lambda: self._database(engine),
            "storage": lambda: anyio.to_thread.run_sync(storage.check),
            "broker": lambda: anyio.to_thread.run_sync(
                check_broker, celery, abandon_on_cancel=True
            ),
        }
        self._running: asyncio.Task[dict[str, dict[str, Any]]] | None = None

    @staticmethod
    async def _database(engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def check(self) -> dict[str, dict[str, Any]]:
        """Return each check's result; joins the run in progress if there is one."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._run())
        # shield: one caller giving up (a disconnect) must not cancel the others' answer.
        return await asyncio.shield(self._running)

    async def _run(self) -> dict[str, dict[str, Any]]:
        results = await asyncio.gather(*(_timed(check) for check in self._checks.values()))
        return dict(zip(self._checks, results, strict=True))
