"""Claiming a job and persisting what a worker learns about it.

Every write is a conditional update of a job this worker still holds (status processing, its
own claim token), committed at once, then published to the status cache with the row's new
version. A write that finds the job no longer held (cancelled, or taken over after this
worker went silent) raises :class:`JobLost` and changes nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.db.base import utcnow
from nesydet.db.models import Job, JobFile
from nesydet.db.repositories import jobs as job_repo
from nesydet.pipeline import PipelineResult
from nesydet.schemas.common import iso_z
from nesydet.services.job_status import publish
from nesydet.services.processing.artefacts import ArtefactKeys
from nesydet.services.processing.failures import JobLost, storage_failure
from nesydet.services.results import detection_row, dropped_by_rule
from nesydet.services.status_cache import StatusCache
from nesydet.services.webhooks.outbox import WebhookOutbox


@dataclass
class Claim:
    """A job this worker has claimed: the row as it was claimed (with its files), the claim
    token every later write must match, and this worker's own pace on it."""

    job: Job
    token: str
    started: float  # time.monotonic() at the claim
    # Seconds per image until this worker has timed one of its own: the rate measured on
    # recent jobs of the model, as the estimate given when the job was created.
    seconds_per_image: float
    images_done_here: int = 0
    last_write: float = 0.0

    @property
    def job_id(self) -> str:
        """Return the claimed job's id."""
        return self.job.id


def estimate_finish(claim: Claim, remaining: int, *, now: float | None = None) -> datetime:
    """Return when the claimed job should finish ``remaining`` more images.

    At this worker's own pace once it has done an image of the job, before that at the rate
    measured on recent jobs of the model.
    """
    now = time.monotonic() if now is None else now
    if claim.images_done_here:
        per_image = (now - claim.started) / claim.images_done_here
    else:
        per_image = claim.seconds_per_image
    return utcnow() + timedelta(seconds=per_image * remaining)


class JobStore:
    """The database side of running jobs, for one worker process (coroutines on its I/O loop)."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        cache: StatusCache,
        worker_id: str,
        heartbeat_stale_s: float,
        default_seconds_per_image: float,
        webhooks: WebhookOutbox | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.cache = cache
        self.worker_id = worker_id
        self.heartbeat_stale_s = heartbeat_stale_s
        self.default_seconds_per_image = default_seconds_per_image
        # Webhook deliveries of the job's events commit with the write that makes them.
        self.webhooks = webhooks
        self._log_order = asyncio.Lock()  # log lines reach the cache in the order sent

    async def _events(self, session: AsyncSession, job: Job | None) -> list[str]:
        if self.webhooks is None or job is None:
            return []
        return await self.webhooks.record(session, job)

    async def _send(self, deliveries: list[str]) -> None:
        if self.webhooks is not None and deliveries:
            await self.webhooks.send(deliveries)

    async def claim(self, job_id: str) -> Claim | None:
        """Take the job if it is queued (or its holder went silent); None if it is not ours.

        The claimed row comes back with its files and their uploads, for the runner to read.
        """
        token = secrets.token_hex(8)
        stale = utcnow() - timedelta(seconds=self.heartbeat_stale_s)
        async with self.sessionmaker() as session:
            job = await job_repo.get(session=session, job_id=job_id)
            if job is None:
                return None
            claimed = await job_repo.claim(
                session=session,
                job_id=job_id,
                token=token,
                worker_id=self.worker_id,
                stale_before=stale,
                time_limit_s=job.time_limit_s,
            )
            await session.commit()
            if claimed is None:
                return None
            job = await job_repo.get(session=session, job_id=job_id, with_files=True)
            if job is None:
                return None
            rate = await job_repo.seconds_per_image(session=session, model_name=job.model_name)
        await publish(self.cache, job)
        return Claim(
            job=job,
            token=token,
            started=time.monotonic(),
            seconds_per_image=rate or self.default_seconds_per_image,
        )

    async def write(self, claim: Claim, values: dict[str, Any]) -> Job:
        """Write ``values`` to the claimed job and publish its status; return the new row.

        Raises:
            JobLost: the job is no longer this worker's.
        """
        values = {"updated_at": utcnow(), **values}
        async with self.sessionmaker() as session:
            job = await job_repo.update_held(
                session=session, job_id=claim.job_id, token=claim.token, values=values
            )
            deliveries = await self._events(session, job)
            await session.commit()
        if job is None:
            raise JobLost(claim.job_id)
        claim.last_write = time.monotonic()
        await publish(self.cache, job)
        await self._send(deliveries)
        return job

    async def save_file(
        self,
        claim: Claim,
        job_file: JobFile,
        result: PipelineResult,
        keys: ArtefactKeys,
        *,
        processed: int,
    ) -> Job:
        """Store one image's detections, its artefact keys and the job's progress in one
        transaction, if the job is still this worker's; return the job's new row.

        Raises:
            JobLost: the job is no longer this worker's (nothing is written).
            JobFailure: STORAGE_ERROR when the database refuses the write (retried).
        """
        width, height = result.image_size
        rows = [detection_row(det, i) for i, det in enumerate(result.detections)]
        now = utcnow()
        progress = {
            "processed_count": processed,
            "updated_at": now,
            "estimated_completion": estimate_finish(claim, claim.job.file_count - processed),
        }
        file_values = {
            "detection_count": len(rows),
            "dropped_count": len(result.dropped),
            "dropped_by": dropped_by_rule(result.dropped),
            "width": width,
            "height": height,
            "timings": {k: round(v, 6) for k, v in result.timings.items()},
            "processed_at": now,
            **keys.as_columns(),
        }
        try:
            async with self.sessionmaker() as session:
                job = await job_repo.update_held(
                    session=session, job_id=claim.job_id, token=claim.token, values=progress
                )
                if job is None:
                    await session.rollback()
                    raise JobLost(claim.job_id)
                await job_repo.replace_detections(
                    session=session, job_id=claim.job_id, file_id=job_file.file_id, rows=rows
                )
                await job_repo.finish_file(
                    session=session,
                    job_id=claim.job_id,
                    file_id=job_file.file_id,
                    values=file_values,
                )
                deliveries = await self._events(session, job)
                await session.commit()
        except (OperationalError, DBAPIError) as exc:
            raise storage_failure("Could not save results", exc) from exc
        claim.last_write = time.monotonic()
        await publish(self.cache, job)
        await self._send(deliveries)
        return job

    async def log(self, job_id: str, level: str, message: str, **fields: Any) -> None:
        """Publish a line of the job's log on its status channel (watchers of the job see it)."""
        line = {"time": iso_z(utcnow()), "level": level, "message": message, **fields}
        async with self._log_order:
            await self.cache.log(job_id, line)

    async def totals(self, job_id: str) -> tuple[int, float | None]:
        """Return the job's stored detection count and mean confidence."""
        async with self.sessionmaker() as session:
            return await job_repo.summary(session=session, job_id=job_id)

    async def mark_due(self, job_id: str, when: datetime) -> None:
        """Record ``when`` as the job's send time, so the sweeper sends it once it is due."""
        async with self.sessionmaker() as session:
            await job_repo.mark_sent(session=session, job_id=job_id, when=when)
            await session.commit()
