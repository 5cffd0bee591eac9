"""Use cases of webhooks: make (the secret shown once), list, read, delete; a job's own
webhook from a predict body's ``webhook_url``; deliveries listed and redelivered.

``visible_to`` is whose webhooks the caller sees: its own user id, or None for all (admins,
viewers, and the local user when authentication is off). Another owner's webhook answers
exactly like an unknown one.
"""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.config import Settings
from nesydet.db import session as uow
from nesydet.db.base import utcnow
from nesydet.db.models import Job, Webhook, WebhookDelivery
from nesydet.db.repositories import webhooks as repo
from nesydet.errors import (
    DeliveryInProgress,
    DeliveryNotFound,
    WebhookLimitReached,
    WebhookNotFound,
    WebhookUrlRefused,
)
from nesydet.ids import WEBHOOK, new_id
from nesydet.schemas.webhooks import (
    FINAL_EVENTS,
    DeliveryAttempt,
    DeliveryItem,
    WebhookCreated,
    WebhookCreateRequest,
    WebhookItem,
)
from nesydet.services.webhooks.outbox import WebhookOutbox
from nesydet.services.webhooks.ssrf import AllowList, RefusedUrl, permitted_addresses

SECRET_PREFIX = "whsec_"  # noqa: S105  # the Standard Webhooks prefix, no secret
_SECRET_BYTES = 32
# A host name that takes longer than this to resolve is refused at submission.
_RESOLVE_TIMEOUT_S = 5.0


def new_secret() -> str:
    """Return a fresh signing secret: ``whsec_`` and 256 random bits in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


async def check_url(url: str, settings: Settings, *, field: str) -> None:
    """Refuse a URL a webhook must not be sent to (the SSRF guard, at submission).

    Raises:
        WebhookUrlRefused: not http(s), credentials in it, a host that does not resolve, or
            an address that is loopback, private, link-local or metadata and not allowed by
            ``NESYDET_WEBHOOK_ALLOWED_HOSTS``.
    """
    allow = AllowList.parse(settings.webhook_allowed_hosts)
    try:
        with anyio.fail_after(_RESOLVE_TIMEOUT_S):
            await anyio.to_thread.run_sync(permitted_addresses, url, allow, abandon_on_cancel=True)
    except RefusedUrl as exc:
        reason = str(exc)
    except TimeoutError:
        reason = "the host name took too long to resolve"
    else:
        return
    raise WebhookUrlRefused(
        details=f"{field}: {reason}",
        errors=[{"field": field, "error_code": WebhookUrlRefused.code, "error": reason}],
    )


async def check_job_url(url: str | None, settings: Settings) -> None:
    """Refuse a predict body's ``webhook_url`` the SSRF guard refuses (None: nothing to do)."""
    if url is not None:
        await check_url(url, settings, field="webhook_url")


async def create_webhook(
    *,
    session: AsyncSession,
    settings: Settings,
    owner: str | None,
    request: WebhookCreateRequest,
) -> Webhook:
    """Make a subscription of ``owner`` (None: the local user).

    Raises:
        WebhookUrlRefused: the URL fails the SSRF guard.
        WebhookLimitReached: the owner has ``webhook_max_per_owner`` subscriptions already.
    """
    await check_url(request.url, settings, field="url")
    count = await repo.count_subscriptions(session=session, owner=owner)
    if count >= settings.webhook_max_per_owner:
        raise WebhookLimitReached(details=f"{count} webhooks, the most an owner may have")
    webhook = Webhook(
        id=new_id(WEBHOOK),
        owner_id=owner,
        job_id=None,
        url=request.url,
        events=list(dict.fromkeys(request.events)),
        description=request.description,
        secret=new_secret(),
        created_at=utcnow(),
    )
    await repo.add_webhook(session=session, webhook=webhook)
    return webhook


async def add_job_webhook(*, session: AsyncSession, job: Job, url: str | None) -> Webhook | None:
    """Make the webhook of one job (a predict body's ``webhook_url``, checked already): the
    job's final event only, signed with a secret of its own. None when there is no URL."""
    if url is None:
        return None
    webhook = Webhook(
        id=new_id(WEBHOOK),
        owner_id=job.owner_id,
        job_id=job.id,
        url=url,
        events=list(FINAL_EVENTS),
        description=f"webhook_url of {job.id}",
        secret=new_secret(),
        created_at=utcnow(),
    )
    await repo.add_webhook(session=session, webhook=webhook)
    return webhook


async def job_webhook(*, session: AsyncSession, job_id: str) -> Webhook | None:
    """Return the webhook a job was created with, if any."""
    found = await repo.list_webhooks(
        session=session, owner=None, any_owner=True, job_id=job_id, limit=1
    )
    return found[0] if found else None


