"""Hands jobs to the broker. A job row is always committed before its task is sent."""

from __future__ import annotations

import logging
import math
import time

import anyio
from celery import Celery
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.broker import EXPORT_QUEUE, EXPORT_TASK, INFERENCE_TASK, QUEUE
from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.repositories import jobs as job_repo
from nesydet.observability import tracing

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5.0


class Dispatcher:
    """Publishes inference tasks; failing to reach the broker is reported, never raised."""

    def __init__(self, celery: Celery, settings: Settings) -> None:
        self.celery = celery
        self.settings = settings
        self._off_until = 0.0

    def time_limits(self, image_count: int) -> tuple[int, int]:
        """Return the (hard, soft) time limits in seconds of a job with that many images."""
        hard = math.ceil(self.settings.job_time_limit_s(image_count))
        return hard, max(1, hard - min(30, math.ceil(hard * 0.1)))

    def publish(self, job_id: str, image_count: int, countdown: float | None = None) -> None:
        """Send the job's task now (blocking); raises when the broker cannot be reached."""
        hard, soft = self.time_limits(image_count)
        with tracing.span(
            f"send {INFERENCE_TASK}", kind=tracing.PRODUCER, attributes={"job_id": job_id}
        ):
            self.celery.send_task(
                INFERENCE_TASK,
                args=[job_id],
                queue=QUEUE,
                time_limit=hard,
                soft_time_limit=soft,
                countdown=countdown,
                retry=False,
                headers=tracing.inject() or None,  # the worker's job span continues this trace
            )

    async def send_export(self, version_id: int) -> bool:
        """Ask for the ONNX export of a registered .pt; return whether the task was sent (a
        worker that loads the version without it exports it itself)."""
        try:
            with anyio.fail_after(self.settings.broker_publish_timeout_s + 1):
                await anyio.to_thread.run_sync(
                    lambda: self.celery.send_task(
                        EXPORT_TASK, args=[version_id], queue=EXPORT_QUEUE, retry=False
                    ),
                    abandon_on_cancel=True,
                )
        except Exception as exc:  # the broker is down: the export is made where it is used
            log.warning("could not send the export task", extra={"error": repr(exc)})
            return False
        return True

    async def send(self, job_id: str, image_count: int, *, retrying: bool = False) -> bool:
        """Publish from async code within the publish timeout; return whether it was sent.

        After a failure, requests do not try for a few seconds (their jobs stay queued and the
        sweeper sends them), so a broker that is down or frozen slows no request; the sweeper
        (``retrying``) always tries.
        """
        if not retrying and time.monotonic() < self._off_until:
            log.info("broker recently unreachable; the sweeper will send", extra={"job_id": job_id})
            return False
        try:
            with anyio.fail_after(self.settings.broker_publish_timeout_s + 1):
                await anyio.to_thread.run_sync(
                    self.publish, job_id, image_count, abandon_on_cancel=True
                )
        except Exception as exc:  # any broker failure leaves the job to the sweeper
            self._off_until = time.monotonic() + RETRY_AFTER_S
            log.warning(
                "could not send the job's task", extra={"job_id": job_id, "error": repr(exc)}
            )
            return False
        return True

    async def send_and_record(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        job_id: str,
        image_count: int,
        *,
        retrying: bool = False,
    ) -> bool:
        """Send a queued job's task and record ``sent_at``; False leaves it to the sweeper."""
        if not await self.send(job_id, image_count, retrying=retrying):
            return False
        async with sessionmaker() as session:
            await job_repo.mark_sent(session=session, job_id=job_id, when=utcnow())
            await session.commit()
        return True
