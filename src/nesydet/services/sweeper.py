"""The sweeper: no queued job sits in no queue, no job stays with a dead worker.

Runs every few seconds in the API process. Every change it makes is a conditional update, so
several API processes can sweep at once; a task it sends twice is harmless because workers
claim jobs before working on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import Job, JobStatus
from nesydet.db.repositories import jobs as job_repo
from nesydet.db.session import create_engine, create_sessionmaker
from nesydet.observability import metrics
from nesydet.schemas.jobs import job_status_payload
from nesydet.services.dispatch import Dispatcher
from nesydet.services.status_cache import StatusCache, make_status_cache
from nesydet.tasks.celery_app import make_celery

log = logging.getLogger(__name__)

# A job created this recently may still be in its request's own send.
_GRACE_S = 5.0


async def sweep(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    dispatcher: Dispatcher,
    cache: StatusCache,
    grace_s: float = _GRACE_S,
) -> dict[str, int]:
    """Run one pass; return how many jobs were re-queued, failed and sent.

    Jobs created less than ``grace_s`` ago are left to their own request's send.
    """
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.heartbeat_stale_s)
    counts = {"requeued": 0, "failed": 0, "sent": 0}
    async with sessionmaker() as session:
        stale = await job_repo.stale_processing(session=session, stale_before=stale_before)
    for job in stale:
        outcome = await _recover(
            sessionmaker=sessionmaker, settings=settings, job=job, stale_before=stale_before
        )
        if outcome is not None:
            counts[outcome] += 1
            async with sessionmaker() as session:
                fresh = await job_repo.get(session=session, job_id=job.id)
            if fresh is not None:
                await cache.put(fresh.id, job_status_payload(fresh))
    async with sessionmaker() as session:
        unsent = await job_repo.unsent(
            session=session,
            created_before=now - timedelta(seconds=grace_s),
            sent_before=now - timedelta(seconds=settings.resend_queued_after_s),
        )
        sizes: dict[str, int] = {}
        for job_id in unsent:
            row = await job_repo.get(session=session, job_id=job_id)
            if row is not None:
                sizes[job_id] = row.file_count
    for job_id, size in sizes.items():
        if await dispatcher.send_and_record(sessionmaker, job_id, size):
            counts["sent"] += 1
    if any(counts.values()):
        log.info("sweep", extra=counts)
    async with sessionmaker() as session:
        await job_repo.prune_workers(session=session, before=now - timedelta(days=1))
        await session.commit()
    return counts


async def _recover(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    job: Job,
    stale_before: datetime,
) -> str | None:
    """Re-queue a job whose worker died, or fail it when it ran out of time or attempts."""
    now = utcnow()
    values: dict[str, Any]
    if job.deadline_at is not None and now > job.deadline_at:
        values = {
            "status": JobStatus.FAILED,
            "failed_at": now,
            "error_code": "INFERENCE_ERROR",
            "error_message": "Job time limit exceeded",
            "error_details": f"the job ran past its limit of {job.time_limit_s:.0f} s",
        }
        outcome = "failed"
    elif job.attempts >= settings.max_delivery_attempts:
        values = {
            "status": JobStatus.FAILED,
            "failed_at": now,
            "error_code": "INFERENCE_ERROR",
            "error_message": "Worker lost",
            "error_details": f"the worker stopped during each of {job.attempts} attempts",
        }
        outcome = "failed"
    else:
        values = {
            "status": JobStatus.QUEUED,
            "sent_at": None,
            "current_stage": "Waiting for a worker",
        }
        outcome = "requeued"
    values.update(updated_at=now, claim_token=None, worker_id=None)
    async with sessionmaker() as session:
        changed = await job_repo.release_stale(
            session=session,
            job_id=job.id,
            token=job.claim_token,
            stale_before=stale_before,
            values=values,
        )
        await session.commit()
    if not changed:
        return None
    if outcome == "failed":
        metrics.INFERENCE_JOBS.labels(status=JobStatus.FAILED).inc()
    log.warning("stale job recovered", extra={"job_id": job.id, "outcome": outcome})
    return outcome


class Sweeper:
    """Runs :func:`sweep` periodically as an asyncio task."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        dispatcher: Dispatcher,
        cache: StatusCache,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._dispatcher = dispatcher
        self._cache = cache
        self._interval = settings.sweeper_interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sweeping in the background (no-op when the interval is 0)."""
        if self._interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="nesydet-sweeper")

    async def _loop(self) -> None:
        while True:
            try:
                await sweep(
                    sessionmaker=self._sessionmaker,
                    settings=self._settings,
                    dispatcher=self._dispatcher,
                    cache=self._cache,
                )
            except Exception:  # a failed pass is logged; the next one tries again
                log.exception("sweep failed")
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        """Stop sweeping."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def sweep_once(settings: Settings) -> dict[str, int]:
    """Run one sweep with connections of its own (``nesydet sweep``, e.g. from cron)."""
    engine = create_engine(settings.database_url)
    cache = make_status_cache(settings.redis_url, settings.status_cache_ttl_s)
    celery = make_celery(settings)
    try:
        return await sweep(
            sessionmaker=create_sessionmaker(engine),
            settings=settings,
            dispatcher=Dispatcher(celery, settings),
            cache=cache,
        )
    finally:
        await cache.close()
        celery.close()
        await engine.dispose()
