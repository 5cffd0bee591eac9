"""The monitoring dashboard on hand-built jobs with known timestamps: its shape, the window
parameter, current jobs with their progress, the series, who sees what, and live workers."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from nesydet.api.app import create_app
from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import Job, Upload, Worker
from nesydet.domain import Role
from nesydet.ids import JOB, UPLOAD, new_id
from nesydet.services.image_checker import ImageChecker
from tests.api.conftest import AuthApp
from tests.api.test_uploads import assert_envelope

DASHBOARD = "/api/v1/monitoring/dashboard"


def minutes_ago(now: datetime, minutes: float) -> datetime:
    return now - timedelta(minutes=minutes)


STAMPS = ("created_at", "started_at", "completed_at", "failed_at", "cancelled_at")


def a_job(created_at: datetime, status: str = "queued", **values: Any) -> dict[str, Any]:
    """Return the columns of a job created at ``created_at``; ``values`` override them.

    ``updated_at`` is the latest stamp by default, as every write that sets one leaves it.
    """
    row = {"status": status, "created_at": created_at, "file_count": 1, **values}
    row.setdefault("updated_at", max(row[k] for k in STAMPS if row.get(k) is not None))
    return row


async def add_jobs(app: FastAPI, *jobs: dict[str, Any], owner: str | None = None) -> list[str]:
    """Insert an upload and these jobs (as a worker would have left them); return their ids."""
    ids = []
    async with app.state.sessionmaker() as session:
        upload = Upload(id=new_id(UPLOAD), owner_id=owner, file_count=1, total_bytes=1)
        session.add(upload)
        await session.flush()
        for values in jobs:
            job_id = new_id(JOB)
            session.add(
                Job(
                    id=job_id,
                    upload_id=upload.id,
                    owner_id=owner,
                    config={},
                    model_name="nesydet-demo-obb.pt",
                    time_limit_s=600.0,
                    **values,
                )
            )
            ids.append(job_id)
        await session.commit()
    return ids


async def add_workers(app: FastAPI, *beats: datetime) -> None:
    """Insert one worker row per heartbeat time."""
    async with app.state.sessionmaker() as session:
        for i, beat in enumerate(beats):
            session.add(Worker(id=f"w{i}@host", hostname="host", pid=100 + i, heartbeat_at=beat))
        await session.commit()


async def dashboard(client: httpx.AsyncClient, query: str = "", **headers: str) -> dict[str, Any]:
    response = await client.get(f"{DASHBOARD}{query}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "success"
    data: dict[str, Any] = body["data"]
    return data


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_an_empty_service_shows_zeros_over_the_default_window(
    client: httpx.AsyncClient,
) -> None:
    data = await dashboard(client)
    assert (data["scope"], data["window"], data["bucket_seconds"]) == ("all", "6h", 360.0)
    assert (data["current_jobs"], data["current_jobs_total"]) == ([], 0)
    assert (data["queue_length"], data["active_workers"]) == (0, 0)
    assert data["avg_inference_time_s"] is None
    start, end = parse(data["window_start"]), parse(data["window_end"])
    assert end - start == timedelta(hours=6)
    completions, queue = data["series"]["completions"], data["series"]["queue_length"]
    assert len(completions) == len(queue) == 60
    assert parse(completions[0]["start"]) == start
    assert parse(completions[-1]["end"]) == end
    assert parse(queue[-1]["at"]) == end
    for before, after in itertools.pairwise(completions):
        assert before["end"] == after["start"]
    assert {(b["completed"], b["failed"]) for b in completions} == {(0, 0)}
    assert {p["queued"] for p in queue} == {0}


@pytest.mark.parametrize(
    ("query", "window", "buckets", "bucket_seconds"),
    [
        ("?window=15m", "15m", 60, 15.0),
        ("?window=1h&buckets=12", "1h", 12, 300.0),
        ("?window=24h&buckets=120", "24h", 120, 720.0),
        ("?window=7d&buckets=7", "7d", 7, 86400.0),
        ("?window=10080m&buckets=1", "10080m", 1, 604800.0),
    ],
)
async def test_windows_and_buckets(
    client: httpx.AsyncClient, query: str, window: str, buckets: int, bucket_seconds: float
) -> None:
    data = await dashboard(client, query)
    assert (data["window"], data["bucket_seconds"]) == (window, bucket_seconds)
    assert len(data["series"]["completions"]) == len(data["series"]["queue_length"]) == buckets


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?window=8d", "window"),
        ("?window=169h", "window"),
        ("?window=10081m", "window"),
        ("?window=0h", "window"),
        ("?window=6", "window"),
        ("?window=6w", "window"),
        ("?window=-1h", "window"),
        ("?window=1.5h", "window"),
        ("?window=", "window"),
        ("?window=99999999d", "window"),
        ("?buckets=0", "buckets"),
        ("?buckets=121", "buckets"),
        ("?buckets=ten", "buckets"),
    ],
)
async def test_a_bad_window_or_bucket_count_is_a_400_naming_it(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await client.get(f"{DASHBOARD}{query}")
    assert response.status_code == 400
    body = response.json()
    assert (body["status"], body["error_code"]) == ("error", "VALIDATION_ERROR")
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert [item["field"] for item in body["errors"]] == [field]


@pytest.mark.parametrize(
    "query",
    [
        "?window=6h%0A",
        "?window=%0A6h",
        "?window=6h%00",
        "?window=%EF%BC%96h",  # a full-width digit
        "?window=6H",
        "?window=6h&window=1h",
        "?window=6h&window=8d",
        "?window=" + "9" * 5000 + "h",
        "?window=%ZZ",
        "?buckets=" + "9" * 400,
        "?buckets=-1",
        "?buckets=1e2",
        "?buckets=12.0",
        "?buckets=",
        "?owner=usr_000000000000&unknown=1",
    ],
)
async def test_odd_queries_are_answered_never_with_a_500(
    client: httpx.AsyncClient, query: str
) -> None:
    response = await client.get(f"{DASHBOARD}{query}")
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert_envelope(response.json(), "VALIDATION_ERROR")
    else:
        assert response.json()["status"] == "success"


async def test_current_jobs_newest_first_with_their_progress(client: httpx.AsyncClient) -> None:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    now = utcnow()
    eta = now + timedelta(minutes=2)
    running, waiting, _done = await add_jobs(
        app,
        a_job(minutes_ago(now, 10), "processing", started_at=minutes_ago(now, 9), file_count=4,
              processed_count=2, current_stage="Running SAHI inference", estimated_completion=eta),
        a_job(minutes_ago(now, 5), file_count=3),
        a_job(minutes_ago(now, 1), "completed", started_at=minutes_ago(now, 1),
              completed_at=now, processed_count=1, processing_time_seconds=2.0),
    )  # fmt: skip
    data = await dashboard(client)
    assert [j["job_id"] for j in data["current_jobs"]] == [waiting, running]
    assert data["current_jobs_total"] == 2
    assert data["queue_length"] == 1
    queued, processing = data["current_jobs"]
    assert queued["status"] == "queued"
    assert queued["started_at"] is None
    assert queued["progress"]["percentage"] == 0
    assert (queued["progress"]["processed_images"], queued["progress"]["total_images"]) == (0, 3)
    assert processing["status"] == "processing"
    assert processing["progress"] == {
        "total_images": 4,
        "processed_images": 2,
        "percentage": 50,
        "current_stage": "Running SAHI inference",
        "estimated_completion": processing["progress"]["estimated_completion"],
    }
    assert abs(parse(processing["progress"]["estimated_completion"]) - eta) < timedelta(seconds=1)
    assert abs(parse(processing["started_at"]) - minutes_ago(now, 9)) < timedelta(seconds=1)
    assert processing["status_url"] == f"/api/v1/jobs/{running}/status"
    status = (await client.get(processing["status_url"])).json()["data"]["progress"]
    assert status["percentage"] == processing["progress"]["percentage"]


async def test_current_jobs_are_capped_and_counted(client: httpx.AsyncClient) -> None:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    now = utcnow()
    ids = await add_jobs(app, *(a_job(minutes_ago(now, 60 - i)) for i in range(55)))
    data = await dashboard(client)
    assert data["current_jobs_total"] == data["queue_length"] == 55
    assert [j["job_id"] for j in data["current_jobs"]] == ids[::-1][:50]


def series_jobs(now: datetime) -> list[dict[str, Any]]:
    """Jobs over the last hour (cut into six 10-minute buckets), far from every bucket edge.

    Waiting at the end of each bucket (50, 40, 30, 20, 10 and 0 minutes ago):
    q1 [70, 45), q2 [35, now), q3 [15, 12), q4 [22, 8), q5 [65, now) (queued again after a
    first attempt), and the finished jobs only for a minute each, within one bucket.
    """
    ago = lambda minutes: minutes_ago(now, minutes)  # noqa: E731
    return [
        # q1 .. q5
        a_job(ago(70), "completed", started_at=ago(45), completed_at=ago(41),
              processing_time_seconds=240.0),
        a_job(ago(35)),
        a_job(ago(15), "cancelled", cancelled_at=ago(12)),
        a_job(ago(22), "processing", started_at=ago(8)),
        a_job(ago(65), started_at=ago(50.5), attempts=1),
        # Completed 55, 25 and 120 minutes ago; failed 25 minutes ago; cancelled 5 minutes ago.
        a_job(ago(56), "completed", started_at=ago(56), completed_at=ago(55),
              processing_time_seconds=10.0),
        a_job(ago(26), "completed", started_at=ago(26), completed_at=ago(25),
              processing_time_seconds=30.0),
        a_job(ago(180), "completed", started_at=ago(180), completed_at=ago(120),
              processing_time_seconds=3600.0),
        a_job(ago(26), "failed", started_at=ago(26), failed_at=ago(25)),
        a_job(ago(6), "cancelled", cancelled_at=ago(5)),
    ]  # fmt: skip


async def test_series_count_completions_and_the_queue_per_bucket(
    client: httpx.AsyncClient,
) -> None:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    await add_jobs(app, *series_jobs(utcnow()))
    data = await dashboard(client, "?window=1h&buckets=6")
    completions = [(b["completed"], b["failed"]) for b in data["series"]["completions"]]
    # q1 ended 41 minutes ago (bucket 1), the others 55 and 25 minutes ago.
    assert completions == [(1, 0), (1, 0), (0, 0), (1, 1), (0, 0), (0, 0)]
    assert data["avg_inference_time_s"] == round((240.0 + 10.0 + 30.0) / 3, 3)
    queue = [p["queued"] for p in data["series"]["queue_length"]]
    assert queue == [2, 1, 2, 3, 3, 2]
    assert data["queue_length"] == queue[-1] == 2
    assert data["current_jobs_total"] == 3  # q2, q4, q5


async def test_a_shorter_window_leaves_older_jobs_out(client: httpx.AsyncClient) -> None:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    await add_jobs(app, *series_jobs(utcnow()))
    data = await dashboard(client, "?window=30m&buckets=3")
    completions = [(b["completed"], b["failed"]) for b in data["series"]["completions"]]
    assert completions == [(1, 1), (0, 0), (0, 0)]
    assert data["avg_inference_time_s"] == pytest.approx(30.0)
    assert [p["queued"] for p in data["series"]["queue_length"]] == [3, 3, 2]
    week = await dashboard(client, "?window=7d&buckets=7")
    assert sum(b["completed"] for b in week["series"]["completions"]) == 4
    assert week["series"]["completions"][-1]["completed"] == 4


async def test_a_job_touched_after_it_ended_counts_where_it_ended(
    client: httpx.AsyncClient,
) -> None:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    now = utcnow()
    ago = lambda minutes: minutes_ago(now, minutes)  # noqa: E731
    await add_jobs(
        app,
        a_job(ago(200), "completed", started_at=ago(190), completed_at=ago(180),
              processing_time_seconds=600.0, updated_at=ago(5)),
        a_job(ago(200), "failed", started_at=ago(190), failed_at=ago(180), updated_at=ago(5)),
        a_job(ago(200), "cancelled", cancelled_at=ago(190), updated_at=ago(5)),
        a_job(ago(35), "completed", started_at=ago(20), completed_at=ago(10),
              processing_time_seconds=300.0, updated_at=ago(5)),
    )  # fmt: skip
    data = await dashboard(client, "?window=1h&buckets=4")
    completions = [(b["completed"], b["failed"]) for b in data["series"]["completions"]]
    assert completions == [(0, 0), (0, 0), (0, 0), (1, 0)]
    assert data["avg_inference_time_s"] == 300.0
    assert [p["queued"] for p in data["series"]["queue_length"]] == [0, 1, 0, 0]


async def test_active_workers_are_those_with_a_recent_heartbeat(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    now, stale = utcnow(), timedelta(seconds=settings.heartbeat_stale_s)
    await add_workers(
        app, now, now - stale + timedelta(seconds=10), now - stale - timedelta(seconds=10)
    )
    assert (await dashboard(client))["active_workers"] == 2


async def test_users_see_their_own_jobs_and_the_whole_queue(auth_app: AuthApp) -> None:
    ana = await auth_app.account("ana", Role.USER)
    bob = await auth_app.account("bob", Role.USER)
    root = await auth_app.account("root", Role.ADMIN)
    viewer = await auth_app.account("grafana", Role.VIEWER)
    now = utcnow()
    [anas_running, _] = await add_jobs(
        auth_app.app,
        a_job(minutes_ago(now, 20), "processing", started_at=minutes_ago(now, 10)),
        a_job(minutes_ago(now, 40), "completed", started_at=minutes_ago(now, 40),
              completed_at=minutes_ago(now, 39), processing_time_seconds=10.0),
        owner=ana.user_id,
    )  # fmt: skip
    [bobs_waiting, _, _] = await add_jobs(
        auth_app.app,
        a_job(minutes_ago(now, 30)),
        a_job(minutes_ago(now, 50), "completed", started_at=minutes_ago(now, 50),
              completed_at=minutes_ago(now, 49), processing_time_seconds=30.0),
        a_job(minutes_ago(now, 50), "failed", started_at=minutes_ago(now, 50),
              failed_at=minutes_ago(now, 49)),
        owner=bob.user_id,
    )  # fmt: skip
    await add_workers(auth_app.app, now, now)

    async def seen(who: Any) -> tuple[Any, ...]:
        data = await dashboard(auth_app.client, "?window=1h&buckets=4", **who.headers)
        completions = data["series"]["completions"]
        return (
            data["scope"],
            {j["job_id"] for j in data["current_jobs"]},
            data["current_jobs_total"],
            sum(b["completed"] for b in completions),
            sum(b["failed"] for b in completions),
            data["avg_inference_time_s"],
            data["queue_length"],
            data["series"]["queue_length"][-1]["queued"],
            data["active_workers"],
        )

    everything = ("all", {anas_running, bobs_waiting}, 2, 2, 1, 20.0, 1, 1, 2)
    assert await seen(ana) == ("own", {anas_running}, 1, 1, 0, 10.0, 1, 1, 2)
    assert await seen(bob) == ("own", {bobs_waiting}, 1, 1, 1, 30.0, 1, 1, 2)
    assert await seen(root) == everything
    assert await seen(viewer) == everything
    anonymous = await auth_app.client.get(DASHBOARD)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert_envelope(anonymous.json(), "AUTHENTICATION_REQUIRED")
    wrong = await auth_app.client.get(DASHBOARD, headers={"X-API-Key": "nsd_" + "x" * 43})
    assert wrong.status_code == 401
    assert_envelope(wrong.json(), "INVALID_CREDENTIALS")
    bad_window = await auth_app.client.get(f"{DASHBOARD}?window=8d", headers=viewer.headers)
    assert bad_window.status_code == 400
    assert_envelope(bad_window.json(), "VALIDATION_ERROR")


async def test_an_unreachable_database_answers_503(
    settings: Settings, checker: ImageChecker
) -> None:
    from tests.integration.prom import free_port

    down = settings.model_copy(
        update={"database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test"}
    )
    app = create_app(down, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get(f"{DASHBOARD}?window=6h")
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert_envelope(response.json(), "SERVICE_UNAVAILABLE")


async def test_the_dashboard_is_documented(client: httpx.AsyncClient) -> None:
    op = (await client.get("/openapi.json")).json()["paths"][DASHBOARD]["get"]
    params = {p["name"]: p["schema"] for p in op["parameters"]}
    assert params["window"]["default"] == "6h"
    assert (params["buckets"]["minimum"], params["buckets"]["maximum"]) == (1, 120)
    example = op["responses"]["200"]["content"]["application/json"]["example"]
    assert example["status"] == "success"
    assert "VALIDATION_ERROR" in op["responses"]["400"]["content"]["application/json"]["examples"]
    assert "Who sees what" in op["description"]