def _unknown(webhook_id: str) -> WebhookNotFound:
    return WebhookNotFound(details=f"no webhook with id {webhook_id}")


async def get_webhook(*, session: AsyncSession, webhook_id: str, visible_to: str | None) -> Webhook:
    """Return the webhook, or raise WebhookNotFound (also for another owner's)."""
    webhook = await repo.get_webhook(
        session=session, webhook_id=webhook_id, owner=visible_to, any_owner=visible_to is None
    )
    if webhook is None:
        raise _unknown(webhook_id)
    return webhook


async def list_webhooks(
    *, session: AsyncSession, visible_to: str | None, job_id: str | None, limit: int
) -> list[Webhook]:
    """Return the caller's webhooks (one job's, when ``job_id`` is given), newest first."""
    return await repo.list_webhooks(
        session=session,
        owner=visible_to,
        any_owner=visible_to is None,
        job_id=job_id,
        limit=limit,
    )


async def delete_webhook(*, session: AsyncSession, webhook_id: str, visible_to: str | None) -> None:
    """Delete a webhook and its delivery records; no more events go to it."""
    webhook = await get_webhook(session=session, webhook_id=webhook_id, visible_to=visible_to)
    await repo.delete_webhook(session=session, webhook=webhook)


async def list_deliveries(
    *,
    session: AsyncSession,
    webhook_id: str,
    visible_to: str | None,
    status: str | None,
    limit: int,
) -> list[WebhookDelivery]:
    """Return a webhook's deliveries with their attempts, newest first."""
    await get_webhook(session=session, webhook_id=webhook_id, visible_to=visible_to)
    return await repo.list_deliveries(
        session=session, webhook_id=webhook_id, status=status, limit=limit
    )


async def redeliver(
    *,
    session: AsyncSession,
    outbox: WebhookOutbox,
    webhook_id: str,
    delivery_id: str,
    visible_to: str | None,
) -> WebhookDelivery:
    """Send a delivery again now (a new attempt, the same ``webhook-id``), retried as a new
    event would be; its task is sent once the session committed.

    Raises:
        WebhookNotFound, DeliveryNotFound: unknown, or another owner's.
        DeliveryInProgress: an attempt is being made right now.
    """
    await get_webhook(session=session, webhook_id=webhook_id, visible_to=visible_to)
    found = await repo.get_delivery(session=session, delivery_id=delivery_id, webhook_id=webhook_id)
    if found is None:
        raise DeliveryNotFound(details=f"no delivery with id {delivery_id} on {webhook_id}")
    now = utcnow()
    until = now + timedelta(seconds=outbox.settings.webhook_retry_horizon_s)
    row = await repo.requeue(
        session=session,
        delivery_id=delivery_id,
        values={"next_attempt_at": now, "retry_until": until, "sent_at": now},
    )
    if row is None:
        raise DeliveryInProgress(details=f"attempt {found.attempt_count} is under way")
    attempt = row.attempt_count + 1

    async def after() -> None:
        await outbox.send_one(delivery_id, attempt)

    uow.after_commit(session, after)
    refreshed = await repo.get_delivery(session=session, delivery_id=delivery_id)
    assert refreshed is not None  # noqa: S101  # just updated in this transaction
    return refreshed


def webhook_item(webhook: Webhook) -> WebhookItem:
    """Return the API's view of a webhook (never its secret)."""
    return WebhookItem(
        webhook_id=webhook.id,
        url=webhook.url,
        events=webhook.events,
        description=webhook.description,
        job_id=webhook.job_id,
        created_at=webhook.created_at,
        deliveries_url=f"/api/v1/webhooks/{webhook.id}/deliveries",
    )


def webhook_created(webhook: Webhook) -> WebhookCreated:
    """Return a new webhook with its secret, for the one answer that shows it."""
    return WebhookCreated(**webhook_item(webhook).model_dump(), secret=webhook.secret)


def delivery_item(delivery: WebhookDelivery) -> DeliveryItem:
    """Return the API's view of a delivery and its attempts."""
    return DeliveryItem(
        delivery_id=delivery.id,
        webhook_id=delivery.webhook_id,
        event_type=delivery.event_type,
        job_id=delivery.job_id,
        status=delivery.status,
        attempt_count=delivery.attempt_count,
        created_at=delivery.created_at,
        next_attempt_at=delivery.next_attempt_at,
        retry_until=delivery.retry_until,
        delivered_at=delivery.delivered_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        payload=delivery.payload,
        attempts=[
            DeliveryAttempt(
                number=a.number,
                started_at=a.started_at,
                address=a.address,
                status_code=a.status_code,
                latency_ms=a.latency_ms,
                error=a.error,
            )
            for a in delivery.attempts
        ],
    )
