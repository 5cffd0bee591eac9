"""One attempt of a webhook delivery, as the webhook worker makes it: claim the attempt,
POST the signed event, record what happened, and schedule the retry when it failed."""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.db.base import utcnow
from nesydet.db.models import Webhook, WebhookAttempt, WebhookDelivery
from nesydet.db.repositories import webhooks as repo
from nesydet.services.webhooks.http import PostResult, post
from nesydet.services.webhooks.outbox import WebhookOutbox, body_text
from nesydet.services.webhooks.policy import next_attempt_at
from nesydet.services.webhooks.ssrf import AllowList

log = logging.getLogger(__name__)


class Deliverer:
    """Makes delivery attempts (one instance per webhook worker process)."""

    def __init__(
        self, *, sessionmaker: async_sessionmaker[AsyncSession], outbox: WebhookOutbox
    ) -> None:
        self.sessionmaker = sessionmaker
        self.outbox = outbox
        self.settings = outbox.settings
        self.allow = AllowList.parse(self.settings.webhook_allowed_hosts)

    async def attempt(self, delivery_id: str, number: int) -> str | None:
        """Make attempt ``number`` of a delivery; return its outcome (``succeeded``,
        ``retrying`` or ``failed``), or None when that attempt is not due (made already,
        the delivery finished, or it was deleted)."""
        started = utcnow()
        async with self.sessionmaker() as session:
            delivery = await repo.claim_attempt(
                session=session, delivery_id=delivery_id, number=number, now=started
            )
            webhook = (
                await session.get(Webhook, delivery.webhook_id) if delivery is not None else None
            )
            await session.commit()
        if delivery is None or webhook is None:
            log.info(
                "webhook attempt not due", extra={"delivery_id": delivery_id, "attempt": number}
            )
            return None
        result: PostResult = await anyio.to_thread.run_sync(
            functools.partial(
                post,
                webhook.url,
                body_text(delivery.payload),
                secret=webhook.secret,
                message_id=delivery.id,
                allow=self.allow,
                timeout_s=self.settings.webhook_timeout_s,
            )
        )
        retry_at = None if result.ok else self._retry_at(delivery, number)
        attempt = WebhookAttempt(
            delivery_id=delivery.id,
            number=number,
            started_at=started,
            address=result.address,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
        )
        async with self.sessionmaker() as session:
            row = await repo.finish_attempt(
                session=session, attempt=attempt, values=_outcome(result, retry_at)
            )
            await session.commit()
        outcome = "succeeded" if result.ok else ("retrying" if retry_at else "failed")
        log.info(
            "webhook attempt",
            extra={
                "delivery_id": delivery.id,
                "attempt": number,
                "outcome": outcome,
                "status_code": result.status_code,
                "latency_ms": result.latency_ms,
                "error": result.error,
            },
        )
        if row is not None and retry_at is not None:
            await self.outbox.send_one(delivery.id, number + 1, at=retry_at)
        return outcome

    def _retry_at(self, delivery: WebhookDelivery, attempts_made: int) -> datetime | None:
        return next_attempt_at(
            attempts_made,
            now=utcnow(),
            retry_until=delivery.retry_until,
            base_s=self.settings.webhook_retry_base_s,
            max_delay_s=self.settings.webhook_retry_max_delay_s,
            jitter=self.settings.webhook_retry_jitter,
        )


def _outcome(result: PostResult, retry_at: datetime | None) -> dict[str, Any]:
    """Return a delivery's new columns after an attempt with ``result``."""
    values: dict[str, Any] = {
        "last_status_code": result.status_code,
        "last_error": result.error,
        "next_attempt_at": retry_at,
    }
    if result.ok:
        values.update(status="succeeded", delivered_at=utcnow())
    elif retry_at is not None:
        values.update(status="pending", sent_at=utcnow())
    else:
        values.update(status="failed")
    return values
