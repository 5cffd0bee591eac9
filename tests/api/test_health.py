"""Readiness under concurrent probes: no false 503, one run of the checks shared."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from nesydet.config import Settings
from nesydet.storage import LocalStorage


async def test_concurrent_readiness_checks_never_answer_a_false_503(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    answers = await asyncio.gather(*(client.get("/readyz") for _ in range(300)))
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 300, [a.json() for a in answers if a.status_code != 200][:3]
    probes = settings.storage_root / "_health"
    assert not probes.exists() or list(probes.iterdir()) == []


def test_storage_probes_of_concurrent_checks_do_not_collide(tmp_path: Path) -> None:
    """Two checks in one process at once (threads): each writes and removes its own probe."""
    from concurrent.futures import ThreadPoolExecutor

    storage = LocalStorage(tmp_path)
    with ThreadPoolExecutor(16) as pool:
        for future in [pool.submit(storage.check) for _ in range(400)]:
            future.result()  # raises StorageFailure or OSError on a collision
    assert list((tmp_path / "_health").iterdir()) == []


async def test_a_failing_part_is_named(client: httpx.AsyncClient) -> None:
    app = client.app  # type: ignore[attr-defined]
    broken = app.state.readiness._checks
    original = broken["storage"]

    async def storage_down() -> None:
        raise OSError("No space left on device")

    broken["storage"] = storage_down
    try:
        response = await client.get("/readyz")
    finally:
        broken["storage"] = original
    assert response.status_code == 503
    body = response.json()
    assert body["message"] == "Not ready: storage"
    assert body["checks"]["storage"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
