"""Webhooks end to end: a real API server, a real ``nesydet webhook-worker`` process on the
queue ``webhooks``, and a real HTTP receiver in this test that checks every signature with the
``standardwebhooks`` package.

Each scenario runs on the embedded default (SQLite, filesystem broker) and on the production
set-up (PostgreSQL, Redis). Nothing waits a fixed time: every wait is for a condition, with a
deadline. With ``NESYDET_WEBHOOK_REPORT=<file>`` the deliveries seen are written there.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import WebhookVerificationError

from tests import images
from tests.conftest import _asyncpg_url, _pg_admin
from tests.integration.prom import (
    ApiServer,
    Process,
    free_port,
    nesydet_command,
    spawn,
    start_api_server,
    wait_until,
)
from tests.redis_server import RedisServer
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.timeout(300)]

FAST = {
    "NESYDET_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "NESYDET_WEBHOOK_RETRY_BASE_S": "0.5",
    "NESYDET_WEBHOOK_RETRY_MAX_DELAY_S": "1.5",
    "NESYDET_WEBHOOK_RETRY_JITTER": "0.2",
    "NESYDET_WEBHOOK_TIMEOUT_S": "5",
    "NESYDET_SWEEPER_INTERVAL_S": "1",
    "NESYDET_IMAGE_CHECK_WORKERS": "1",
}


@dataclass
class Service:
    """A running API and webhook worker."""

    kind: str
    api: ApiServer
    root: Path
    webhook_worker: Process | None = None
    others: list[Process] = field(default_factory=list)

    @property
    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api.url, timeout=30)

    def start_webhook_worker(self) -> Process:
        worker = spawn(
            "webhook-worker", nesydet_command("webhook-worker"), env=self.api.env, cwd=self.root
        )
        wait_until(
            lambda: "ready." in worker.log_text(),
            timeout=60,
            what="the webhook worker",
            process=worker,
        )
        self.webhook_worker = worker
        return worker

    def start_inference_worker(self) -> Process:
        worker = spawn(
            "worker",
            nesydet_command("worker", "--concurrency", "1"),
            env=self.api.env,
            cwd=self.root,
        )
        self.others.append(worker)
        return worker

    def stop(self) -> None:
        for process in [*self.others, self.webhook_worker]:
            if process is not None:
                process.stop()
        self.api.stop()


@pytest.fixture(
    params=["embedded", pytest.param("production", marks=[pytest.mark.postgres, pytest.mark.redis])]
)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    root = tmp_path / "deploy"
    env = dict(FAST)
    redis = None
    if request.param == "production":
        admin: str = request.getfixturevalue("postgres_server")
        name = f"nesydet_webhooks_{os.getpid()}"
        asyncio.run(
            _pg_admin(
                admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"
            )
        )
        redis = RedisServer(tmp_path)
        redis.start()
        env.update(
            NESYDET_DATABASE_URL=_asyncpg_url(admin, name),
            NESYDET_BROKER_URL=redis.url,
            NESYDET_REDIS_URL=redis.url.replace("/0", "/1"),
        )
    running = Service(request.param, start_api_server(root, **env), root)
    try:
        running.start_webhook_worker()
        yield running
    finally:
        running.stop()
        if redis is not None:
            redis.stop()
        if request.param == "production":
            asyncio.run(_pg_admin(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def queued_job(client: httpx.Client, **body: Any) -> dict[str, Any]:
    files = [("files", ("a.png", images.png(96, 80), "image/png"))]
    up = client.post("/api/v1/inference/upload", files=files)
    assert up.status_code == 200, up.text
    response = client.post(
        "/api/v1/inference/predict", json={"upload_id": up.json()["data"]["upload_id"], **body}
    )
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def deliveries(client: httpx.Client, webhook_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


def report(kind: str, title: str, delivery: dict[str, Any]) -> None:
    """Print a delivery's attempts (and append them to NESYDET_WEBHOOK_REPORT when set)."""
    lines = [f"[{kind}] {title}: {delivery['delivery_id']} {delivery['event_type']} "
             f"-> {delivery['status']}"]  # fmt: skip
    for a in delivery["attempts"]:
        lines.append(
            f"  attempt {a['number']}: status={a['status_code']} latency_ms={a['latency_ms']} "
            f"address={a['address']} error={a['error']}"
        )
    print("\n".join(lines))
    path = os.environ.get("NESYDET_WEBHOOK_REPORT")
    if path:
        with Path(path).open("a") as out:
            out.write("\n".join(lines) + "\n")


