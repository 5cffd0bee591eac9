"""A queued job whose broker message was lost (Redis restarted without persistence) is sent
again by the sweeper within a minute, and never twice into the queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import update

from nesydet.api.app import create_app
from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import Job
from nesydet.services.image_checker import ImageChecker
from nesydet.services.sweeper import LostMessages, sweep
from tests.api.test_jobs import PREDICT, upload
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def app(
    settings: Settings, checker: ImageChecker, private_redis: RedisServer
) -> AsyncIterator[FastAPI]:
    on_redis = settings.model_copy(update={"broker_url": private_redis.url})
    application = create_app(on_redis, checker=checker)
    async with application.router.lifespan_context(application):
        yield application


def queued(server: RedisServer) -> list[bytes]:
    return list(redis.Redis.from_url(server.url).lrange("inference", 0, -1))


async def submit(app: FastAPI) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        up = await upload(client, 1)
        response = await client.post(PREDICT, json={"upload_id": up["upload_id"]})
    assert response.status_code == 202
    job_id: str = response.json()["data"]["job_id"]
    return job_id


async def age(app: FastAPI, job_id: str, seconds: float) -> None:
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(sent_at=utcnow() - timedelta(seconds=seconds))
        )
        await session.commit()


async def sweep_once(app: FastAPI, lost: LostMessages) -> dict[str, int]:
    return await sweep(
        sessionmaker=app.state.sessionmaker,
        settings=app.state.settings,
        dispatcher=app.state.dispatcher,
        cache=app.state.status_cache,
        lost=lost,
    )


async def test_a_message_lost_in_a_redis_restart_is_sent_again(
    app: FastAPI, private_redis: RedisServer
) -> None:
    job_id = await submit(app)
    assert len(queued(private_redis)) == 1
    private_redis.stop()  # no persistence: the queue is gone when it comes back
    private_redis.start()
    assert queued(private_redis) == []
    await age(app, job_id, 40)
    lost = LostMessages()
    assert (await sweep_once(app, lost))["resent"] == 0  # missing once: maybe in flight
    assert (await sweep_once(app, lost))["resent"] == 1
    [message] = queued(private_redis)
    assert job_id.encode() in message
    await age(app, job_id, 40)
    for _ in range(3):  # it is in the queue now: never sent again
        assert (await sweep_once(app, lost))["resent"] == 0
    assert len(queued(private_redis)) == 1


async def test_messages_in_the_queue_or_held_by_a_worker_are_left_alone(
    app: FastAPI, private_redis: RedisServer
) -> None:
    held, waiting = await submit(app), await submit(app)  # the oldest is taken first
    client = redis.Redis.from_url(private_redis.url)
    # A worker took one: kombu moves it from the queue into the "unacked" hash.
    message = client.rpop("inference")
    assert message is not None
    assert held.encode() in message
    client.hset("unacked", "tag-1", message)
    for job_id in (waiting, held):
        await age(app, job_id, 120)
    lost = LostMessages()
    for _ in range(3):
        assert (await sweep_once(app, lost))["resent"] == 0
    assert len(queued(private_redis)) == 1


async def test_two_sweepers_racing_send_a_lost_job_once(
    app: FastAPI, private_redis: RedisServer
) -> None:
    job_id = await submit(app)
    redis.Redis.from_url(private_redis.url).delete("inference")
    await age(app, job_id, 40)
    one, two = LostMessages(), LostMessages()
    for lost in (one, two):
        await sweep_once(app, lost)
    results: list[Any] = await asyncio.gather(sweep_once(app, one), sweep_once(app, two))
    assert sum(r["resent"] for r in results) == 1
    assert len(queued(private_redis)) == 1
