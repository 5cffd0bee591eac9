"""The broker and the status cache: a job submitted while the broker is down is sent once it
is back; status polling works from Redis and without it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from nesydet.api.app import create_app
from nesydet.config import Settings
from nesydet.db.models import Job
from nesydet.services.image_checker import ImageChecker
from nesydet.services.sweeper import sweep
from tests.api.test_jobs import PREDICT, upload
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


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


async def test_status_is_served_from_redis_and_without_it(
    settings: Settings, checker: ImageChecker, private_redis: RedisServer
) -> None:
    cached = settings.model_copy(update={"redis_url": private_redis.url})
    app = create_app(cached, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            up = await upload(client, 1)
            job_id = (await client.post(PREDICT, json={"upload_id": up["upload_id"]})).json()[
                "data"
            ]["job_id"]
            direct = redis.Redis.from_url(private_redis.url)
            key = f"nesydet:job-status:{job_id}"
            payload = json.loads(direct.get(key) or b"{}")
            assert payload["status"] == "queued"
            assert 0 < direct.ttl(key) <= 30
            first = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()["data"]
            assert first == payload
            await client.post(f"/api/v1/jobs/{job_id}/cancel")
            assert json.loads(direct.get(key) or b"{}")["status"] == "cancelled"
            assert direct.ttl(key) > 3600  # final states are kept longer
            private_redis.stop()
            after = await client.get(f"/api/v1/jobs/{job_id}/status")
            assert after.status_code == 200
            assert after.json()["data"]["status"] == "cancelled"
