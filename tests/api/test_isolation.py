"""Every upload, job, file, result, image, event stream and key belongs to its owner: another
user's id answers exactly like an unknown id, on every route of the OpenAPI document.

The routes are read from the app's own OpenAPI document, so a route added later is checked
too; a route with no id of an owner must be named in ``NO_OWNED_IDS`` (and says why), or the
suite fails. With ``NESYDET_ISOLATION_REPORT=<file>`` the matrix (route x caller -> status)
is written there.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

from nesydet.db.base import utcnow
from nesydet.db.models import Job, JobFile
from nesydet.domain import Role
from nesydet.services.webhooks.outbox import WebhookOutbox
from tests import images
from tests.api.conftest import Account, AuthApp

_REGISTRY_READ = "the shared registry: read by every account (test_registry.py)"
_REGISTRY_WRITE = "the shared registry: changed by admins only (test_registry.py)"
# Routes that take no id of an owned resource: nothing of another owner can be named there.
NO_OWNED_IDS = {
    ("post", "/api/v1/inference/upload"): "creates a new upload of the caller",
    ("post", "/api/v1/inference/batch"): "creates a new upload (and job) of the caller",
    ("get", "/api/v1/jobs"): "lists the caller's own jobs (checked below)",
    ("post", "/api/v1/auth/token"): "a login",
    ("get", "/api/v1/auth/me"): "the caller",
    ("get", "/api/v1/auth/keys"): "the caller's own keys (checked below)",
    ("post", "/api/v1/auth/keys"): "a new key of the caller",
    ("get", "/api/v1/users"): "admins only",
    ("post", "/api/v1/users"): "admins only",
    ("get", "/healthz"): "public, no data",
    ("get", "/readyz"): "public, no data",
    ("get", "/metrics"): "public, counts only",
    ("get", "/api/v1/monitoring/dashboard"): "the caller's own jobs and counts of the whole "
    "service (test_monitoring_dashboard.py)",
    ("post", "/api/v1/webhooks"): "a new webhook of the caller",
    ("get", "/api/v1/webhooks"): "the caller's own webhooks (test_webhooks.py)",
    ("post", "/api/v1/comparisons"): "a new comparison of the caller; another owner's jobs in "
    "its body answer 404 (test_comparisons.py)",
    ("get", "/docs/errors"): "public: the error codes, generated from the code",
    ("get", "/docs/errors.json"): "public: the error codes, generated from the code",
    ("get", "/api/v1/models"): _REGISTRY_READ,
    ("post", "/api/v1/models"): _REGISTRY_WRITE,
    ("get", "/api/v1/models/{name}"): _REGISTRY_READ,
    ("patch", "/api/v1/models/{name}"): _REGISTRY_WRITE,
    ("patch", "/api/v1/models/{name}/versions/{version}"): _REGISTRY_WRITE,
    ("delete", "/api/v1/models/{name}/versions/{version}"): _REGISTRY_WRITE,
    ("put", "/api/v1/models/{name}/routing"): _REGISTRY_WRITE,
    ("get", "/api/v1/rules"): _REGISTRY_READ,
    ("post", "/api/v1/rules"): _REGISTRY_WRITE,
    ("get", "/api/v1/rules/{name}"): _REGISTRY_READ,
    ("patch", "/api/v1/rules/{name}"): _REGISTRY_WRITE,
    ("patch", "/api/v1/rules/{name}/versions/{version}"): _REGISTRY_WRITE,
    ("delete", "/api/v1/rules/{name}/versions/{version}"): _REGISTRY_WRITE,
}
# Routes that change or remove what they name: run as the other users only, then checked to
# have changed nothing.
DESTRUCTIVE = {
    ("delete", "/api/v1/uploads/{upload_id}"),
    ("delete", "/api/v1/jobs/{job_id}"),
    ("post", "/api/v1/jobs/{job_id}/cancel"),
    ("delete", "/api/v1/auth/keys/{key_id}"),
    ("delete", "/api/v1/users/{user_id}"),
    ("patch", "/api/v1/users/{user_id}"),
    ("delete", "/api/v1/webhooks/{webhook_id}"),
}
UNKNOWN = {
    "job_id": "job_0123456789ab",
    "upload_id": "upl_0123456789ab",
    "file_id": "img_0123456789ab",
    "key_id": "key_0123456789ab",
    "user_id": "usr_0123456789ab",
    "webhook_id": "whk_0123456789ab",
    "delivery_id": "msg_0123456789ab",
    "comparison_id": "cmp_0123456789ab",
}


@dataclass
class Owned:
    """An owner's resources, by the name of the path parameter that names them."""

    ids: dict[str, str]


