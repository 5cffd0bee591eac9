"""The sweeper: no queued job sits in no queue, no job stays with a dead worker, and old
idempotency keys and worker rows are pruned.

Runs every few seconds in the API process. Every change it makes is a conditional update, so
several API processes can sweep at once; a task it sends twice is harmless because workers
claim jobs before working on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
import redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.broker import make_celery
from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import Job
from nesydet.db.repositories import jobs as job_repo
from nesydet.db.session import create_engine, create_sessionmaker, is_unavailable
from nesydet.domain import JobStatus
from nesydet.observability import metrics
from nesydet.services import idempotency
from nesydet.services.broker_scan import jobs_in_broker
from nesydet.services.dispatch import Dispatcher
from nesydet.services.job_status import publish
from nesydet.services.retention import cleanup
from nesydet.services.status_cache import StatusCache, make_status_cache
from nesydet.services.webhooks.outbox import WebhookOutbox
from nesydet.storage import Storage

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
    lost: LostMessages | None = None,
) -> dict[str, int]:
    """Run one pass; return how many jobs were re-queued, failed, sent and resent.

    Jobs created less than ``grace_s`` ago are left to their own request's send. With
    ``lost`` (the sweeper's memory between passes), queued jobs whose message vanished from
    the broker are resent.
    """
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.heartbeat_stale_s)
    counts = {"requeued": 0, "failed": 0, "sent": 0, "resent": 0}
    async with sessionmaker() as session:
        stale = await job_repo.stale_processing(session=session, stale_before=stale_before)
    outbox = WebhookOutbox.of(dispatcher)
    for job in stale:
        recovered = await _recover(
            sessionmaker=sessionmaker,
            settings=settings,
            job=job,
            stale_before=stale_before,
            outbox=outbox,
        )
        if recovered is not None:
            outcome, row = recovered
            counts[outcome] += 1
            await publish(cache, row)
    async with sessionmaker() as session:
        unsent = await job_repo.unsent(
            session=session,
            created_before=now - timedelta(seconds=grace_s),
            sent_before=now - timedelta(seconds=settings.resend_queued_after_s),
        )
    for job_id, size in unsent:
        if not await dispatcher.send_and_record(sessionmaker, job_id, size, retrying=True):
            break  # the broker is away: the next pass tries again
        counts["sent"] += 1
    if lost is not None:
        counts["resent"] = await _resend_lost(
            sessionmaker=sessionmaker, settings=settings, dispatcher=dispatcher, lost=lost
        )
    if any(counts.values()):
        log.info("sweep", extra=counts)
    async with sessionmaker() as session:
        await job_repo.prune_workers(session=session, before=now - timedelta(days=1))
        await idempotency.prune(session=session)
        await session.commit()
    return counts


@dataclass
class LostMessages:
    """Queued jobs whose message was missing from the broker at the previous pass."""

    missing: set[str] = field(default_factory=set)


async def _resend_lost(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    dispatcher: Dispatcher,
    lost: LostMessages,
) -> int:
    """Resend the tasks of queued jobs sent a while ago that have no message in the broker.

    A job must be missing at two passes in a row: a message in a worker's hands between the
    queue and its unacked set is missing for an instant, never for a whole pass. The resend is
    taken by a conditional update first, so two sweepers never both send it.
    """
    now = utcnow()
    async with sessionmaker() as session:
        overdue = await job_repo.sent_before(
            session=session, before=now - timedelta(seconds=settings.lost_message_after_s)
        )
    if not overdue:
        lost.missing = set()
        return 0
    try:
        present = await anyio.to_thread.run_sync(jobs_in_broker, settings.broker_url)
    except redis.RedisError as exc:  # the broker is away: nothing can be told or sent now
        log.info("broker not scanned", extra={"error": repr(exc)})
        return 0
    if present is None:
        return 0
    missing = {job_id for job_id, _, _ in overdue if job_id not in present}
    again, lost.missing = missing & lost.missing, missing - lost.missing
    resent = 0
    for job_id, size, sent_at in overdue:
        if job_id not in again:
            continue
        async with sessionmaker() as session:
            won = await job_repo.take_resend(
                session=session, job_id=job_id, sent_at=sent_at, now=utcnow()
            )
            await session.commit()
        if won and await dispatcher.send(job_id, size, retrying=True):
            resent += 1
            log.warning("lost broker message: job resent", extra={"job_id": job_id})
    return resent


async def _recover(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    job: Job,
    stale_before: datetime,
    outbox: WebhookOutbox,
) -> tuple[str, Job] | None:
    """Re-queue a job whose worker died, or fail it when it ran out of time or attempts;
    return the outcome and the job's new row, or None when its holder came back first.

    A job failed here gets its ``job.failed`` webhook deliveries in the same transaction,
    their tasks sent after the commit (as a worker's failure does).
    """
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
        row = await job_repo.release_stale(
            session=session,
            job_id=job.id,
            token=job.claim_token,
            stale_before=stale_before,
            values=values,
        )
        failed = row is not None and outcome == "failed"
        deliveries = await outbox.record(session, row) if failed and row is not None else []
        await session.commit()
    if row is None:
        return None
    await outbox.send(deliveries)
    if outcome == "failed":
        metrics.INFERENCE_JOBS.labels(status=JobStatus.FAILED).inc()
    log.warning("stale job recovered", extra={"job_id": job.id, "outcome": outcome})
    return outcome, row


class Sweeper:
    """Runs :func:`sweep` periodically as an asyncio task."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        dispatcher: Dispatcher,
        cache: StatusCache,
        storage: Storage,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._dispatcher = dispatcher
        self._cache = cache
        self._storage = storage
        self._interval = settings.sweeper_interval_s
        self._lost = LostMessages()
        self._next_cleanup = 0.0
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
                    lost=self._lost,
                )
                await self._cleanup_when_due()
            except Exception as exc:  # a failed pass is logged; the next one tries again
                if is_unavailable(exc):
                    log.warning("sweep skipped: the database cannot be reached")
                else:
                    log.exception("sweep failed")
            await asyncio.sleep(self._interval)

    async def _cleanup_when_due(self) -> None:
        """Run retention every ``cleanup_interval_s`` (each API process: deleting is idempotent
        and an upload is marked expired by one of them only)."""
        every = self._settings.cleanup_interval_s
        if every <= 0 or time.monotonic() < self._next_cleanup:
            return
        self._next_cleanup = time.monotonic() + every
        await cleanup(
            sessionmaker=self._sessionmaker,
            storage=self._storage,
            older_than=timedelta(days=self._settings.retention_days),
        )

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
