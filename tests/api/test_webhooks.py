"""Webhooks at the API: subscriptions, the SSRF guard at submission and at every attempt,
deliveries recorded in the transaction that ends a job, signed attempts against a real HTTP
receiver (checked with the ``standardwebhooks`` package), retries, redelivery, and owners.

No webhook worker runs here: attempts are made by calling the worker's own code
(:class:`Deliverer`) in this process; tests/integration/test_webhooks.py runs the real one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks import Webhook, WebhookVerificationError

from nesydet.api.app import create_app
from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.repositories.webhooks import claim_attempt
from nesydet.domain import JobStatus, Role
from nesydet.services.image_checker import ImageChecker
from nesydet.services.processing.store import JobStore
from nesydet.services.webhooks.delivery import Deliverer
from nesydet.services.webhooks.outbox import WebhookOutbox, resend_stranded
from tests import images
from tests.api.conftest import AuthApp
from tests.api.test_sweeper import run_sweep, set_job
from tests.webhook_receiver import Receiver

HOOKS = "/api/v1/webhooks"
PUBLIC_URL = "http://93.184.215.14/hooks/nesydet"  # a public address: never called here

# Every target the SSRF guard refuses, with what the refusal says.
REFUSED = {
    "http://127.0.0.1:8000/hook": "loopback",
    "http://localhost/hook": "loopback",
    "http://[::1]/hook": "loopback",
    "http://2130706433/hook": "loopback",  # 127.0.0.1 as one number
    "http://0x7f.0.0.1/hook": "loopback",  # ... in hex
    "http://0.0.0.0/hook": "unspecified",
    "http://10.0.0.5/hook": "private",
    "http://172.16.3.4/hook": "private",
    "http://192.168.1.10/hook": "private",
    "http://[fd12:3456::1]/hook": "private",
    "http://169.254.169.254/latest/meta-data/": "metadata",
    "http://169.254.170.2/v2/credentials": "metadata",
    "http://[fd00:ec2::254]/latest/meta-data/": "metadata",
    "http://100.100.100.200/latest/meta-data/": "metadata",
    "http://metadata.google.internal/computeMetadata/v1/": "metadata",
    "http://169.254.10.20/hook": "link-local",
    "http://[fe80::1]/hook": "link-local",
    "http://100.64.0.1/hook": "not a public address",  # shared (CGNAT)
    "http://[::ffff:127.0.0.1]/hook": "loopback",  # IPv4-mapped
    "http://[::ffff:169.254.169.254]/hook": "metadata",
    "http://[2002:7f00:1::]/hook": "loopback",  # 6to4 of 127.0.0.1
    "http://224.0.0.1/hook": "multicast",
    "ftp://93.184.215.14/hook": "only http",
    "file:///etc/passwd": "only http",
    "http://user:pass@93.184.215.14/hook": "credentials",
    "http://no-such-host.invalid/hook": "does not resolve",
}


@pytest.fixture
async def local_app(settings: Settings, checker: ImageChecker) -> AsyncIterator[FastAPI]:
    """An app whose webhooks may reach 127.0.0.1 (where the test's receiver listens)."""
    app = create_app(
        settings.model_copy(update={"webhook_allowed_hosts": ["127.0.0.1"]}), checker=checker
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def local(local_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=local_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def receiver() -> Any:
    running = Receiver().start()
    yield running
    running.stop()


def deliverer(app: FastAPI, **overrides: Any) -> Deliverer:
    """Return the webhook worker's attempt maker, on this app's database and broker."""
    settings = app.state.settings.model_copy(update=overrides)
    outbox = WebhookOutbox(app.state.celery, settings)
    return Deliverer(sessionmaker=app.state.sessionmaker, outbox=outbox)


def webhook_messages(settings: Settings) -> list[dict[str, Any]]:
    """Return the queued delivery tasks as (headers, args) of the filesystem broker."""
    folder = settings.broker_dir / "queue"
    found = []
    for path in sorted(folder.glob("*.webhooks.msg")):
        message = json.loads(path.read_text())
        args = json.loads(base64.b64decode(message["body"]))[0]
        found.append({"headers": message["headers"], "args": args})
    return found


async def queued_job(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    files = [("files", ("a.png", images.png(96, 80), "image/png"))]
    up = await client.post("/api/v1/inference/upload", files=files)
    assert up.status_code == 200, up.text
    return await client.post(
        "/api/v1/inference/predict", json={"upload_id": up.json()["data"]["upload_id"], **body}
    )


async def make_hook(client: httpx.AsyncClient, url: str, **body: Any) -> dict[str, Any]:
    response = await client.post(HOOKS, json={"url": url, **body})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def deliveries(client: httpx.AsyncClient, webhook_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{HOOKS}/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


async def test_a_subscription_is_made_listed_read_and_deleted(client: httpx.AsyncClient) -> None:
    response = await client.post(HOOKS, json={"url": PUBLIC_URL, "description": "CI"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["message"] == "Webhook created: store the secret now, it is not shown again"
    made = body["data"]
    assert made["webhook_id"].startswith("whk_")
    assert made["events"] == ["job.completed", "job.failed", "job.cancelled"]
    assert made["secret"].startswith("whsec_")
    assert len(base64.b64decode(made["secret"].removeprefix("whsec_"))) == 32
    Webhook(made["secret"])  # a secret any Standard Webhooks library takes
    assert made["deliveries_url"] == f"{HOOKS}/{made['webhook_id']}/deliveries"

    listed = (await client.get(HOOKS)).json()["data"]
    assert [w["webhook_id"] for w in listed] == [made["webhook_id"]]
    assert "secret" not in listed[0]
    one = await client.get(f"{HOOKS}/{made['webhook_id']}")
    assert one.status_code == 200
    assert "secret" not in one.json()["data"]
    assert one.json()["data"]["description"] == "CI"

    assert (await client.delete(f"{HOOKS}/{made['webhook_id']}")).status_code == 204
    gone = await client.get(f"{HOOKS}/{made['webhook_id']}")
    assert gone.status_code == 404
    assert gone.json()["error_code"] == "WEBHOOK_NOT_FOUND"
    malformed = await client.get(f"{HOOKS}/not-an-id/deliveries")
    assert malformed.status_code == 404
    assert malformed.json()["error_code"] == "WEBHOOK_NOT_FOUND"


async def test_events_are_checked_and_progress_is_opt_in(client: httpx.AsyncClient) -> None:
    wrong = await client.post(HOOKS, json={"url": PUBLIC_URL, "events": ["job.exploded"]})
    assert wrong.status_code == 400
    assert wrong.json()["error_code"] == "VALIDATION_ERROR"
    empty = await client.post(HOOKS, json={"url": PUBLIC_URL, "events": []})
    assert empty.status_code == 400
    made = await make_hook(client, PUBLIC_URL, events=["job.progress", "job.completed"])
    assert made["events"] == ["job.progress", "job.completed"]


@pytest.mark.parametrize(("url", "reason"), list(REFUSED.items()))
async def test_the_ssrf_guard_refuses_internal_targets(
    client: httpx.AsyncClient, url: str, reason: str
) -> None:
    response = await client.post(HOOKS, json={"url": url})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error_code"] == "WEBHOOK_URL_REFUSED"
    assert body["error"]["code"] == "WEBHOOK_URL_REFUSED"
    assert body["errors"][0]["field"] == "url"
    assert reason in body["details"], body["details"]
    assert (await client.get(HOOKS)).json()["data"] == []


async def test_a_refused_webhook_url_refuses_the_job(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    for url in ("http://127.0.0.1/hook", "http://169.254.169.254/", "http://10.1.2.3/"):
        response = await queued_job(client, webhook_url=url)
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "WEBHOOK_URL_REFUSED"
        assert response.json()["errors"][0]["field"] == "webhook_url"
    assert (await client.get("/api/v1/jobs")).json()["data"]["jobs"] == []


async def test_allowed_hosts_let_a_private_receiver_through(local: httpx.AsyncClient) -> None:
    made = await make_hook(local, "http://127.0.0.1:9/hook")
    assert made["url"] == "http://127.0.0.1:9/hook"
    still = await local.post(HOOKS, json={"url": "http://10.0.0.5/hook"})
    assert still.status_code == 400


async def test_a_cancelled_job_records_its_event_and_queues_the_delivery_after_the_commit(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    hook = await make_hook(client, PUBLIC_URL)
    progress_only = await make_hook(client, PUBLIC_URL, events=["job.progress"])
    job_id = (await queued_job(client)).json()["data"]["job_id"]
    assert webhook_messages(settings) == []
    cancelled = await client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    [delivery] = await deliveries(client, hook["webhook_id"])
    assert delivery["event_type"] == "job.cancelled"
    assert delivery["status"] == "pending"
    assert delivery["attempt_count"] == 0
    assert delivery["attempts"] == []
    assert delivery["job_id"] == job_id
    payload = delivery["payload"]
    assert payload["type"] == "job.cancelled"
    assert payload["data"]["job_id"] == job_id
    assert payload["data"]["status"] == "cancelled"
    assert "cancelled_at" in payload["data"]
    assert await deliveries(client, progress_only["webhook_id"]) == []
    [message] = webhook_messages(settings)
    assert message["headers"]["task"] == "nesydet.deliver_webhook"
    assert message["args"] == [delivery["delivery_id"], 1]


async def test_an_attempt_is_signed_and_recorded(
    local: httpx.AsyncClient, local_app: FastAPI, receiver: Receiver
) -> None:
    hook = await make_hook(local, receiver.url)
    job_id = (await queued_job(local)).json()["data"]["job_id"]
    await local.post(f"/api/v1/jobs/{job_id}/cancel")
    [delivery] = await deliveries(local, hook["webhook_id"])

    outcome = await deliverer(local_app).attempt(delivery["delivery_id"], 1)
    assert outcome == "succeeded"
    [request] = receiver.requests()
    assert request.path == "/hooks/nesydet?source=test"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == delivery["delivery_id"]
    assert request.headers["webhook-signature"].startswith("v1,")
    event = request.verified(hook["secret"])
    assert event == delivery["payload"]
    with pytest.raises(WebhookVerificationError):
        Webhook(f"whsec_{base64.b64encode(b'x' * 32).decode()}").verify(
            request.body, request.headers
        )

    [done] = await deliveries(local, hook["webhook_id"])
    assert done["status"] == "succeeded"
    assert done["delivered_at"] is not None
    assert done["last_status_code"] == 200
    [attempt] = done["attempts"]
    assert attempt["number"] == 1
    assert attempt["status_code"] == 200
    assert attempt["address"] == "127.0.0.1"
    assert attempt["latency_ms"] >= 0
    assert attempt["error"] is None
    # The same task delivered twice makes no second attempt.
    assert await deliverer(local_app).attempt(delivery["delivery_id"], 1) is None
    assert len(receiver.requests()) == 1


async def test_a_failed_attempt_is_retried_later_then_given_up_past_the_horizon(
    local: httpx.AsyncClient, local_app: FastAPI, receiver: Receiver, settings: Settings
) -> None:
    hook = await make_hook(local, receiver.url)
    job_id = (await queued_job(local)).json()["data"]["job_id"]
    await local.post(f"/api/v1/jobs/{job_id}/cancel")
    [delivery] = await deliveries(local, hook["webhook_id"])
    receiver.status = 503
    before = utcnow()
    worker = deliverer(local_app, webhook_retry_base_s=60, webhook_retry_jitter=0.2)
    assert await worker.attempt(delivery["delivery_id"], 1) == "retrying"
    [retrying] = await deliveries(local, hook["webhook_id"])
    assert retrying["status"] == "pending"
    assert retrying["last_status_code"] == 503
    assert retrying["last_error"] == "HTTP 503"
    assert retrying["attempts"][0]["status_code"] == 503
    due = retrying["next_attempt_at"]
    assert (before + timedelta(seconds=47)).isoformat() < due.replace("Z", "+00:00")
    assert due.replace("Z", "+00:00") < (utcnow() + timedelta(seconds=73)).isoformat()
    messages = webhook_messages(settings)
    assert [m["args"][1] for m in messages] == [1, 2]
    assert {m["args"][0] for m in messages} == {delivery["delivery_id"]}
    assert messages[1]["headers"]["eta"] is not None

    # A retry that would fall past the horizon is not made: the delivery has failed.
    short = deliverer(local_app, webhook_retry_base_s=9e4, webhook_retry_max_delay_s=2e5)
    assert await short.attempt(delivery["delivery_id"], 2) == "failed"
    [failed] = await deliveries(local, hook["webhook_id"])
    assert failed["status"] == "failed"
    assert failed["next_attempt_at"] is None
    assert [a["status_code"] for a in failed["attempts"]] == [503, 503]
    assert len(webhook_messages(settings)) == 2


async def test_redelivery_sends_the_same_event_again(
    local: httpx.AsyncClient, local_app: FastAPI, receiver: Receiver, settings: Settings
) -> None:
    hook = await make_hook(local, receiver.url)
    job_id = (await queued_job(local)).json()["data"]["job_id"]
    await local.post(f"/api/v1/jobs/{job_id}/cancel")
    [delivery] = await deliveries(local, hook["webhook_id"])
    delivery_id = delivery["delivery_id"]
    assert await deliverer(local_app).attempt(delivery_id, 1) == "succeeded"

    url = f"{HOOKS}/{hook['webhook_id']}/deliveries/{delivery_id}/redeliver"
    response = await local.post(url)
    assert response.status_code == 202, response.text
    assert response.json()["message"] == "Delivery queued"
    assert response.json()["data"]["status"] == "pending"
    assert webhook_messages(settings)[-1]["args"] == [delivery_id, 2]
    assert await deliverer(local_app).attempt(delivery_id, 2) == "succeeded"
    first, second = receiver.requests()
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery_id
    assert second.verified(hook["secret"]) == first.verified(hook["secret"])
    [done] = await deliveries(local, hook["webhook_id"])
    assert [a["number"] for a in done["attempts"]] == [1, 2]

    unknown = await local.post(
        f"{HOOKS}/{hook['webhook_id']}/deliveries/msg_0123456789ab/redeliver"
    )
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "DELIVERY_NOT_FOUND"


async def test_the_address_is_checked_again_at_every_attempt(
    local: httpx.AsyncClient, local_app: FastAPI, receiver: Receiver
) -> None:
    """A webhook allowed when it was made is refused at delivery once the worker's settings
    no longer allow its address (as when a name now resolves somewhere internal)."""
    hook = await make_hook(local, receiver.url)
    job_id = (await queued_job(local)).json()["data"]["job_id"]
    await local.post(f"/api/v1/jobs/{job_id}/cancel")
    [delivery] = await deliveries(local, hook["webhook_id"])
    strict = deliverer(local_app, webhook_allowed_hosts=[])
    assert await strict.attempt(delivery["delivery_id"], 1) == "retrying"
    assert receiver.requests() == []
    [refused] = await deliveries(local, hook["webhook_id"])
    [attempt] = refused["attempts"]
    assert attempt["status_code"] is None
    assert attempt["address"] is None
    assert attempt["error"] == "refused: 127.0.0.1 is a loopback address"


async def test_a_redirect_is_not_followed(
    local: httpx.AsyncClient, local_app: FastAPI, receiver: Receiver
) -> None:
    hook = await make_hook(local, receiver.url)
    job_id = (await queued_job(local)).json()["data"]["job_id"]
    await local.post(f"/api/v1/jobs/{job_id}/cancel")
    [delivery] = await deliveries(local, hook["webhook_id"])
    receiver.status = 302
    assert await deliverer(local_app).attempt(delivery["delivery_id"], 1) == "retrying"
    assert len(receiver.requests()) == 1
    [after] = await deliveries(local, hook["webhook_id"])
    assert after["last_error"] == "HTTP 302"
    assert after["attempts"][0]["status_code"] == 302


async def test_a_predict_webhook_url_gets_its_own_secret_and_the_final_event(
    local: httpx.AsyncClient, local_app: FastAPI, receiver: Receiver
) -> None:
    response = await queued_job(local, webhook_url=receiver.url)
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    hook = data["webhook"]
    assert hook["url"] == receiver.url
    assert hook["job_id"] == data["job_id"]
    assert hook["secret"].startswith("whsec_")
    assert hook["events"] == ["job.completed", "job.failed", "job.cancelled"]
    listed = (await local.get(f"{HOOKS}?job_id={data['job_id']}")).json()["data"]
    assert [w["webhook_id"] for w in listed] == [hook["webhook_id"]]
    without = await queued_job(local)
    assert "webhook" not in without.json()["data"]

    await local.post(f"/api/v1/jobs/{data['job_id']}/cancel")
    [delivery] = await deliveries(local, hook["webhook_id"])
    assert await deliverer(local_app).attempt(delivery["delivery_id"], 1) == "succeeded"
    event = receiver.requests()[0].verified(hook["secret"])
    assert event["type"] == "job.cancelled"
    assert event["data"]["job_id"] == data["job_id"]


async def test_a_worker_finishing_a_job_records_job_completed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """The worker's write that completes a job records the delivery in its transaction."""
    app: FastAPI = client.app  # type: ignore[attr-defined]
    hook = await make_hook(client, PUBLIC_URL, events=["job.completed", "job.progress"])
    job_id = (await queued_job(client)).json()["data"]["job_id"]
    store = JobStore(
        sessionmaker=app.state.sessionmaker,
        cache=app.state.status_cache,
        worker_id="test:1",
        heartbeat_stale_s=30,
        default_seconds_per_image=1,
        webhooks=WebhookOutbox(app.state.celery, settings),
    )
    claim = await store.claim(job_id)
    assert claim is not None
    await store.write(claim, {"current_stage": "Loading model"})
    await store.write(claim, {"current_stage": "Reading image"})  # within the interval
    await store.write(claim, {"status": JobStatus.COMPLETED, "completed_at": utcnow()})
    events = [d["event_type"] for d in await deliveries(client, hook["webhook_id"])]
    assert events == ["job.completed", "job.progress"]
    assert [m["args"][1] for m in webhook_messages(settings)] == [1, 1]


async def test_webhooks_belong_to_their_owner(auth_app: AuthApp) -> None:
    owner = await auth_app.account("ana", Role.USER)
    other = await auth_app.account("bob", Role.USER)
    viewer = await auth_app.account("grafana", Role.VIEWER)
    admin = await auth_app.account("root", Role.ADMIN)
    client = auth_app.client
    made = await client.post(HOOKS, json={"url": PUBLIC_URL}, headers=owner.headers)
    assert made.status_code == 201
    hook_id = made.json()["data"]["webhook_id"]
    paths = [
        ("GET", f"{HOOKS}/{hook_id}"),
        ("GET", f"{HOOKS}/{hook_id}/deliveries"),
        ("POST", f"{HOOKS}/{hook_id}/deliveries/msg_0123456789ab/redeliver"),
        ("DELETE", f"{HOOKS}/{hook_id}"),
    ]
    for method, path in paths:
        theirs = await client.request(method, path, headers=other.headers)
        assert theirs.status_code == 404, (method, path, theirs.text)
        assert theirs.json()["error_code"] == "WEBHOOK_NOT_FOUND"
    assert (await client.get(HOOKS, headers=other.headers)).json()["data"] == []
    # A viewer reads everyone's, changes nothing; an admin sees every owner's.
    seen = (await client.get(HOOKS, headers=viewer.headers)).json()["data"]
    assert [w["webhook_id"] for w in seen] == [hook_id]
    for method, path in [("POST", HOOKS), ("DELETE", f"{HOOKS}/{hook_id}")]:
        denied = await client.request(
            method, path, json={"url": PUBLIC_URL} if method == "POST" else None,
            headers=viewer.headers,
        )  # fmt: skip
        assert denied.status_code == 403
        assert denied.json()["error_code"] == "ACCESS_DENIED"
    assert (await client.get(f"{HOOKS}/{hook_id}", headers=admin.headers)).status_code == 200
    assert (await client.get(HOOKS)).status_code == 401
    assert (await client.delete(f"{HOOKS}/{hook_id}", headers=owner.headers)).status_code == 204


async def test_an_owner_has_a_limited_number_of_subscriptions(
    settings: Settings, checker: ImageChecker
) -> None:
    app = create_app(settings.model_copy(update={"webhook_max_per_owner": 2}), checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(2):
                await make_hook(client, PUBLIC_URL)
            third = await client.post(HOOKS, json={"url": PUBLIC_URL})
            assert third.status_code == 409
            assert third.json()["error_code"] == "WEBHOOK_LIMIT_REACHED"


async def test_deliveries_whose_task_was_lost_are_sent_again(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """A delivery whose task never reached the broker, or whose attempt died with its worker,
    is sent again once overdue; a late task of the same attempt then finds nothing to do."""
    app: FastAPI = client.app  # type: ignore[attr-defined]
    hook = await make_hook(client, PUBLIC_URL)
    for _ in range(2):
        job_id = (await queued_job(client)).json()["data"]["job_id"]
        await client.post(f"/api/v1/jobs/{job_id}/cancel")
    lost, died = (d["delivery_id"] for d in await deliveries(client, hook["webhook_id"]))
    outbox = WebhookOutbox(app.state.celery, settings)
    later = utcnow() + timedelta(seconds=settings.webhook_resend_after_s + 1)
    assert await resend_stranded(sessionmaker=app.state.sessionmaker, outbox=outbox) == 0
    async with app.state.sessionmaker() as session:  # an attempt that never finished
        assert await claim_attempt(session=session, delivery_id=died, number=1, now=utcnow())
        await session.commit()
    much_later = later + timedelta(seconds=settings.webhook_timeout_s)
    sent = await resend_stranded(sessionmaker=app.state.sessionmaker, outbox=outbox, now=much_later)
    assert sent == 2
    resent = [m["args"] for m in webhook_messages(settings)][2:]
    assert sorted(resent) == sorted([[lost, 1], [died, 2]])
    again = await resend_stranded(sessionmaker=app.state.sessionmaker, outbox=outbox, now=later)
    assert again == 0


async def test_a_job_the_sweeper_fails_records_job_failed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    hook = await make_hook(client, PUBLIC_URL)
    requeued_id = (await queued_job(client)).json()["data"]["job_id"]
    failed_id = (await queued_job(client)).json()["data"]["job_id"]
    now = utcnow()
    stale = now - timedelta(minutes=5)
    await set_job(
        client, requeued_id, status="processing", claim_token="dead", attempts=1,
        heartbeat_at=stale, deadline_at=now + timedelta(hours=1),
    )  # fmt: skip
    await set_job(
        client, failed_id, status="processing", claim_token="dead", attempts=1,
        heartbeat_at=stale, deadline_at=now - timedelta(seconds=1),
    )  # fmt: skip
    counts = await run_sweep(client, settings)
    assert (counts["requeued"], counts["failed"]) == (1, 1)
    [delivery] = await deliveries(client, hook["webhook_id"])  # none for the re-queued job
    assert (delivery["event_type"], delivery["job_id"]) == ("job.failed", failed_id)
    assert delivery["payload"]["data"]["error"]["message"] == "Job time limit exceeded"
    [message] = webhook_messages(settings)  # sent after the sweeper's commit
    assert message["args"] == [delivery["delivery_id"], 1]