async def owned_by(auth_app: AuthApp, owner: Account) -> Owned:
    """Make an upload and a completed job of ``owner`` (results stored as a worker would)."""
    png = [("files", ("a.png", images.png(100, 80), "image/png"))]
    up = await auth_app.client.post("/api/v1/inference/upload", files=png, headers=owner.headers)
    upload = up.json()["data"]
    file_id = upload["uploaded_files"][0]["file_id"]
    job = await auth_app.client.post(
        "/api/v1/inference/predict",
        json={"upload_id": upload["upload_id"]},
        headers=owner.headers,
    )
    job_id = job.json()["data"]["job_id"]
    storage = auth_app.app.state.storage
    for name in ("annotated.jpg", "thumbnail.jpg"):
        storage.put_bytes(f"results/{job_id}/{file_id}/{name}", images.jpeg(64, 64))
    storage.put_bytes(f"results/{job_id}/{file_id}/labels.txt", b"")
    now = utcnow()
    async with auth_app.app.state.sessionmaker() as session:
        await session.execute(
            update(Job).where(Job.id == job_id).values(
                status="completed", completed_at=now, processed_count=1, total_detections=0,
                processing_time_seconds=1.0,
            )
        )  # fmt: skip
        await session.execute(
            update(JobFile).where(JobFile.job_id == job_id).values(
                status="done", detection_count=0, dropped_count=0, width=100, height=80,
                annotated_key=f"results/{job_id}/{file_id}/annotated.jpg",
                thumbnail_key=f"results/{job_id}/{file_id}/thumbnail.jpg",
                labels_key=f"results/{job_id}/{file_id}/labels.txt", processed_at=now,
            )
        )  # fmt: skip
        await session.commit()
    hook = await auth_app.client.post(
        "/api/v1/webhooks", json={"url": "http://93.184.215.14/hook"}, headers=owner.headers
    )
    webhook_id = hook.json()["data"]["webhook_id"]
    outbox = WebhookOutbox(auth_app.app.state.celery, auth_app.app.state.settings)
    async with auth_app.app.state.sessionmaker() as session:
        row = await session.get(Job, job_id)
        assert row is not None
        [delivery_id] = await outbox.record(session, row, event="job.completed")
        await session.commit()
    compared = await auth_app.client.post(
        "/api/v1/comparisons", json={"job_a": job_id, "job_b": job_id}, headers=owner.headers
    )
    assert compared.status_code == 201, compared.text
    return Owned(
        {
            "upload_id": upload["upload_id"],
            "file_id": file_id,
            "job_id": job_id,
            "key_id": owner.key_id,
            "user_id": owner.user_id,
            "kind": "original",
            "webhook_id": webhook_id,
            "delivery_id": delivery_id,
            "comparison_id": compared.json()["data"]["comparison_id"],
        }
    )


def write_report(matrix: dict[str, dict[str, int | str]]) -> None:
    """Append the matrix to ``NESYDET_ISOLATION_REPORT`` when it is set."""
    report = os.environ.get("NESYDET_ISOLATION_REPORT")
    if report:
        with Path(report).open("a") as out:
            out.write(json.dumps(matrix) + "\n")


def routes(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(method, path) for path, ops in spec["paths"].items() for method in ops]


def fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "original"), path)


def body_for(method: str, path: str, ids: dict[str, str]) -> dict[str, Any] | None:
    if (method, path) == ("post", "/api/v1/inference/predict"):
        return {"upload_id": ids["upload_id"]}
    if method == "patch":
        return {"disabled": True}
    return None


async def call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    ids: dict[str, str],
    who: Account | None,
) -> httpx.Response:
    headers = who.headers if who is not None else {}
    url = fill(path, ids)
    if path == "/api/v1/files/{file_id}/{kind}":
        url += f"?job_id={ids['job_id']}"
    if path == "/api/v1/comparisons/{comparison_id}/visualization":
        url += f"?file_id={ids['file_id']}"
    body = body_for(method, path, ids)
    return await client.request(method.upper(), url, json=body, headers=headers)


def shape(response: httpx.Response) -> tuple[int, str | None, list[str]]:
    """Return what a client can tell apart: status, error code, and the body's keys."""
    try:
        body = response.json()
    except ValueError:
        return response.status_code, None, []
    return response.status_code, body.get("error_code"), sorted(body)