def test_a_receiver_down_for_a_while_gets_the_event_signed(service: Service) -> None:
    client = service.client
    port = free_port()
    receiver = Receiver(port)  # not listening yet: attempts are refused
    made = client.post("/api/v1/webhooks", json={"url": receiver.url})
    assert made.status_code == 201, made.text
    hook = made.json()["data"]
    job = queued_job(client)
    assert client.post(f"/api/v1/jobs/{job['job_id']}/cancel").status_code == 200

    def failed_twice() -> bool:
        found = deliveries(client, hook["webhook_id"])
        return bool(found) and len(found[0]["attempts"]) >= 2

    wait_until(failed_twice, timeout=60, what="two failed attempts", process=service.webhook_worker)
    [down] = deliveries(client, hook["webhook_id"])
    assert down["status"] == "pending"
    assert all(a["status_code"] is None and "refused" in a["error"] for a in down["attempts"])

    receiver.start()
    try:
        [request] = receiver.wait_for(1, timeout=60, probe=service.webhook_worker.check_alive)
        event = request.verified(hook["secret"])  # standardwebhooks: id, timestamp, signature
        assert event["type"] == "job.cancelled"
        assert event["data"]["job_id"] == job["job_id"]
        assert event["data"]["status"] == "cancelled"

        def delivered() -> bool:
            return deliveries(client, hook["webhook_id"])[0]["status"] == "succeeded"

        wait_until(delivered, timeout=30, what="the delivery recorded as succeeded")
        [done] = deliveries(client, hook["webhook_id"])
        assert request.headers["webhook-id"] == done["delivery_id"]
        *failed, last = done["attempts"]
        assert len(failed) >= 2
        assert [a["number"] for a in done["attempts"]] == list(range(1, len(failed) + 2))
        assert last["status_code"] == 200
        assert last["address"] == "127.0.0.1"
        assert last["latency_ms"] > 0
        report(service.kind, "receiver down, then up", done)

        # Redelivery: the same event (same webhook-id), signed again, one more attempt.
        again = client.post(
            f"/api/v1/webhooks/{hook['webhook_id']}/deliveries/{done['delivery_id']}/redeliver"
        )
        assert again.status_code == 202, again.text
        _, second = receiver.wait_for(2, timeout=30)
        assert second.headers["webhook-id"] == done["delivery_id"]
        assert second.verified(hook["secret"]) == event
        wait_until(
            lambda: len(deliveries(client, hook["webhook_id"])[0]["attempts"]) == len(failed) + 2,
            timeout=30,
            what="the redelivery recorded",
        )
        report(service.kind, "redelivered", deliveries(client, hook["webhook_id"])[0])

        check_job_webhook_url(client, receiver, hook)
    finally:
        receiver.stop()


def check_job_webhook_url(client: httpx.Client, receiver: Receiver, hook: dict[str, Any]) -> None:
    """A predict body's webhook_url: the job's own secret signs its final event (the
    owner's subscription ``hook`` gets it too, signed with its own)."""
    before = len(receiver.requests())
    own = queued_job(client, webhook_url=receiver.url)
    assert client.post(f"/api/v1/jobs/{own['job_id']}/cancel").status_code == 200
    both = receiver.wait_for(before + 2, timeout=30)[before:]
    [job_hook] = deliveries(client, own["webhook"]["webhook_id"])
    [mine] = [r for r in both if r.headers["webhook-id"] == job_hook["delivery_id"]]
    [theirs] = [r for r in both if r is not mine]
    with pytest.raises(WebhookVerificationError):
        mine.verified(hook["secret"])
    assert mine.verified(own["webhook"]["secret"])["data"]["job_id"] == own["job_id"]
    assert theirs.verified(hook["secret"])["data"]["job_id"] == own["job_id"]


@pytest.mark.slow
@pytest.mark.timeout(600)
# One run of the model is enough: the production set-up's deliveries are checked above.
@pytest.mark.parametrize("service", ["embedded"], indirect=True)
def test_a_job_run_by_a_worker_sends_job_completed(service: Service) -> None:
    """The inference worker records job.completed (and the opt-in job.progress) in the
    write that ends the job; the webhook worker sends them."""
    client = service.client
    receiver = Receiver().start()
    try:
        made = client.post(
            "/api/v1/webhooks",
            json={"url": receiver.url, "events": ["job.completed", "job.progress"]},
        )
        hook = made.json()["data"]
        worker = service.start_inference_worker()
        job = queued_job(client, config={"sahi": {"enabled": False}})
        wait_until(
            lambda: any(
                r.verified(hook["secret"])["type"] == "job.completed" for r in receiver.requests()
            ),
            timeout=300,
            what="job.completed at the receiver",
            process=worker,
        )
        events = [r.verified(hook["secret"]) for r in receiver.requests()]
        completed = next(e for e in events if e["type"] == "job.completed")
        assert completed["data"]["job_id"] == job["job_id"]
        assert completed["data"]["status"] == "completed"
        assert "summary" in completed["data"]
        assert any(e["type"] == "job.progress" for e in events)
        found = deliveries(client, hook["webhook_id"])
        report(service.kind, "job run by a worker", found[0])
        print(json.dumps([e["type"] for e in events]))
    finally:
        receiver.stop()
