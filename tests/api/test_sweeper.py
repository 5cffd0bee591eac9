"""The sweeper on hand-made job states: dead workers' jobs go back to the queue or fail."""

from __future__ import annotations

from datetime import timedelta

import httpx

from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import Job
from nesydet.services.sweeper import sweep
from tests.api.test_jobs import PREDICT, queued_messages, upload


async def make_job(client: httpx.AsyncClient) -> str:
    up = await upload(client, 1)
    job_id: str = (await client.post(PREDICT, json={"upload_id": up["upload_id"]})).json()["data"][
        "job_id"
    ]
    return job_id


async def set_job(client: httpx.AsyncClient, job_id: str, **values: object) -> None:
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        job = await session.get(Job, job_id)
        assert job is not None
        for key, value in values.items():
            setattr(job, key, value)
        await session.commit()


async def get_job(client: httpx.AsyncClient, job_id: str) -> Job:
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def run_sweep(client: httpx.AsyncClient, settings: Settings) -> dict[str, int]:
    state = client.app.state  # type: ignore[attr-defined]
    return await sweep(
        sessionmaker=state.sessionmaker, settings=settings, dispatcher=state.dispatcher,
        cache=state.status_cache, grace_s=0.0,
    )  # fmt: skip


async def test_silent_worker_job_is_requeued_and_sent(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    job_id = await make_job(client)
    now = utcnow()
    await set_job(
        client, job_id, status="processing", claim_token="dead", attempts=1,
        heartbeat_at=now - timedelta(seconds=settings.heartbeat_stale_s + 5),
        deadline_at=now + timedelta(hours=1),
    )  # fmt: skip
    counts = await run_sweep(client, settings)
    assert counts == {"requeued": 1, "failed": 0, "sent": 1, "resent": 0}
    job = await get_job(client, job_id)
    assert (job.status, job.claim_token) == ("queued", None)
    assert job.sent_at is not None
    assert len(queued_messages(settings)) == 2  # the first send and the re-send
    status = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()["data"]
    assert status["status"] == "queued"


async def test_live_worker_job_is_left_alone(client: httpx.AsyncClient, settings: Settings) -> None:
    job_id = await make_job(client)
    await set_job(
        client, job_id, status="processing", claim_token="alive", attempts=1, heartbeat_at=utcnow()
    )
    assert await run_sweep(client, settings) == {"requeued": 0, "failed": 0, "sent": 0, "resent": 0}
    assert (await get_job(client, job_id)).status == "processing"


async def test_job_past_its_deadline_fails(client: httpx.AsyncClient, settings: Settings) -> None:
    job_id = await make_job(client)
    now = utcnow()
    await set_job(
        client, job_id, status="processing", claim_token="dead", attempts=1,
        heartbeat_at=now - timedelta(minutes=5), deadline_at=now - timedelta(seconds=1),
    )  # fmt: skip
    assert (await run_sweep(client, settings))["failed"] == 1
    status = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()["data"]
    assert status["status"] == "failed"
    assert status["error"]["code"] == "INFERENCE_ERROR"
    assert status["error"]["message"] == "Job time limit exceeded"


async def test_job_out_of_attempts_fails(client: httpx.AsyncClient, settings: Settings) -> None:
    job_id = await make_job(client)
    now = utcnow()
    await set_job(
        client, job_id, status="processing", claim_token="dead",
        attempts=settings.max_delivery_attempts,
        heartbeat_at=now - timedelta(minutes=5), deadline_at=now + timedelta(hours=1),
    )  # fmt: skip
    assert (await run_sweep(client, settings))["failed"] == 1
    job = await get_job(client, job_id)
    assert (job.status, job.error_message) == ("failed", "Worker lost")


async def test_unsent_job_is_sent_once(client: httpx.AsyncClient, settings: Settings) -> None:
    job_id = await make_job(client)
    await set_job(client, job_id, sent_at=None)
    before = len(queued_messages(settings))
    assert (await run_sweep(client, settings))["sent"] == 1
    assert (await run_sweep(client, settings))["sent"] == 0
    assert len(queued_messages(settings)) == before + 1
    assert (await get_job(client, job_id)).sent_at is not None


async def test_long_queued_job_is_sent_again(client: httpx.AsyncClient, settings: Settings) -> None:
    job_id = await make_job(client)
    await set_job(
        client, job_id, sent_at=utcnow() - timedelta(seconds=settings.resend_queued_after_s + 1)
    )
    assert (await run_sweep(client, settings))["sent"] == 1


async def test_a_retry_not_yet_due_is_left_to_its_countdown(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # A worker that queues a job for a retry records when its task is due as sent_at.
    job_id = await make_job(client)
    await set_job(client, job_id, sent_at=utcnow() + timedelta(seconds=60))
    assert (await run_sweep(client, settings))["sent"] == 0
    await set_job(
        client, job_id, sent_at=utcnow() - timedelta(seconds=settings.resend_queued_after_s + 1)
    )
    assert (await run_sweep(client, settings))["sent"] == 1
