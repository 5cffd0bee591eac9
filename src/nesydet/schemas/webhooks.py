"""Webhook models: subscriptions, the secret shown once, deliveries and their attempts.

Deliveries follow Standard Webhooks (https://www.standardwebhooks.com): each request carries
``webhook-id`` (the delivery id, the same on every retry), ``webhook-timestamp`` (Unix
seconds of the attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`` keyed with the webhook's secret (``whsec_<base64>``); the body is
``{"type": "job.completed", "timestamp": "...", "data": <the job status payload>}``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nesydet.schemas.common import Timestamp

WebhookEvent = Literal["job.completed", "job.failed", "job.cancelled", "job.progress"]
# What a subscription gets when it names no events, and all a job's webhook_url ever gets.
FINAL_EVENTS: tuple[WebhookEvent, ...] = ("job.completed", "job.failed", "job.cancelled")
DeliveryStatus = Literal["pending", "sending", "succeeded", "failed"]
URL_MAX = 2048


class WebhookCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=URL_MAX,
        examples=["https://hooks.example.com/nesydet"],
        description="http(s) URL that receives a POST per event; it must resolve to public "
        "addresses only (unless NESYDET_WEBHOOK_ALLOWED_HOSTS allows it)",
    )
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(FINAL_EVENTS),
        min_length=1,
        max_length=4,
        description="events to send; job.progress (at most one per few seconds of a job) is "
        "sent only when named",
    )
    description: str = Field(default="", max_length=200, examples=["CI notifier"])


class WebhookItem(BaseModel):
    webhook_id: str = Field(examples=["whk_0a1b2c3d4e5f"])
    url: str
    events: list[WebhookEvent]
    description: str
    job_id: str | None = Field(
        default=None, description="set for the webhook_url of a predict request: that job only"
    )
    created_at: Timestamp
    deliveries_url: str


class WebhookCreated(WebhookItem):
    secret: str = Field(
        description="whsec_<base64>: the signing secret, shown this once; verify deliveries "
        "with any Standard Webhooks library"
    )


class WebhookCreatedResponse(BaseModel):
    status: Literal["success"] = "success"
    message: str = "Webhook created: store the secret now, it is not shown again"
    data: WebhookCreated


class WebhookResponse(BaseModel):
    status: Literal["success"] = "success"
    data: WebhookItem


class WebhookListResponse(BaseModel):
    status: Literal["success"] = "success"
    data: list[WebhookItem]


class DeliveryAttempt(BaseModel):
    number: int = Field(description="1 for the first attempt")
    started_at: Timestamp
    address: str | None = Field(description="the address the request went to, once resolved")
    status_code: int | None = Field(description="the receiver's HTTP status; none on errors")
    latency_ms: float | None
    error: str | None = Field(description="why the attempt failed, when it did")


class DeliveryItem(BaseModel):
    delivery_id: str = Field(
        examples=["msg_0a1b2c3d4e5f"], description="the webhook-id header of its requests"
    )
    webhook_id: str
    event_type: WebhookEvent
    job_id: str | None
    status: DeliveryStatus
    attempt_count: int
    created_at: Timestamp
    next_attempt_at: Timestamp | None = Field(description="when a pending delivery is retried")
    retry_until: Timestamp = Field(description="no attempt is made after this")
    delivered_at: Timestamp | None
    last_status_code: int | None
    last_error: str | None
    payload: dict[str, Any] = Field(description="the body sent: type, timestamp and data")
    attempts: list[DeliveryAttempt]


class DeliveryListResponse(BaseModel):
    status: Literal["success"] = "success"
    data: list[DeliveryItem]


class DeliveryResponse(BaseModel):
    status: Literal["success"] = "success"
    message: str | None = None
    data: DeliveryItem


_WEBHOOK = {
    "webhook_id": "whk_0a1b2c3d4e5f",
    "url": "https://hooks.example.com/nesydet",
    "events": list(FINAL_EVENTS),
    "description": "CI notifier",
    "job_id": None,
    "created_at": "2026-02-02T18:54:57.324Z",
    "deliveries_url": "/api/v1/webhooks/whk_0a1b2c3d4e5f/deliveries",
}


def _ok(data: object, status: int = 200, message: str | None = None) -> dict[int | str, Any]:
    body: dict[str, Any] = {"status": "success"}
    if message is not None:
        body["message"] = message
    body["data"] = data
    return {status: {"content": {"application/json": {"example": body}}}}


WEBHOOK_CREATED_EXAMPLE = _ok(
    {**_WEBHOOK, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo="},
    201,
    "Webhook created: store the secret now, it is not shown again",
)
WEBHOOK_LIST_EXAMPLE = _ok([_WEBHOOK])
WEBHOOK_EXAMPLE = _ok(_WEBHOOK)
_DELIVERY = {
    "delivery_id": "msg_0a1b2c3d4e5f",
    "webhook_id": "whk_0a1b2c3d4e5f",
    "event_type": "job.completed",
    "job_id": "job_abc123xyz789",
    "status": "succeeded",
    "attempt_count": 2,
    "created_at": "2026-02-02T18:56:15.500Z",
    "next_attempt_at": None,
    "retry_until": "2026-02-03T18:56:15.500Z",
    "delivered_at": "2026-02-02T18:56:26.020Z",
    "last_status_code": 200,
    "last_error": None,
    "payload": {
        "type": "job.completed",
        "timestamp": "2026-02-02T18:56:15.500Z",
        "data": {"job_id": "job_abc123xyz789", "status": "completed", "...": "..."},
    },
    "attempts": [
        {
            "number": 1,
            "started_at": "2026-02-02T18:56:15.530Z",
            "address": "203.0.113.7",
            "status_code": 503,
            "latency_ms": 41.2,
            "error": "HTTP 503",
        },
        {
            "number": 2,
            "started_at": "2026-02-02T18:56:26.000Z",
            "address": "203.0.113.7",
            "status_code": 200,
            "latency_ms": 18.9,
            "error": None,
        },
    ],
}
DELIVERY_LIST_EXAMPLE = _ok([_DELIVERY])
REDELIVER_EXAMPLE = _ok(
    {**_DELIVERY, "status": "pending", "next_attempt_at": "2026-02-02T19:10:00.000Z"},
    202,
    "Delivery queued",
)
