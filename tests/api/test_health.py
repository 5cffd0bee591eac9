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


async def test_a_probe_can_require_only_what_serving_needs(client: httpx.AsyncClient) -> None:
    """The API serves while the broker is away (jobs wait to be sent): a load balancer's probe
    asks for the database and storage only, and still sees the broker's state."""
    checks = client.app.state.readiness._checks  # type: ignore[attr-defined]
    original = checks["broker"]

    async def broker_down() -> None:
        raise ConnectionRefusedError("Connection refused")

    checks["broker"] = broker_down
    try:
        everything = await client.get("/readyz")
        serving = await client.get("/readyz?require=database&require=storage")
        unknown = await client.get("/readyz?require=cache")
    finally:
        checks["broker"] = original
    assert everything.status_code == 503
    assert everything.json()["message"] == "Not ready: broker"
    assert serving.status_code == 200, serving.text
    assert serving.json()["checks"]["broker"]["ok"] is False
    assert unknown.status_code == 400
    assert unknown.json()["error_code"] == "VALIDATION_ERROR"
