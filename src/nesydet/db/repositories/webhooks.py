"""Queries on webhooks, their deliveries and delivery attempts.

Every change of a delivery's state is a conditional update (on its status and attempt count),
so a task delivered twice, or resent while its first message is still queued, makes one
attempt only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from nesydet.db.models import Webhook, WebhookAttempt, WebhookDelivery


def _owned(owner: str | None) -> ColumnElement[bool]:
    """Return the condition "belongs to ``owner``" (the local user's, owner None)."""
    return Webhook.owner_id == owner if owner is not None else Webhook.owner_id.is_(None)


async def add_webhook(*, session: AsyncSession, webhook: Webhook) -> None:
    """Stage a webhook and flush."""
    session.add(webhook)
    await session.flush()


async def get_webhook(
    *, session: AsyncSession, webhook_id: str, owner: str | None, any_owner: bool
) -> Webhook | None:
    """Return the webhook if it is ``owner``'s (anyone's with ``any_owner``), or None."""
    stmt = select(Webhook).where(Webhook.id == webhook_id)
    if not any_owner:
        stmt = stmt.where(_owned(owner))
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_webhooks(
    *, session: AsyncSession, owner: str | None, any_owner: bool, job_id: str | None, limit: int
) -> list[Webhook]:
    """Return webhooks, newest first: ``owner``'s (everyone's with ``any_owner``), those of
    one job when ``job_id`` is given."""
    stmt = select(Webhook)
    if not any_owner:
        stmt = stmt.where(_owned(owner))
    if job_id is not None:
        stmt = stmt.where(Webhook.job_id == job_id)
    stmt = stmt.order_by(Webhook.created_at.desc(), Webhook.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def count_subscriptions(*, session: AsyncSession, owner: str | None) -> int:
    """Return how many subscriptions (webhooks of no single job) ``owner`` has."""
    stmt = select(func.count()).select_from(Webhook).where(_owned(owner), Webhook.job_id.is_(None))
    return int(await session.scalar(stmt) or 0)


async def delete_webhook(*, session: AsyncSession, webhook: Webhook) -> None:
    """Delete a webhook (and, by cascade, its deliveries and their attempts)."""
    await session.delete(webhook)
    await session.flush()


async def webhooks_for_job(
    *, session: AsyncSession, owner: str | None, job_id: str
) -> list[Webhook]:
    """Return the webhooks a job's events go to: its owner's subscriptions and its own."""
    subscriptions = and_(_owned(owner), Webhook.job_id.is_(None))
    stmt = select(Webhook).where(or_(subscriptions, Webhook.job_id == job_id))
    return list((await session.execute(stmt.order_by(Webhook.id))).scalars())


async def add_deliveries(*, session: AsyncSession, deliveries: Sequence[WebhookDelivery]) -> None:
    """Stage deliveries and flush."""
    session.add_all(deliveries)
    await session.flush()


async def list_deliveries(
    *, session: AsyncSession, webhook_id: str, status: str | None, limit: int
) -> list[WebhookDelivery]:
    """Return a webhook's deliveries with their attempts, newest first."""
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    stmt = (
        stmt.options(selectinload(WebhookDelivery.attempts))
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def get_delivery(
    *, session: AsyncSession, delivery_id: str, webhook_id: str | None = None
) -> WebhookDelivery | None:
    """Return a delivery with its attempts (only one of ``webhook_id``, when given)."""
    stmt = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
    if webhook_id is not None:
        stmt = stmt.where(WebhookDelivery.webhook_id == webhook_id)
    stmt = stmt.options(selectinload(WebhookDelivery.attempts)).execution_options(
        populate_existing=True
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def _returned(session: AsyncSession, stmt: Update) -> WebhookDelivery | None:
    result = await session.execute(
        stmt.returning(WebhookDelivery).execution_options(
            synchronize_session=False, populate_existing=True
        )
    )
    return result.scalar_one_or_none()


async def claim_attempt(
    *, session: AsyncSession, delivery_id: str, number: int, now: datetime
) -> WebhookDelivery | None:
    """Take attempt ``number`` of a pending delivery; None when it is not due for that one
    (already made, delivered, given up, or the delivery is gone)."""
    return await _returned(
        session,
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.attempt_count == number - 1,
        )
        .values(status="sending", attempt_count=number, claimed_at=now),
    )


async def finish_attempt(
    *,
    session: AsyncSession,
    attempt: WebhookAttempt,
    values: dict[str, Any],
) -> WebhookDelivery | None:
    """Record an attempt and the delivery's new state, if the attempt is still the current
    one; None (nothing written) when the delivery was deleted or taken over meanwhile."""
    row = await _returned(
        session,
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == attempt.delivery_id,
            WebhookDelivery.status == "sending",
            WebhookDelivery.attempt_count == attempt.number,
        )
        .values(**values),
    )
    if row is not None:
        session.add(attempt)
        await session.flush()
    return row


async def requeue(
    *, session: AsyncSession, delivery_id: str, values: dict[str, Any]
) -> WebhookDelivery | None:
    """Make a delivery pending again unless an attempt is under way; None if one is."""
    return await _returned(
        session,
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status != "sending")
        .values(status="pending", **values),
    )


async def stranded(
    *, session: AsyncSession, sent_before: datetime, claimed_before: datetime, limit: int
) -> list[WebhookDelivery]:
    """Return deliveries whose task seems lost: pending, due and last sent before
    ``sent_before``; or taken for an attempt before ``claimed_before`` and never finished."""
    stmt = (
        select(WebhookDelivery)
        .where(
            or_(
                and_(
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= sent_before,
                    or_(
                        WebhookDelivery.sent_at.is_(None),
                        WebhookDelivery.sent_at < sent_before,
                    ),
                ),
                and_(
                    WebhookDelivery.status == "sending",
                    WebhookDelivery.claimed_at < claimed_before,
                ),
            )
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def take_resend(
    *, session: AsyncSession, delivery: WebhookDelivery, now: datetime
) -> WebhookDelivery | None:
    """Mark a stranded delivery pending and sent now, if it has not changed since it was
    read; None when another process took it first."""
    return await _returned(
        session,
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.status == delivery.status,
            WebhookDelivery.attempt_count == delivery.attempt_count,
            WebhookDelivery.sent_at == delivery.sent_at
            if delivery.sent_at is not None
            else WebhookDelivery.sent_at.is_(None),
        )
        .values(status="pending", sent_at=now, claimed_at=None),
    )
