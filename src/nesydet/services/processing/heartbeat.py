"""The worker's heartbeat: a task on the I/O loop that tells the database every few seconds
that this process lives, and which job it holds (so the sweeper can tell a dead holder)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.db.repositories import jobs as job_repo

log = logging.getLogger(__name__)


class Heartbeat:
    """Beats every ``interval_s``, and at once when the held job changes."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker_id: str,
        interval_s: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._worker_id = worker_id
        self._interval = interval_s
        self._loop = loop
        self._held: tuple[str, str] | None = None  # (job id, claim token)
        self._wake = asyncio.Event()
        self._stopping = False

    def hold(self, job_id: str | None, token: str | None = None) -> None:
        """Record the job this process now holds (None when idle) and beat at once.

        Called from any thread.
        """
        self._held = (job_id, token or "") if job_id is not None else None
        self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Beat until :meth:`stop`, then remove this worker's row."""
        host = socket.gethostname()
        while not self._stopping:
            try:
                await self._beat(host, self._held)
            except Exception as exc:  # a missed beat is logged; the next one may work
                log.warning("heartbeat failed", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
        try:
            async with self._sessionmaker() as session:
                await job_repo.remove_worker(session=session, worker_id=self._worker_id)
                await session.commit()
        except Exception as exc:  # the sweeper prunes rows of workers that went silent
            log.warning("could not remove the worker's row", extra={"error": repr(exc)})

    async def _beat(self, host: str, held: tuple[str, str] | None) -> None:
        async with self._sessionmaker() as session:
            await job_repo.worker_heartbeat(
                session=session,
                worker_id=self._worker_id,
                hostname=host,
                pid=os.getpid(),
                job_id=held[0] if held else None,
            )
            if held is not None:
                await job_repo.heartbeat(session=session, job_id=held[0], token=held[1])
            await session.commit()

    def stop(self) -> None:
        """Ask the loop to end after its current beat (called from any thread)."""
        self._stopping = True
        self._loop.call_soon_threadsafe(self._wake.set)
