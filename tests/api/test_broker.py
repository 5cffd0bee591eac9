"""The broker and the status cache: a job submitted while the broker is down is sent once it
is back; status polling works from Redis and without it."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from nesydet.api.app import create_app
from nesydet.config import Settings
from nesydet.db.models import Job
from nesydet.services.image_checker import ImageChecker
from nesydet.services.job_status import publish
from nesydet.services.processing.store import JobStore
from nesydet.services.status_cache import NoStatusCache, make_status_cache
from nesydet.services.sweeper import sweep
from tests.api.test_jobs import PREDICT, upload
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


def cached_status(direct: redis.Redis, key: str) -> tuple[int, dict[str, Any]]:
    """Return a cache entry's job row version and status payload ("version:owner:json")."""
    raw = direct.get(key)
    assert isinstance(raw, bytes), f"nothing cached under {key}"
    version, _, rest = raw.partition(b":")
    _owner, _, text = rest.partition(b":")
    payload: dict[str, Any] = json.loads(text)
    return int(version), payload


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_job_submitted_while_the_broker_is_down_is_sent_when_it_is_back(
    settings: Settings, checker: ImageChecker, private_redis: RedisServer
) -> None:
    on_redis = settings.model_copy(
        update={"broker_url": private_redis.url, "broker_publish_timeout_s": 1.0}
    )
    app = create_app(on_redis, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            up = await upload(client, 2)
            private_redis.stop()
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["message"] == "Not ready: broker"
            response = await client.post(PREDICT, json={"upload_id": up["upload_id"]})
            assert response.status_code == 202, response.text
            job_id = response.json()["data"]["job_id"]
            async with app.state.sessionmaker() as session:
                job = await session.get(Job, job_id)
                assert job is not None
                assert job.status == "queued"
                assert job.sent_at is None
            status = await client.get(f"/api/v1/jobs/{job_id}/status")
            assert status.json()["data"]["status"] == "queued"

            # Still down: the sweeper tries and leaves it unsent.
            async def sweep_now() -> dict[str, int]:
                return await sweep(
                    sessionmaker=app.state.sessionmaker,
                    settings=on_redis,
                    dispatcher=app.state.dispatcher,
                    cache=app.state.status_cache,
                    grace_s=0.0,
                )

            assert (await sweep_now())["sent"] == 0
            private_redis.start()
            assert (await sweep_now())["sent"] == 1
            assert (await sweep_now())["sent"] == 0
            async with app.state.sessionmaker() as session:
                job = await session.get(Job, job_id)
                assert job is not None
                assert job.sent_at is not None
            assert (await client.get("/readyz")).status_code == 200
    queue = redis.Redis.from_url(private_redis.url)
    messages = queue.lrange("inference", 0, -1)
    assert len(messages) == 1
    message = json.loads(messages[0])
    assert message["headers"]["task"] == "nesydet.run_inference"
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert args == [job_id]


@pytest.fixture
async def on_redis_cache(
    settings: Settings, checker: ImageChecker, private_redis: RedisServer
) -> AsyncIterator[httpx.AsyncClient]:
    """Return a client of an app whose status cache is the private Redis."""
    cached = settings.model_copy(update={"redis_url": private_redis.url})
    app = create_app(cached, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def queued_job(client: httpx.AsyncClient) -> str:
    up = await upload(client, 1)
    response = await client.post(PREDICT, json={"upload_id": up["upload_id"]})
    job_id: str = response.json()["data"]["job_id"]
    return job_id


async def test_status_is_served_from_redis_and_without_it(
    on_redis_cache: httpx.AsyncClient, private_redis: RedisServer
) -> None:
    client = on_redis_cache
    job_id = await queued_job(client)
    direct = redis.Redis.from_url(private_redis.url)
    key = f"nesydet:job-status:{job_id}"
    version, payload = cached_status(direct, key)
    assert payload["status"] == "queued"
    assert 0 < direct.ttl(key) <= 30
    first = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()["data"]
    assert first == payload
    await client.post(f"/api/v1/jobs/{job_id}/cancel")
    newer, cancelled = cached_status(direct, key)
    assert cancelled["status"] == "cancelled"
    assert newer > version
    assert direct.ttl(key) > 3600  # final states are kept longer
    private_redis.stop()
    after = await client.get(f"/api/v1/jobs/{job_id}/status")
    assert after.status_code == 200
    assert after.json()["data"]["status"] == "cancelled"


async def test_a_late_cache_write_never_takes_the_status_backwards(
    on_redis_cache: httpx.AsyncClient, private_redis: RedisServer
) -> None:
    """A worker's progress write reaches Redis after the API cancelled the job: the cached
    status stays cancelled (and readers keep seeing it), as the database says."""
    client = on_redis_cache
    app = client.app  # type: ignore[attr-defined]
    job_id = await queued_job(client)
    # A worker claims the job; its cache write is held back (as a slow network would).
    store = JobStore(
        sessionmaker=app.state.sessionmaker,
        cache=NoStatusCache(),
        worker_id="w1",
        heartbeat_stale_s=30,
        default_seconds_per_image=1,
    )
    claim = await store.claim(job_id)
    assert claim is not None
    processing = await store.write(claim, {"current_stage": "Running SAHI inference"})
    cancel = await client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert cancel.json()["data"]["status"] == "cancelled"
    # Now the worker's write arrives.
    worker_cache = make_status_cache(private_redis.url, 3600)
    await publish(worker_cache, processing)
    await worker_cache.close()
    direct = redis.Redis.from_url(private_redis.url)
    _, payload = cached_status(direct, f"nesydet:job-status:{job_id}")
    assert payload["status"] == "cancelled"
    status = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()["data"]
    assert status["status"] == "cancelled"
