"""Retention (uploads deleted 7 days after their last use, files and rows together) and
deletion by owners."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import Job, Upload
from nesydet.services.retention import cleanup
from tests import images
from tests.api.test_jobs import PREDICT
from tests.api.test_uploads import assert_envelope

WEEK = timedelta(days=7)


async def upload(client: httpx.AsyncClient, files: int = 1) -> dict[str, Any]:
    parts = [("files", (f"a{i}.png", images.png(120, 90), "image/png")) for i in range(files)]
    response = await client.post("/api/v1/inference/upload", files=parts)
    assert response.status_code == 200
    data: dict[str, Any] = response.json()["data"]
    return data


async def age(client: httpx.AsyncClient, upload_id: str, days: float) -> None:
    """Make an upload (and its jobs' ends) ``days`` old."""
    when = utcnow() - timedelta(days=days)
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        await session.execute(update(Upload).where(Upload.id == upload_id).values(created_at=when))
        await session.execute(
            update(Job).where(Job.upload_id == upload_id).values(updated_at=when, cancelled_at=when)
        )
        await session.commit()


def stored_files(settings: Settings, upload_id: str) -> list[Path]:
    folder = settings.storage_root / "uploads" / upload_id
    return sorted(folder.iterdir()) if folder.exists() else []


async def run_cleanup(client: httpx.AsyncClient, dry_run: bool = False) -> Any:
    app = client.app  # type: ignore[attr-defined]
    return await cleanup(
        sessionmaker=app.state.sessionmaker,
        storage=app.state.storage,
        older_than=WEEK,
        dry_run=dry_run,
    )


def deleted_bytes(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "storage_deleted_bytes":
            return sum(
                s.value for s in family.samples
                if s.name.endswith("_total") and s.labels.get("reason") == "retention"
            )  # fmt: skip
    return 0.0


async def test_uploads_unused_for_a_week_go_and_the_rest_stay(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    old = await upload(client, 2)
    fresh = await upload(client)
    busy = await upload(client)
    old_but_used = await upload(client)
    await age(client, old["upload_id"], 8)
    # busy: a month old, with a job queued on it all that time (never deleted under a job);
    # old_but_used: a month old, but its job ended two days ago.
    assert (await client.post(PREDICT, json={"upload_id": busy["upload_id"]})).status_code == 202
    await age(client, busy["upload_id"], 30)
    job = (await client.post(PREDICT, json={"upload_id": old_but_used["upload_id"]})).json()
    await client.post(f"/api/v1/jobs/{job['data']['job_id']}/cancel")
    await age(client, old_but_used["upload_id"], 30)
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        await session.execute(
            update(Job).where(Job.id == job["data"]["job_id"]).values(
                cancelled_at=utcnow() - timedelta(days=2)
            )
        )  # fmt: skip
        await session.commit()
    before = deleted_bytes((await client.get("/metrics")).text)
    dry = await run_cleanup(client, dry_run=True)
    assert [c.upload_id for c in dry.deleted] == [old["upload_id"]]
    assert stored_files(settings, old["upload_id"]), "a dry run deletes nothing"
    sizes = sum(p.stat().st_size for p in stored_files(settings, old["upload_id"]))
    report = await run_cleanup(client)
    assert [c.upload_id for c in report.deleted] == [old["upload_id"]]
    assert [c.upload_id for c in report.kept_in_use] == [busy["upload_id"]]
    assert (report.freed.objects, report.freed.bytes) == (2, sizes)
    assert stored_files(settings, old["upload_id"]) == []
    for kept in (fresh, busy, old_but_used):
        assert stored_files(settings, kept["upload_id"]), kept["upload_id"]
        assert (await client.get(f"/api/v1/uploads/{kept['upload_id']}")).status_code == 200
    assert deleted_bytes((await client.get("/metrics")).text) - before == sizes
    # A second run finds nothing more to do.
    assert (await run_cleanup(client)).deleted == []


async def test_an_expired_upload_says_so(client: httpx.AsyncClient) -> None:
    old = await upload(client)
    job = (await client.post(PREDICT, json={"upload_id": old["upload_id"]})).json()["data"]
    await client.post(f"/api/v1/jobs/{job['job_id']}/cancel")
    await age(client, old["upload_id"], 8)
    await run_cleanup(client)
    for response in (
        await client.get(f"/api/v1/uploads/{old['upload_id']}"),
        await client.post(PREDICT, json={"upload_id": old["upload_id"]}),
    ):
        assert response.status_code == 404
        body = response.json()
        assert_envelope(body, "UPLOAD_NOT_FOUND")
        assert "expired" in body["details"]
        assert body["message"] == "Upload expired, please re-upload images"
    gone = await client.get(f"/api/v1/jobs/{job['job_id']}/status")
    assert gone.status_code == 404


async def test_owners_delete_uploads_and_jobs_but_not_while_a_job_runs(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    up = await upload(client, 2)
    job_id = (await client.post(PREDICT, json={"upload_id": up["upload_id"]})).json()["data"][
        "job_id"
    ]
    busy = await client.delete(f"/api/v1/uploads/{up['upload_id']}")
    assert busy.status_code == 409
    assert_envelope(busy.json(), "UPLOAD_IN_USE")
    running = await client.delete(f"/api/v1/jobs/{job_id}")
    assert running.status_code == 409
    assert_envelope(running.json(), "JOB_RUNNING")
    await client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert (await client.delete(f"/api/v1/jobs/{job_id}")).status_code == 204
    assert (await client.get(f"/api/v1/jobs/{job_id}/status")).status_code == 404
    assert (await client.delete(f"/api/v1/uploads/{up['upload_id']}")).status_code == 204
    assert stored_files(settings, up["upload_id"]) == []
    again = await client.get(f"/api/v1/uploads/{up['upload_id']}")
    assert again.status_code == 404
    assert "expired" not in again.json()["details"]


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NESYDET_DATABASE_URL": settings.database_url,
        "NESYDET_STORAGE_ROOT": str(settings.storage_root),
        "NESYDET_VAR_DIR": str(settings.var_dir),
        "NESYDET_METRICS_DIR": "",
    }
    return subprocess.run(
        [sys.executable, "-m", "nesydet.cli", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def test_nesydet_cleanup_by_hand(client: httpx.AsyncClient, settings: Settings) -> None:
    old, live = await upload(client, 3), await upload(client)
    await age(client, old["upload_id"], 2)
    dry = cli(settings, "cleanup", "--older-than", "1d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would delete {old['upload_id']}" in dry.stdout
    assert live["upload_id"] not in dry.stdout
    assert stored_files(settings, old["upload_id"])
    done = cli(settings, "cleanup", "--older-than", "1d")
    assert done.returncode == 0, done.stderr
    assert f"deleted {old['upload_id']}" in done.stdout
    assert "deleted 1 uploads unused for 1 day, 0:00:00; 3 objects" in done.stdout
    assert stored_files(settings, old["upload_id"]) == []
    assert stored_files(settings, live["upload_id"])
    bad = cli(settings, "cleanup", "--older-than", "soon")
    assert bad.returncode == 2
    assert "not a duration like 7d, 12h, 30m or 30s" in bad.stderr
