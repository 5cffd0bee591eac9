"""The webhook outbox: a job's events become delivery rows in the very transaction that
changes the job, and their tasks are sent to the queue ``webhooks`` only once it committed.

A task that could not be sent (the broker was away) is not lost: its delivery stays pending,
and the webhook worker sends it again once it is overdue (:func:`resend_stranded`).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import anyio
from celery import Celery
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.broker import WEBHOOK_QUEUE, WEBHOOK_TASK
from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import Job, WebhookDelivery
from nesydet.db.repositories import webhooks as repo
from nesydet.domain import JobStatus
from nesydet.ids import DELIVERY, new_id
from nesydet.schemas.common import iso_z
from nesydet.services.dispatch import Dispatcher
from nesydet.services.job_status import job_status_payload

log = logging.getLogger(__name__)

_EVENTS = {
    JobStatus.COMPLETED: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
    JobStatus.PROCESSING: "job.progress",
}
PROGRESS = "job.progress"


def event_for(status: str) -> str | None:
    """Return the event a job entering ``status`` makes (None for queued)."""
    return _EVENTS.get(JobStatus(status)) if status in _EVENTS else None


def event_body(event: str, job: Job, now: datetime) -> dict[str, Any]:
    """Return a delivery's body: the event type, its time and the job's status payload."""
    return {"type": event, "timestamp": iso_z(now), "data": job_status_payload(job)}


def body_text(payload: dict[str, Any]) -> str:
    """Return the JSON text that is sent (and signed) for a delivery's payload."""
    return json.dumps(payload, separators=(",", ":"))


class WebhookOutbox:
    """Records the deliveries of a job's events and sends their tasks (one per process)."""

    def __init__(self, celery: Celery, settings: Settings) -> None:
        self.celery = celery
        self.settings = settings
        self._progress_sent: dict[str, float] = {}  # job id -> monotonic time of its last

    @classmethod
    def of(cls, dispatcher: Dispatcher) -> WebhookOutbox:
        """Return an outbox that sends through the dispatcher's broker connection."""
        return cls(dispatcher.celery, dispatcher.settings)

    def _progress_due(self, job_id: str) -> bool:
        now = time.monotonic()
        last = self._progress_sent.get(job_id)
        if last is not None and now - last < self.settings.webhook_progress_interval_s:
            return False
        self._progress_sent[job_id] = now
        return True

    async def record(
        self, session: AsyncSession, job: Job, *, event: str | None = None
    ) -> list[str]:
        """Stage one delivery per webhook that wants the event of the job's (new) status;
        return their ids, to :meth:`send` once the session committed.

        ``job.progress`` events of a job are at most one per
        ``webhook_progress_interval_s`` in this process.
        """
        event = event or event_for(job.status)
        if event is None:
            return []
        if event == PROGRESS:
            if not self._progress_due(job.id):
                return []
        else:
            self._progress_sent.pop(job.id, None)
        hooks = await repo.webhooks_for_job(session=session, owner=job.owner_id, job_id=job.id)
        targets = [hook for hook in hooks if event in hook.events]
        if not targets:
            return []
        now = utcnow()
        payload = event_body(event, job, now)
        until = now + timedelta(seconds=self.settings.webhook_retry_horizon_s)
        deliveries = [
            WebhookDelivery(
                id=new_id(DELIVERY),
                webhook_id=hook.id,
                event_type=event,
                job_id=job.id,
                payload=payload,
                status="pending",
                attempt_count=0,
                created_at=now,
                next_attempt_at=now,
                retry_until=until,
                sent_at=now,
            )
            for hook in targets
        ]
        await repo.add_deliveries(session=session, deliveries=deliveries)
        return [d.id for d in deliveries]

    def publish(self, delivery_id: str, attempt: int, countdown: float | None = None) -> None:
        """Send the task of a delivery's attempt ``attempt`` (blocking); raises when the
        broker cannot be reached."""
        self.celery.send_task(
            WEBHOOK_TASK,
            args=[delivery_id, attempt],
            queue=WEBHOOK_QUEUE,
            countdown=countdown,
            retry=False,
            # Never longer than one attempt may take, with room for the database writes.
            time_limit=int(self.settings.webhook_timeout_s * 2 + 60),
        )

    async def send_one(self, delivery_id: str, attempt: int, *, at: datetime | None = None) -> bool:
        """Send an attempt's task (due at ``at``, else now); return whether it was sent."""
        countdown = max(0.0, (at - utcnow()).total_seconds()) if at is not None else None
        try:
            with anyio.fail_after(self.settings.broker_publish_timeout_s + 1):
                await anyio.to_thread.run_sync(
                    self.publish, delivery_id, attempt, countdown, abandon_on_cancel=True
                )
        except Exception as exc:  # the webhook worker resends it once it is overdue
            log.warning(
                "could not send a webhook delivery's task",
                extra={"delivery_id": delivery_id, "error": repr(exc)},
            )
            return False
        return True

    async def send(self, delivery_ids: list[str]) -> None:
        """Send the first attempt of just-committed deliveries."""
        for delivery_id in delivery_ids:
            if not await self.send_one(delivery_id, 1):
                return  # the broker is away: the webhook worker sends the rest later


async def resend_stranded(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    outbox: WebhookOutbox,
    now: datetime | None = None,
    limit: int = 100,
) -> int:
    """Send again the tasks of deliveries that look lost; return how many were sent.

    Lost: pending and overdue by ``webhook_resend_after_s`` (its message was never sent, or
    vanished), or taken for an attempt that never finished (its worker died). Each is taken
    by a conditional update first, and an attempt is claimed by its number, so a task that
    was only late makes no second attempt.
    """
    settings = outbox.settings
    now = now or utcnow()
    grace = timedelta(seconds=settings.webhook_resend_after_s)
    async with sessionmaker() as session:
        rows = await repo.stranded(
            session=session,
            sent_before=now - grace,
            claimed_before=now - grace - timedelta(seconds=settings.webhook_timeout_s),
            limit=limit,
        )
    sent = 0
    for row in rows:
        async with sessionmaker() as session:
            taken = await repo.take_resend(session=session, delivery=row, now=now)
            await session.commit()
        if taken is None:
            continue
        if not await outbox.send_one(taken.id, taken.attempt_count + 1):
            break
        sent += 1
        log.warning("webhook delivery resent", extra={"delivery_id": taken.id})
    return sent
