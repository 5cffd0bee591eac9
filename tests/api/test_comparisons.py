"""POST /comparisons, GET /comparisons/{id} and its visualization: two completed jobs compared
image by image (results stored as a worker would), owners kept apart."""

from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import update

from nesydet.db.base import utcnow
from nesydet.db.models import Detection as DetectionRow
from nesydet.db.models import Job, JobFile
from nesydet.domain import Role
from nesydet.pipeline.types import Detection
from nesydet.services.results import detection_row
from tests import images
from tests.api.conftest import AuthApp
from tests.api.test_uploads import assert_envelope

COMPARISONS = "/api/v1/comparisons"


def box(name: str, conf: float, x0: float, y0: float, x1: float, y1: float) -> Detection:
    return Detection(0, name, conf, (x0, y0, x1, y1))


# Job A (reasoning off, say) and job B (on) over the same scene.
SCENE_A = [
    box("plane", 0.90, 10, 10, 40, 40),
    box("ship", 0.50, 60, 50, 90, 70),
    box("storage-tank", 0.40, 5, 60, 15, 70),
]
SCENE_B = [
    box("plane", 0.95, 11, 10, 41, 40),
    box("harbor", 0.60, 60, 50, 90, 70),
    box("small-vehicle", 0.45, 70, 5, 80, 15),
]


