"""Webhooks: subscriptions to job events (the secret shown once), their deliveries, and
redelivery. Deliveries are signed as Standard Webhooks says (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``) and sent by ``nesydet webhook-worker``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from nesydet.api.auth import ReaderDep, WriterDep
from nesydet.api.deps import DispatcherDep, SessionDep, SettingsDep
from nesydet.ids import DELIVERY, JOB, WEBHOOK, id_pattern
from nesydet.schemas.common import error_responses
from nesydet.schemas.webhooks import (
    DELIVERY_LIST_EXAMPLE,
    REDELIVER_EXAMPLE,
    WEBHOOK_CREATED_EXAMPLE,
    WEBHOOK_EXAMPLE,
    WEBHOOK_LIST_EXAMPLE,
    DeliveryListResponse,
    DeliveryResponse,
    DeliveryStatus,
    WebhookCreatedResponse,
    WebhookCreateRequest,
    WebhookListResponse,
    WebhookResponse,
)
from nesydet.services.webhooks import subscriptions as service
from nesydet.services.webhooks.outbox import WebhookOutbox

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

WebhookIdPath = Annotated[str, Path(pattern=id_pattern(WEBHOOK), examples=["whk_0a1b2c3d4e5f"])]
DeliveryIdPath = Annotated[str, Path(pattern=id_pattern(DELIVERY), examples=["msg_0a1b2c3d4e5f"])]

_404 = (404, "WEBHOOK_NOT_FOUND", "Webhook not found", "no webhook with id whk_000000000000")
_REFUSED = (
    400,
    "WEBHOOK_URL_REFUSED",
    "The webhook URL is not allowed",
    "url: 127.0.0.1 is a loopback address",
)
_403 = (403, "ACCESS_DENIED", "Access denied", "a viewer account can read but not change anything")


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreatedResponse,
    summary="Subscribe to job events (the signing secret is shown once)",
    description=(
        "Every event of the caller's jobs named in `events` (default: `job.completed`, "
        "`job.failed`, `job.cancelled`; `job.progress` only when asked) is POSTed to `url` "
        "as `{type, timestamp, data}` (`data`: the job status payload), signed per Standard "
        "Webhooks with the `secret` returned here, and retried with exponential backoff until "
        "a 2xx answer or `NESYDET_WEBHOOK_RETRY_HORIZON_S`. The URL must resolve to public "
        "addresses only (loopback, private, link-local and metadata addresses are refused "
        "unless `NESYDET_WEBHOOK_ALLOWED_HOSTS` allows them); redirects are not followed."
    ),
    responses={
        **WEBHOOK_CREATED_EXAMPLE,
        **error_responses(
            _REFUSED,
            _403,
            (409, "WEBHOOK_LIMIT_REACHED", "Too many webhooks: delete one first", None),
        ),
    },
)
async def create_webhook(
    body: WebhookCreateRequest, session: SessionDep, settings: SettingsDep, principal: WriterDep
) -> WebhookCreatedResponse:
    """Create a subscription of the caller."""
    webhook = await service.create_webhook(
        session=session, settings=settings, owner=principal.user_id, request=body
    )
    return WebhookCreatedResponse(data=service.webhook_created(webhook))


@router.get(
    "",
    response_model=WebhookListResponse,
    summary="Your webhooks (everyone's for an admin or a viewer), newest first",
    responses=WEBHOOK_LIST_EXAMPLE,
)
async def list_webhooks(
    session: SessionDep,
    principal: ReaderDep,
    job_id: Annotated[
        str | None,
        Query(pattern=id_pattern(JOB), description="only the webhook_url given to this job"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> WebhookListResponse:
    """Return webhooks, never their secrets."""
    rows = await service.list_webhooks(
        session=session, visible_to=principal.owner, job_id=job_id, limit=limit
    )
    return WebhookListResponse(data=[service.webhook_item(w) for w in rows])


@router.get(
    "/{webhook_id}",
    response_model=WebhookResponse,
    summary="A webhook",
    responses={**WEBHOOK_EXAMPLE, **error_responses(_404)},
)
async def get_webhook(
    webhook_id: WebhookIdPath, session: SessionDep, principal: ReaderDep
) -> WebhookResponse:
    """Return one webhook, without its secret."""
    webhook = await service.get_webhook(
        session=session, webhook_id=webhook_id, visible_to=principal.owner
    )
    return WebhookResponse(data=service.webhook_item(webhook))


@router.delete(
    "/{webhook_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a webhook and its delivery records",
    responses=error_responses(_404, _403),
)
async def delete_webhook(
    webhook_id: WebhookIdPath, session: SessionDep, principal: WriterDep
) -> Response:
    """Delete the webhook: no more events go to it."""
    await service.delete_webhook(session=session, webhook_id=webhook_id, visible_to=principal.owner)
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryListResponse,
    summary="A webhook's deliveries and every attempt of each, newest first",
    description=(
        "Each delivery is one event (its `delivery_id` is the `webhook-id` header of every "
        "attempt); each attempt lists the address it went to, the receiver's status code "
        "and the latency."
    ),
    responses={**DELIVERY_LIST_EXAMPLE, **error_responses(_404)},
)
async def list_deliveries(
    webhook_id: WebhookIdPath,
    session: SessionDep,
    principal: ReaderDep,
    status: Annotated[DeliveryStatus | None, Query(description="only in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DeliveryListResponse:
    """Return the deliveries of one webhook."""
    rows = await service.list_deliveries(
        session=session,
        webhook_id=webhook_id,
        visible_to=principal.owner,
        status=status,
        limit=limit,
    )
    return DeliveryListResponse(data=[service.delivery_item(d) for d in rows])


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryResponse,
    summary="Send a delivery again",
    description=(
        "A new attempt now, with the same `webhook-id` (receivers de-duplicate on it) and a "
        "fresh signature; if it fails it is retried like a new event."
    ),
    responses={
        **REDELIVER_EXAMPLE,
        **error_responses(
            _404,
            (
                404,
                "DELIVERY_NOT_FOUND",
                "Webhook delivery not found",
                "no delivery with id msg_000000000000 on whk_0a1b2c3d4e5f",
            ),
            _403,
            (
                409,
                "DELIVERY_IN_PROGRESS",
                "The delivery is being attempted now",
                "attempt 2 is under way",
            ),
        ),
    },
)
async def redeliver(
    webhook_id: WebhookIdPath,
    delivery_id: DeliveryIdPath,
    session: SessionDep,
    dispatcher: DispatcherDep,
    principal: WriterDep,
) -> DeliveryResponse:
    """Queue a new attempt of the delivery."""
    delivery = await service.redeliver(
        session=session,
        outbox=WebhookOutbox.of(dispatcher),
        webhook_id=webhook_id,
        delivery_id=delivery_id,
        visible_to=principal.owner,
    )
    return DeliveryResponse(message="Delivery queued", data=service.delivery_item(delivery))
