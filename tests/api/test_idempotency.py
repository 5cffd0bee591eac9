"""``Idempotency-Key`` on predict (and upload): a retried request gets the first answer."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from nesydet.db.base import utcnow
from nesydet.db.models import IdempotencyKey, Job, Upload
from nesydet.services.dispatch import Dispatcher
from nesydet.services.sweeper import sweep
from tests import images
from tests.api.test_jobs import PREDICT, upload
from tests.api.test_uploads import assert_envelope


async def jobs_of(client: httpx.AsyncClient, upload_id: str) -> int:
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        count = await session.scalar(
            select(func.count()).select_from(Job).where(Job.upload_id == upload_id)
        )
    return int(count or 0)


async def predict(
    client: httpx.AsyncClient, body: dict[str, Any], key: str | None
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await client.post(PREDICT, json=body, headers=headers)


async def test_a_retry_after_a_failed_send_gets_the_same_job_and_never_a_500(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = await upload(client, 1)

    async def broken(*_args: object, **_kwargs: object) -> bool:
        raise RuntimeError("the broker connection broke after the commit")

    monkeypatch.setattr(Dispatcher, "send_and_record", broken)
    body = {"upload_id": up["upload_id"]}
    first = await predict(client, body, "retry-me-1")
    assert first.status_code == 202, first.text  # the job row is committed: no 500
    again = await predict(client, body, "retry-me-1")
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await jobs_of(client, up["upload_id"]) == 1


async def test_the_same_key_with_another_body_is_refused(client: httpx.AsyncClient) -> None:
    up = await upload(client, 2)
    first = await predict(client, {"upload_id": up["upload_id"]}, "k-2")
    assert first.status_code == 202
    other = {"upload_id": up["upload_id"], "config": {"confidence_threshold": 0.5}}
    clash = await predict(client, other, "k-2")
    assert clash.status_code == 409
    assert_envelope(clash.json(), "IDEMPOTENCY_KEY_REUSED")
    assert await jobs_of(client, up["upload_id"]) == 1


async def test_without_a_key_or_with_new_keys_each_request_is_a_new_job(
    client: httpx.AsyncClient,
) -> None:
    up = await upload(client, 1)
    body = {"upload_id": up["upload_id"]}
    ids = {
        (await predict(client, body, key)).json()["data"]["job_id"]
        for key in (None, None, "a", "b")
    }
    assert len(ids) == 4
    assert await jobs_of(client, up["upload_id"]) == 4


async def test_concurrent_requests_with_one_key_make_one_job(client: httpx.AsyncClient) -> None:
    up = await upload(client, 1)
    body = {"upload_id": up["upload_id"]}
    answers = await asyncio.gather(*(predict(client, body, "burst") for _ in range(4)))
    assert [a.status_code for a in answers] == [202] * 4
    assert len({a.json()["data"]["job_id"] for a in answers}) == 1
    assert await jobs_of(client, up["upload_id"]) == 1


async def test_a_key_older_than_a_day_starts_afresh(client: httpx.AsyncClient) -> None:
    up = await upload(client, 1)
    body = {"upload_id": up["upload_id"]}
    first = (await predict(client, body, "old")).json()["data"]["job_id"]
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        await session.execute(
            update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25))
        )
        await session.commit()
    second = (await predict(client, body, "old")).json()["data"]["job_id"]
    assert second != first


async def test_a_request_that_fails_does_not_use_up_its_key(client: httpx.AsyncClient) -> None:
    missing = await predict(client, {"upload_id": "upl_000000000000"}, "fix-and-retry")
    assert missing.status_code == 404
    up = await upload(client, 1)
    fixed = await predict(client, {"upload_id": up["upload_id"]}, "fix-and-retry")
    assert fixed.status_code == 202


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"has space", "naïve".encode()])
async def test_malformed_keys_are_refused(client: httpx.AsyncClient, key: bytes) -> None:
    up = await upload(client, 1)
    response = await client.post(
        PREDICT, json={"upload_id": up["upload_id"]}, headers={"Idempotency-Key": key}
    )
    assert response.status_code == 400
    body = response.json()
    assert_envelope(body, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == "Idempotency-Key"
    assert await jobs_of(client, up["upload_id"]) == 0


async def test_the_sweeper_prunes_keys_older_than_a_day(client: httpx.AsyncClient) -> None:
    up = await upload(client, 1)
    for key in ("old-1", "old-2", "fresh"):
        assert (await predict(client, {"upload_id": up["upload_id"]}, key)).status_code == 202
    app = client.app  # type: ignore[attr-defined]
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key.in_(["old-1", "old-2"]))
            .values(created_at=utcnow() - timedelta(hours=25))
        )
        await session.commit()
    await sweep(
        sessionmaker=app.state.sessionmaker,
        settings=app.state.settings,
        dispatcher=app.state.dispatcher,
        cache=app.state.status_cache,
    )
    async with app.state.sessionmaker() as session:
        keys = (await session.execute(select(IdempotencyKey.key))).scalars().all()
    assert keys == ["fresh"]


async def post_files(
    client: httpx.AsyncClient, files: list[tuple[str, bytes]], key: str
) -> httpx.Response:
    parts = [("files", (name, data, "image/png")) for name, data in files]
    return await client.post(
        "/api/v1/inference/upload", files=parts, headers={"Idempotency-Key": key}
    )


async def test_an_upload_sent_again_with_its_key_is_stored_once(
    client: httpx.AsyncClient,
) -> None:
    files = [("a.png", images.png(100, 80)), ("b.png", images.png(90, 70))]
    first = await post_files(client, files, "up-1")
    assert first.status_code == 200, first.text
    again = await post_files(client, files, "up-1")  # a new multipart boundary, same files
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        uploads = await session.scalar(select(func.count()).select_from(Upload))
    assert uploads == 1
    other = await post_files(client, files[:1], "up-1")
    assert other.status_code == 409
    assert_envelope(other.json(), "IDEMPOTENCY_KEY_REUSED")


async def test_a_rejected_upload_does_not_use_up_its_key(client: httpx.AsyncClient) -> None:
    bad = await post_files(client, [("a.png", b"not an image")], "up-2")
    assert bad.status_code == 400
    good = await post_files(client, [("a.png", images.png(100, 80))], "up-2")
    assert good.status_code == 200
