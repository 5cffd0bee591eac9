"""WebSocket /jobs/{job_id}/ws: the SSE stream's status events plus the job's log lines, one
channel subscription per job however many watch it, credentials and refusals, and the
embedded set-up's polling.

The worker's side is played by the real ``JobStore`` (claim, progress, log lines, finish),
writing to the app's database and status cache as a worker process would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from nesydet.api.app import create_app
from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.domain import JobStatus, Role
from nesydet.services.image_checker import ImageChecker
from nesydet.services.job_ws import JobHub
from nesydet.services.processing.store import JobStore
from nesydet.services.status_cache import channel
from tests import images
from tests.api.conftest import AuthApp
from tests.api.test_uploads import assert_envelope

DEADLINE_S = 15.0
Message = MutableMapping[str, Any]


class WsClient:
    """A WebSocket client driving an ASGI app in this event loop (no server, no thread)."""

    def __init__(
        self,
        app: FastAPI,
        path: str,
        headers: dict[str, str] | None = None,
        subprotocols: list[str] | None = None,
    ) -> None:
        raw = [(b"host", b"testserver")]
        raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if subprotocols:
            raw.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": raw,
            "subprotocols": list(subprotocols or []),
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.app = app
        self.to_app: asyncio.Queue[Message] = asyncio.Queue()
        self.from_app: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.close_reason = ""

    async def connect(self) -> str | None:
        """Open the socket; return the subprotocol the server chose."""
        self.task = asyncio.create_task(self.app(self.scope, self.to_app.get, self.from_app.put))
        await self.to_app.put({"type": "websocket.connect"})
        message = await self._next()
        assert message["type"] == "websocket.accept", message
        return message.get("subprotocol")

    async def _next(self) -> Message:
        return await asyncio.wait_for(self.from_app.get(), DEADLINE_S)

    async def receive(self) -> dict[str, Any] | None:
        """Return the next frame, decoded; None once the server has closed."""
        if self.close_code is not None:
            return None
        message = await self._next()
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)
            self.close_reason = message.get("reason", "")
            await self._finish()
            return None
        assert message["type"] == "websocket.send", message
        frame: dict[str, Any] = json.loads(message["text"])
        return frame

    async def frames(self) -> list[dict[str, Any]]:
        """Return every frame until the server closes."""
        out = []
        while (frame := await self.receive()) is not None:
            out.append(frame)
        return out

    async def disconnect(self) -> None:
        await self.to_app.put({"type": "websocket.disconnect", "code": 1000})
        await self._finish()

    async def _finish(self) -> None:
        await self.to_app.put({"type": "websocket.disconnect", "code": 1000})
        assert self.task is not None
        await asyncio.wait_for(self.task, DEADLINE_S)


async def wait_for(condition: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def start_job(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> str:
    files = [("files", ("a.png", images.png(100, 80), "image/png"))]
    up = await client.post("/api/v1/inference/upload", files=files, headers=headers or {})
    assert up.status_code == 200, up.text
    job = await client.post(
        "/api/v1/inference/predict",
        json={"upload_id": up.json()["data"]["upload_id"]},
        headers=headers or {},
    )
    assert job.status_code == 202, job.text
    job_id: str = job.json()["data"]["job_id"]
    return job_id


def worker(app: FastAPI) -> JobStore:
    return JobStore(
        sessionmaker=app.state.sessionmaker,
        cache=app.state.status_cache,
        worker_id="test-worker",
        heartbeat_stale_s=60,
        default_seconds_per_image=1.0,
    )


@pytest.fixture
def redis_settings(settings: Settings, redis_server: str) -> Settings:
    return settings.model_copy(update={"redis_url": redis_server})


@pytest.fixture
async def redis_app(redis_settings: Settings, checker: ImageChecker) -> Any:
    app = create_app(redis_settings, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http


async def test_many_watchers_share_one_subscription_and_see_statuses_and_logs(
    redis_app: tuple[FastAPI, httpx.AsyncClient], redis_server: str
) -> None:
    app, client = redis_app
    hub: JobHub = app.state.job_hub
    hub.recheck_s = 60  # what comes, comes by the channel
    job_id = await start_job(client)
    store = worker(app)
    await store.log(job_id, "info", "Queued behind 0 jobs")  # before anyone watches: kept

    watchers = [WsClient(app, f"/api/v1/jobs/{job_id}/ws") for _ in range(5)]
    for ws in watchers:
        assert await ws.connect() is None
    first = [await ws.receive() for ws in watchers]
    assert all(f is not None and f["event"] == "status" for f in first)
    assert {f["data"]["status"] for f in first if f} == {"queued"}
    # Five watchers in this process: one SUBSCRIBE, one subscriber connection on the channel.
    assert hub.subscriptions == 1
    assert hub.watching(job_id) == 5
    probe = aioredis.Redis.from_url(redis_server)
    try:
        assert await probe.pubsub_numsub(channel(job_id)) == [(channel(job_id).encode(), 1)]

        claim = await store.claim(job_id)
        assert claim is not None
        await store.log(job_id, "info", "Reading image (1/1)", file_id="img_x")
        await store.write(claim, {"current_stage": "Inference (1/1)"})
        await store.log(job_id, "warning", "Slow storage")
        await store.write(
            claim,
            {
                "status": JobStatus.COMPLETED,
                "completed_at": utcnow(),
                "current_stage": None,
                "processed_count": 1,
                "total_detections": 0,
                "processing_time_seconds": 1.0,
            },
        )
        seen = [await ws.frames() for ws in watchers]
        for frames in seen:
            statuses = [f["data"]["status"] for f in frames if f["event"] == "status"]
            logs = [f["data"]["message"] for f in frames if f["event"] == "log"]
            assert statuses == ["processing", "processing", "completed"]
            assert logs == ["Queued behind 0 jobs", "Reading image (1/1)", "Slow storage"]
            stages = [
                f["data"]["progress"].get("current_stage") for f in frames if f["event"] == "status"
            ]
            assert stages[1] == "Inference (1/1)"
            assert [f["id"] for f in frames] == list(range(2, len(frames) + 2))
        assert seen[0] == seen[4]
        assert {(ws.close_code, ws.close_reason) for ws in watchers} == {(1000, "completed")}
        assert hub.subscriptions == 1

        async def unsubscribed() -> bool:
            return await probe.pubsub_numsub(channel(job_id)) == [(channel(job_id).encode(), 0)]

        await wait_for(unsubscribed, "the channel to be left")

        # A watch of a finished job: its final status at once, then the close.
        late = WsClient(app, f"/api/v1/jobs/{job_id}/ws")
        await late.connect()
        frames = await late.frames()
        assert [f["data"]["status"] for f in frames if f["event"] == "status"] == ["completed"]
        assert (late.close_code, late.close_reason) == (1000, "completed")
    finally:
        await probe.aclose()


async def test_jobs_first_watched_at_once_each_get_their_channel(
    redis_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = redis_app
    hub: JobHub = app.state.job_hub
    hub.recheck_s = 60
    jobs = [await start_job(client) for _ in range(3)]
    watchers = [WsClient(app, f"/api/v1/jobs/{job_id}/ws") for job_id in jobs]
    await asyncio.gather(*(ws.connect() for ws in watchers))
    for ws in watchers:
        assert (await ws.receive() or {})["data"]["status"] == "queued"
    assert hub.subscriptions == 3
    store = worker(app)
    for job_id in jobs:
        assert await store.claim(job_id) is not None
    for ws, job_id in zip(watchers, jobs, strict=True):
        frame = await ws.receive()
        assert frame is not None
        assert (frame["data"]["job_id"], frame["data"]["status"]) == (job_id, "processing")
        await ws.disconnect()


async def test_a_watcher_that_leaves_does_not_end_the_others(
    redis_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = redis_app
    hub: JobHub = app.state.job_hub
    job_id = await start_job(client)
    leaving, staying = (
        WsClient(app, f"/api/v1/jobs/{job_id}/ws"),
        WsClient(app, f"/api/v1/jobs/{job_id}/ws"),
    )
    for ws in (leaving, staying):
        await ws.connect()
        assert (await ws.receive() or {})["data"]["status"] == "queued"
    await leaving.disconnect()

    async def one_left() -> bool:
        return hub.watching(job_id) == 1

    await wait_for(one_left, "the watcher to leave")
    cancelled = await client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    frames = await staying.frames()
    assert [f["data"]["status"] for f in frames] == ["cancelled"]
    assert (staying.close_code, staying.close_reason) == (1000, "cancelled")
    assert hub.subscriptions == 1


async def test_embedded_setup_polls_like_the_sse_stream(client: httpx.AsyncClient) -> None:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    assert app.state.settings.redis_url is None
    job_id = await start_job(client)
    ws = WsClient(app, f"/api/v1/jobs/{job_id}/ws")
    await ws.connect()
    assert (await ws.receive() or {})["data"]["status"] == "queued"
    assert app.state.job_hub.subscriptions == 0
    assert (await client.post(f"/api/v1/jobs/{job_id}/cancel")).status_code == 200
    frames = await ws.frames()
    assert [(f["event"], f["data"]["status"]) for f in frames] == [("status", "cancelled")]
    assert (ws.close_code, ws.close_reason) == (1000, "cancelled")


async def refused(ws: WsClient, code: str) -> dict[str, Any]:
    await ws.connect()
    frames = await ws.frames()
    assert len(frames) == 1
    [frame] = frames
    assert frame["event"] == "error"
    assert_envelope(frame, code)
    assert (ws.close_code, ws.close_reason) == (1008, code)
    return frame


async def test_credentials_owners_and_unknown_jobs(auth_app: AuthApp) -> None:
    app = auth_app.app
    ana = await auth_app.account("ana")
    bob = await auth_app.account("bob")
    viewer = await auth_app.account("grafana", Role.VIEWER)
    job_id = await start_job(auth_app.client, ana.headers)
    path = f"/api/v1/jobs/{job_id}/ws"

    await refused(WsClient(app, path), "AUTHENTICATION_REQUIRED")
    await refused(WsClient(app, path, {"X-API-Key": "nsd_" + "0" * 40}), "INVALID_CREDENTIALS")
    await refused(WsClient(app, path, subprotocols=["nesydet.v1", "bearer.wrong"]),
                  "INVALID_CREDENTIALS")  # fmt: skip
    # Another owner's job answers exactly as an unknown one.
    theirs = await refused(WsClient(app, path, bob.headers), "JOB_NOT_FOUND")
    unknown = await refused(
        WsClient(app, "/api/v1/jobs/job_0123456789ab/ws", bob.headers), "JOB_NOT_FOUND"
    )
    assert theirs["message"] == unknown["message"]
    await refused(WsClient(app, "/api/v1/jobs/nonsense/ws", ana.headers), "JOB_NOT_FOUND")

    # Headers (a script) or subprotocols (a browser); the credential is never echoed.
    for ws, protocol in (
        (WsClient(app, path, ana.headers), None),
        (WsClient(app, path, {"Authorization": f"Bearer {ana.key}"}), None),
        (WsClient(app, path, subprotocols=["nesydet.v1", f"bearer.{ana.key}"]), "nesydet.v1"),
        (WsClient(app, path, viewer.headers), None),
    ):
        assert await ws.connect() == protocol
        frame = await ws.receive()
        assert frame is not None
        assert (frame["event"], frame["data"]["job_id"]) == ("status", job_id)
        await ws.disconnect()
