"""The model and rules registry: register (a real inspection in a capped process), read,
default, deprecate, delete (refused while a job uses the version), A/B routing by job id, and
jobs that record what they run."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from nesydet.asset_names import pick_version
from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import Asset, AssetVersion, Job
from nesydet.domain import Role
from tests import images
from tests.api.conftest import AuthApp
from tests.api.test_uploads import assert_envelope
from tests.pipeline_fixtures import DEMO_MODEL

MODELS, RULES = "/api/v1/models", "/api/v1/rules"
GOOD_RULES = b"""% keep everything, and name the rule that did
decide(Id, keep, Conf, Class, [kept_all]) :- det(Id, Class, Conf, _, _).
"""
BAD_RULES = b"""decide(Id, keep, Conf, Class, []) :- det(Id, Class, Conf, _, _).
broken(X) :- member(X, [1, 2
"""


async def register(
    client: httpx.AsyncClient,
    collection: str,
    filename: str,
    content: bytes,
    name: str,
    version: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    form = {"name": name, **({"version": version} if version else {})}
    return await client.post(
        collection, files={"file": (filename, content)}, data=form, headers=headers or {}
    )


async def upload_image(client: httpx.AsyncClient) -> str:
    png = [("files", ("a.png", images.png(120, 90), "image/png"))]
    response = await client.post("/api/v1/inference/upload", files=png)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["upload_id"])


async def predict(client: httpx.AsyncClient, upload_id: str, **config: Any) -> httpx.Response:
    return await client.post(
        "/api/v1/inference/predict", json={"upload_id": upload_id, "config": config}
    )


async def test_model_round_trip(client: httpx.AsyncClient) -> None:
    """Upload the demo .pt, list it, run a job on name@version, see its sha256 recorded, be
    refused a delete while the job is queued, then delete it once the job has finished."""
    raw = DEMO_MODEL.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    made = await register(client, MODELS, "demo-obb.pt", raw, "roads")
    assert made.status_code == 201, made.text
    version = made.json()["data"]
    assert (version["version"], version["sha256"], version["format"]) == ("1", sha, "pt")
    assert version["task"] == "obb"
    assert "plane" in version["classes"]
    assert version["default"] is True
    assert version["export"]["status"] == "pending"

    again = await register(client, MODELS, "copy.pt", raw, "roads")
    assert again.status_code == 409
    assert_envelope(again.json(), "VERSION_EXISTS")

    listed = (await client.get(MODELS)).json()["data"]["items"]
    assert [(m["name"], m["default_version"], m["version_count"]) for m in listed] == [
        ("roads", "1", 1)
    ]

    upload_id = await upload_image(client)
    job = await predict(client, upload_id, model="roads@1")
    assert job.status_code == 202, job.text
    job_id = job.json()["data"]["job_id"]
    assert job.json()["data"]["config"]["model"] == "roads@1"
    status = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()["data"]
    assert status["model"] == {"name": "roads", "version": "1", "sha256": sha}

    refused = await client.delete(f"{MODELS}/roads/versions/1")
    assert refused.status_code == 409
    assert_envelope(refused.json(), "MODEL_IN_USE")
    assert job_id in refused.json()["details"]

    assert (await client.post(f"/api/v1/jobs/{job_id}/cancel")).status_code == 200
    assert (await client.delete(f"{MODELS}/roads/versions/1")).status_code == 204
    gone = await client.get(f"{MODELS}/roads")
    assert gone.status_code == 404
    assert_envelope(gone.json(), "MODEL_NOT_FOUND")
    storage = client.app.state.storage  # type: ignore[attr-defined]
    assert storage.stat(f"registry/model/{sha}.pt") is None


@pytest.mark.parametrize(
    ("filename", "content", "code", "status"),
    [
        ("junk.pt", b"\x80\x04not a pickle at all" * 100, "INVALID_MODEL", 400),
        ("notes.txt", b"hello", "INVALID_MODEL", 400),
        ("empty.onnx", b"", "INVALID_REQUEST", 400),
    ],
)
async def test_a_file_that_is_not_a_model_is_refused(
    client: httpx.AsyncClient, filename: str, content: bytes, code: str, status: int
) -> None:
    response = await register(client, MODELS, filename, content, "junk")
    assert response.status_code == status, response.text
    assert_envelope(response.json(), code)
    assert (await client.get(MODELS)).json()["data"]["items"] == []


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"name": "Bad Name!"}, "VALIDATION_ERROR"),
        ({"name": "ok", "version": "a/b"}, "VALIDATION_ERROR"),
        ({}, "INVALID_REQUEST"),
    ],
)
async def test_names_and_versions_are_checked(
    client: httpx.AsyncClient, form: dict[str, str], code: str
) -> None:
    response = await client.post(RULES, files={"file": ("r.pl", GOOD_RULES)}, data=form)
    assert response.status_code == 400, response.text
    assert_envelope(response.json(), code)


async def test_a_model_over_the_size_limit_is_refused(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    client.app.state.settings = settings.model_copy(update={"max_model_bytes": 1000})  # type: ignore[attr-defined]
    response = await register(client, MODELS, "big.pt", b"x" * 5000, "big")
    assert response.status_code == 413, response.text
    assert_envelope(response.json(), "REQUEST_TOO_LARGE")


async def test_rules_round_trip_default_and_deprecation(client: httpx.AsyncClient) -> None:
    """Rules are checked by the sandboxed loader; a job names them; the default moves and an
    old version is deprecated (never the default)."""
    bad = await register(client, RULES, "broken.pl", BAD_RULES, "mine")
    assert bad.status_code == 400
    assert_envelope(bad.json(), "INVALID_RULES")
    assert "broken.pl:2:" in bad.json()["details"]  # the line of the error
    assert "/" not in bad.json()["details"].split("broken.pl")[0]  # no server path

    first = await register(client, RULES, "mine.pl", GOOD_RULES, "mine")
    assert first.status_code == 201, first.text
    assert first.json()["data"]["facts_used"] == ["det"]
    second = await register(client, RULES, "mine.pl", GOOD_RULES + b"% v2\n", "mine", "2b")
    assert second.json()["data"]["version"] == "2b"

    upload_id = await upload_image(client)
    job = await predict(client, upload_id, symbolic_reasoning={"rules": "mine"})
    assert job.json()["data"]["config"]["symbolic_reasoning"]["rules"] == "mine@1"

    not_yet = await client.patch(f"{RULES}/mine/versions/1", json={"deprecated": True})
    assert not_yet.status_code == 409
    assert_envelope(not_yet.json(), "RULES_IN_USE")
    moved = await client.patch(f"{RULES}/mine", json={"default_version": "2b"})
    assert moved.json()["data"]["default_version"] == "2b"
    done = await client.patch(f"{RULES}/mine/versions/1", json={"deprecated": True})
    versions = {v["version"]: v for v in done.json()["data"]["versions"]}
    assert versions["1"]["deprecated"]
    assert versions["2b"]["default"]
    back = await client.patch(f"{RULES}/mine", json={"default_version": "1"})
    assert back.status_code == 400
    assert_envelope(back.json(), "INVALID_ROUTING")

    both = await predict(
        client, upload_id, symbolic_reasoning={"rules": "mine", "rules_file": "dota.pl"}
    )
    assert both.status_code == 400
    assert_envelope(both.json(), "INVALID_CONFIG")
    unknown = await predict(client, upload_id, model="nope@3")
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["error_code"] == "MODEL_NOT_FOUND"


async def add_versions(client: httpx.AsyncClient, name: str, versions: list[str]) -> None:
    """Register versions as rows, as an inspected upload would leave them (no file needed:
    these jobs never run)."""
    now = utcnow()
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        session.add(Asset(kind="model", name=name, default_version=versions[0], created_at=now,
                          updated_at=now))  # fmt: skip
        for v in versions:
            sha = hashlib.sha256(f"{name}{v}".encode()).hexdigest()
            session.add(
                AssetVersion(kind="model", name=name, version=v, sha256=sha, format="pt",
                             size_bytes=1, storage_key=f"registry/model/{sha}.pt",
                             meta={"task": "obb", "classes": ["plane"], "input_size": 640},
                             created_at=now)
            )  # fmt: skip
        await session.commit()


async def test_ab_routing_splits_by_job_id(client: httpx.AsyncClient) -> None:
    """40 jobs at 50/50: each job's version is the one its id picks, so the split of the
    same ids is the same on a rerun; GET and the metric show it."""
    await add_versions(client, "roads", ["3", "4"])
    routed = await client.put(f"{MODELS}/roads/routing", json={"3": 50, "4": 50})
    assert routed.status_code == 200, routed.text
    assert routed.json()["data"]["routing"] == {"3": 50, "4": 50}
    upload_id = await upload_image(client)
    got: dict[str, str] = {}
    for _ in range(40):
        data = (await predict(client, upload_id, model="roads")).json()["data"]
        got[data["job_id"]] = data["config"]["model"].split("@")[1]
    assert got == {job_id: pick_version({"3": 50, "4": 50}, job_id) for job_id in got}
    split = Counter(got.values())
    assert set(split) == {"3", "4"}
    assert split["3"] + split["4"] == 40
    shown = (await client.get(f"{MODELS}/roads")).json()["data"]["versions"]
    assert {v["version"]: v["jobs"] for v in shown} == dict(split)
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        rows = (await session.execute(select(Job.id, Job.model_version))).all()
    assert dict(rows) == got
    metrics = (await client.get("/metrics")).text
    assert 'model_jobs_total{model="roads",version="3"}' in metrics

    for weights, field in (({"9": 10}, "weights.9"), ({"3": 0, "4": 0}, "weights")):
        bad = await client.put(f"{MODELS}/roads/routing", json=weights)
        assert bad.status_code == 400
        assert_envelope(bad.json(), "INVALID_ROUTING")
        assert bad.json()["errors"][0]["field"] == field
    in_routing = await client.delete(f"{MODELS}/roads/versions/4")
    assert in_routing.status_code == 409  # queued jobs, and a weight in the routing
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        await session.execute(update(Job).values(status="completed"))
        await session.commit()
    still = await client.delete(f"{MODELS}/roads/versions/4")
    assert still.status_code == 409
    assert "routing" in still.json()["message"]
    cleared = await client.put(f"{MODELS}/roads/routing", json={})
    assert cleared.json()["data"]["routing"] is None
    assert (await client.delete(f"{MODELS}/roads/versions/4")).status_code == 204


async def test_only_admins_change_the_registry(auth_app: AuthApp) -> None:
    user = await auth_app.account("ann", Role.USER)
    viewer = await auth_app.account("vic", Role.VIEWER)
    admin = await auth_app.account("ada", Role.ADMIN)
    for who in (user, viewer):
        refused = await register(
            auth_app.client, RULES, "r.pl", GOOD_RULES, "r", headers=who.headers
        )
        assert refused.status_code == 403
        assert_envelope(refused.json(), "ACCESS_DENIED")
    made = await register(auth_app.client, RULES, "r.pl", GOOD_RULES, "r", headers=admin.headers)
    assert made.status_code == 201, made.text
    for who in (user, viewer):
        seen = await auth_app.client.get(f"{RULES}/r", headers=who.headers)
        assert seen.status_code == 200
        denied = await auth_app.client.delete(f"{RULES}/r/versions/1", headers=who.headers)
        assert denied.status_code == 403
    anonymous = await auth_app.client.get(RULES)
    assert anonymous.status_code == 401