async def upload(
    client: httpx.AsyncClient, pictures: list[bytes], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    files = [("files", (f"scene{i}.png", raw, "image/png")) for i, raw in enumerate(pictures)]
    response = await client.post("/api/v1/inference/upload", files=files, headers=headers or {})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def job(
    client: httpx.AsyncClient,
    app: Any,
    upload_id: str,
    detections: dict[str, list[Detection]] | None,
    headers: dict[str, str] | None = None,
) -> str:
    """Start a job over the upload; with ``detections`` (per file id), complete it with them."""
    response = await client.post(
        "/api/v1/inference/predict", json={"upload_id": upload_id}, headers=headers or {}
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["data"]["job_id"]
    if detections is None:
        return job_id
    now = utcnow()
    async with app.state.sessionmaker() as session:
        total = 0
        for file_id, dets in detections.items():
            for i, det in enumerate(dets):
                session.add(DetectionRow(job_id=job_id, file_id=file_id, **detection_row(det, i)))
            await session.execute(
                update(JobFile)
                .where(JobFile.job_id == job_id, JobFile.file_id == file_id)
                .values(status="done", detection_count=len(dets), dropped_count=0,
                        width=100, height=80, processed_at=now)
            )  # fmt: skip
            total += len(dets)
        await session.execute(
            update(Job).where(Job.id == job_id).values(
                status="completed", completed_at=now, processed_count=len(detections),
                total_detections=total, processing_time_seconds=1.0,
            )
        )  # fmt: skip
        await session.commit()
    return job_id


def ids(up: dict[str, Any]) -> list[str]:
    return [f["file_id"] for f in up["uploaded_files"]]


async def test_two_runs_over_the_same_files(client: httpx.AsyncClient) -> None:
    app = client.app  # type: ignore[attr-defined]
    up = await upload(client, [images.png(100, 80), images.png(120, 80)])
    first, second = ids(up)
    job_a = await job(client, app, up["upload_id"], {first: SCENE_A, second: []})
    job_b = await job(client, app, up["upload_id"], {first: SCENE_B, second: [SCENE_A[0]]})

    made = await client.post(COMPARISONS, json={"job_a": job_a, "job_b": job_b})
    assert made.status_code == 201, made.text
    data = made.json()["data"]
    assert data["comparison_id"].startswith("cmp_")
    assert (data["job_a"], data["job_b"], data["iou_threshold"]) == (job_a, job_b, 0.5)
    [image, other] = data["images"]
    assert (image["file_id_a"], image["file_id_b"], image["paired_by"]) == (first, first, "file")
    assert image["counts"] == {
        "a": 3, "b": 3, "matched": 1, "class_changes": 1, "only_in_a": 1, "only_in_b": 1,
    }  # fmt: skip
    [pair] = image["matched"]
    assert (pair["a"]["class_name"], pair["b"]["class_name"]) == ("plane", "plane")
    assert pair["confidence_delta"] == 0.05
    assert 0.9 < pair["iou"] < 1.0
    [change] = image["class_changes"]
    assert (change["a"]["class_name"], change["b"]["class_name"]) == ("ship", "harbor")
    assert [d["class_name"] for d in image["only_in_a"]] == ["storage-tank"]
    assert [d["class_name"] for d in image["only_in_b"]] == ["small-vehicle"]
    assert [d["class_name"] for d in other["only_in_b"]] == ["plane"]
    summary = data["summary"]
    assert (summary["images"], summary["detections_a"], summary["detections_b"]) == (2, 3, 4)
    rows = {r["class_name"]: r for r in summary["per_class"]}
    assert (rows["plane"]["precision"], rows["plane"]["recall"]) == (0.5, 1.0)
    assert (rows["ship"]["recall"], rows["ship"]["precision"]) == (0.0, None)
    assert rows["ship"]["class_changed_from"] == 1
    assert rows["harbor"]["class_changed_to"] == 1
    assert data["unpaired_files"] == {"only_in_a": [], "only_in_b": []}

    read = await client.get(data["comparison_url"])
    assert read.status_code == 200
    assert read.json()["data"] == data
    assert read.json()["message"] is None
    one = await client.get(f"{data['comparison_url']}?file_id={second}")
    assert [i["file_id_a"] for i in one.json()["data"]["images"]] == [second]

    for layout in ("side_by_side", "overlay"):
        drawn = await client.get(f"{image['visualization_url']}&layout={layout}")
        assert drawn.status_code == 200, drawn.text
        assert drawn.headers["content-type"] == "image/jpeg"
        picture = Image.open(io.BytesIO(drawn.content))
        assert picture.width == (100 if layout == "overlay" else 204)
        assert picture.height > 80  # the legend

    several = await client.get(f"{data['comparison_url']}/visualization")
    assert several.status_code == 400
    assert_envelope(several.json(), "VALIDATION_ERROR")
    stranger = await client.get(f"{data['comparison_url']}/visualization?file_id=img_0123456789ab")
    assert stranger.status_code == 404
    assert_envelope(stranger.json(), "FILE_NOT_FOUND")


async def test_uploads_of_the_same_bytes_are_paired_by_sha256(client: httpx.AsyncClient) -> None:
    app = client.app  # type: ignore[attr-defined]
    up_a = await upload(client, [images.png(100, 80), images.png(64, 64)])
    up_b = await upload(client, [images.png(100, 80), images.png(96, 64)])
    a_same, a_alone = ids(up_a)
    b_same, b_alone = ids(up_b)
    job_a = await job(client, app, up_a["upload_id"], {a_same: SCENE_A, a_alone: []})
    job_b = await job(client, app, up_b["upload_id"], {b_same: SCENE_A, b_alone: []})
    made = await client.post(
        COMPARISONS, json={"job_a": job_a, "job_b": job_b, "iou_threshold": 0.7}
    )
    assert made.status_code == 201, made.text
    data = made.json()["data"]
    [image] = data["images"]
    assert (image["file_id_a"], image["file_id_b"], image["paired_by"]) == (
        a_same,
        b_same,
        "sha256",
    )
    assert image["counts"]["matched"] == 3
    assert data["summary"]["precision"] == data["summary"]["recall"] == 1.0
    assert data["summary"]["mean_confidence_delta"] == 0.0
    assert data["unpaired_files"] == {"only_in_a": [a_alone], "only_in_b": [b_alone]}
    # With one image, file_id may be left out; B's id of it works as well as A's.
    assert (await client.get(f"{data['comparison_url']}/visualization")).status_code == 200
    by_b = await client.get(f"{data['comparison_url']}/visualization?file_id={b_same}")
    assert by_b.status_code == 200


async def test_refusals(client: httpx.AsyncClient) -> None:
    app = client.app  # type: ignore[attr-defined]
    up = await upload(client, [images.png(100, 80)])
    [file_id] = ids(up)
    done = await job(client, app, up["upload_id"], {file_id: SCENE_A})
    queued = await job(client, app, up["upload_id"], None)

    pending = await client.post(COMPARISONS, json={"job_a": done, "job_b": queued})
    assert pending.status_code == 409
    body = pending.json()
    assert_envelope(body, "JOB_NOT_COMPLETED")
    assert body["details"] == f"job_b: job {queued} is queued"

    unknown = await client.post(COMPARISONS, json={"job_a": "job_0123456789ab", "job_b": done})
    assert unknown.status_code == 404
    assert_envelope(unknown.json(), "JOB_NOT_FOUND")

    for bad in (
        {"job_a": done, "job_b": done, "iou_threshold": 1.5},
        {"job_a": done, "job_b": "../etc"},
        {"job_a": done},
        {"job_a": done, "job_b": done, "extra": 1},
    ):
        refused = await client.post(COMPARISONS, json=bad)
        assert refused.status_code == 400, bad
        assert_envelope(refused.json(), "VALIDATION_ERROR")

    for path in (f"{COMPARISONS}/cmp_0123456789ab", f"{COMPARISONS}/nonsense/visualization"):
        missing = await client.get(path)
        assert missing.status_code == 404
        assert_envelope(missing.json(), "COMPARISON_NOT_FOUND")


async def test_owners_are_kept_apart_and_a_deleted_job_takes_its_comparisons(
    auth_app: AuthApp,
) -> None:
    client, app = auth_app.client, auth_app.app
    ana = await auth_app.account("ana")
    bob = await auth_app.account("bob")
    admin = await auth_app.account("root", Role.ADMIN)
    up = await upload(client, [images.png(100, 80)], ana.headers)
    [file_id] = ids(up)
    job_a = await job(client, app, up["upload_id"], {file_id: SCENE_A}, ana.headers)
    job_b = await job(client, app, up["upload_id"], {file_id: SCENE_B}, ana.headers)
    body = {"job_a": job_a, "job_b": job_b}

    theirs = await client.post(COMPARISONS, json=body, headers=bob.headers)
    assert theirs.status_code == 404
    assert_envelope(theirs.json(), "JOB_NOT_FOUND")
    assert (await client.post(COMPARISONS, json=body)).status_code == 401

    made = await client.post(COMPARISONS, json=body, headers=ana.headers)
    assert made.status_code == 201, made.text
    url = made.json()["data"]["comparison_url"]
    for path in (url, f"{url}/visualization"):
        assert (await client.get(path, headers=ana.headers)).status_code == 200
        assert (await client.get(path, headers=admin.headers)).status_code == 200
        hidden = await client.get(path, headers=bob.headers)
        assert hidden.status_code == 404
        assert_envelope(hidden.json(), "COMPARISON_NOT_FOUND")

    deleted = await client.delete(f"/api/v1/jobs/{job_b}", headers=ana.headers)
    assert deleted.status_code == 204
    assert (await client.get(url, headers=ana.headers)).status_code == 404