async def test_another_owners_ids_answer_like_unknown_ids_on_every_route(
    auth_app: AuthApp,
) -> None:
    owner = await auth_app.account("ana", Role.USER)
    other = await auth_app.account("bob", Role.USER)
    admin = await auth_app.account("root", Role.ADMIN)
    viewer = await auth_app.account("grafana", Role.VIEWER)
    mine = await owned_by(auth_app, owner)
    spec = (await auth_app.client.get("/openapi.json")).json()
    matrix: dict[str, dict[str, int | str]] = {}
    checked = 0
    for method, path in routes(spec):
        if (method, path) in NO_OWNED_IDS:
            continue
        assert "{" in path or method == "post", f"{method} {path}: no id, not in NO_OWNED_IDS"
        row: dict[str, int | str] = {}
        theirs = await call(auth_app.client, method, path, mine.ids, other)
        unknown = await call(auth_app.client, method, path, {**mine.ids, **UNKNOWN}, other)
        assert shape(theirs) == shape(unknown), f"{method} {path}: {theirs.text}"
        assert theirs.status_code in (403, 404), f"{method} {path}: {theirs.status_code}"
        row["other user"] = theirs.status_code
        row["anonymous"] = (await call(auth_app.client, method, path, mine.ids, None)).status_code
        assert row["anonymous"] == 401, f"{method} {path}"
        row["viewer"] = (await call(auth_app.client, method, path, mine.ids, viewer)).status_code
        if (method, path) not in DESTRUCTIVE:
            for name, who in (("owner", owner), ("admin", admin)):
                response = await call(auth_app.client, method, path, mine.ids, who)
                row[name] = response.status_code
                assert response.status_code < 300 or ("users" in path and who is owner), (
                    f"{method} {path} as {name}: {response.text[:300]}"
                )
        else:
            row["owner"] = row["admin"] = "not run (destructive)"
        matrix[f"{method.upper()} {path}"] = row
        checked += 1
    assert checked >= 14
    # Nothing of the owner's was changed by the others' attempts.
    still = await auth_app.client.get(f"/api/v1/jobs/{mine.ids['job_id']}/status",
                                      headers=owner.headers)  # fmt: skip
    assert still.json()["data"]["status"] == "completed"
    assert (await auth_app.client.get("/api/v1/auth/me", headers=owner.headers)).status_code == 200
    # Then the destructive ones, by those allowed, in an order that leaves each a target
    # (the predict calls above queued more jobs on the upload: cancelled first).
    listed = await auth_app.client.get("/api/v1/jobs?status=queued", headers=owner.headers)
    for job in listed.json()["data"]["jobs"]:
        cancelled = await auth_app.client.post(
            f"/api/v1/jobs/{job['job_id']}/cancel", headers=owner.headers
        )
        assert cancelled.status_code == 200
    for (method, path), who, name, want in (
        (("delete", "/api/v1/webhooks/{webhook_id}"), owner, "owner", 204),
        (("post", "/api/v1/jobs/{job_id}/cancel"), owner, "owner", 409),  # already completed
        (("delete", "/api/v1/jobs/{job_id}"), owner, "owner", 204),
        (("delete", "/api/v1/uploads/{upload_id}"), owner, "owner", 204),
        (("patch", "/api/v1/users/{user_id}"), admin, "admin", 200),
        (("delete", "/api/v1/auth/keys/{key_id}"), admin, "admin", 200),
        (("delete", "/api/v1/users/{user_id}"), admin, "admin", 204),
    ):
        response = await call(auth_app.client, method, path, mine.ids, who)
        assert response.status_code == want, f"{method} {path} as {name}: {response.text}"
        matrix[f"{method.upper()} {path}"][name] = response.status_code
    write_report(matrix)


async def test_lists_show_the_callers_own_and_admins_see_all(auth_app: AuthApp) -> None:
    owner = await auth_app.account("ana", Role.USER)
    other = await auth_app.account("bob", Role.USER)
    admin = await auth_app.account("root", Role.ADMIN)
    mine = await owned_by(auth_app, owner)
    theirs = await owned_by(auth_app, other)

    async def jobs(who: Account, query: str = "") -> set[str]:
        got = await auth_app.client.get(f"/api/v1/jobs{query}", headers=who.headers)
        return {j["job_id"] for j in got.json()["data"]["jobs"]}

    assert await jobs(owner) == {mine.ids["job_id"]}
    assert await jobs(other) == {theirs.ids["job_id"]}
    assert await jobs(admin) == {mine.ids["job_id"], theirs.ids["job_id"]}
    assert await jobs(admin, f"?owner={owner.user_id}") == {mine.ids["job_id"]}
    # A user naming another owner gets their own list, not the other's.
    assert await jobs(other, f"?owner={owner.user_id}") == {theirs.ids["job_id"]}
    keys = await auth_app.client.get(
        f"/api/v1/auth/keys?user_id={owner.user_id}", headers=other.headers
    )
    assert {k["id"] for k in keys.json()["data"]} == {other.key_id}


async def test_predict_refuses_another_owners_upload(auth_app: AuthApp) -> None:
    owner = await auth_app.account("ana", Role.USER)
    other = await auth_app.account("bob", Role.USER)
    mine = await owned_by(auth_app, owner)
    response = await auth_app.client.post(
        "/api/v1/inference/predict", json={"upload_id": mine.ids["upload_id"]},
        headers=other.headers,
    )  # fmt: skip
    assert response.status_code == 404
    assert response.json()["error_code"] == "UPLOAD_NOT_FOUND"
