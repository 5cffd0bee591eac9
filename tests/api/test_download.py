"""GET /api/v1/jobs/{job_id}/download: a completed job as one streamed ZIP, on SQLite and
PostgreSQL. Jobs run through the real runner with the fake detector (the model boundary)."""

from __future__ import annotations

import asyncio
import io
import json
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pycocotools.coco import COCO

from nesydet.config import Settings
from nesydet.domain import Role
from nesydet.pipeline.export import parse_yolo
from tests.api import test_job_runner
from tests.api.conftest import AuthApp
from tests.api.test_batch import FAST_CONFIG, make_zip, submit
from tests.api.test_job_runner import Worker, new_job, scene, upload_scenes
from tests.api.test_uploads import assert_envelope

Workers = Callable[..., Worker]
# The job runner's fixtures: a worker thread with the fake detector, as its tests use it.
run_settings = test_job_runner.run_settings
workers = test_job_runner.workers


def download_url(job_id: str, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/api/v1/jobs/{job_id}/download" + (f"?{params}" if params else "")


async def fetch_zip(client: httpx.AsyncClient, url: str, **kwargs: Any) -> zipfile.ZipFile:
    response = await client.get(url, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert "content-length" not in response.headers  # built while it is sent
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    return archive


async def completed_job(client: httpx.AsyncClient, workers: Workers, count: int = 3) -> str:
    up = await upload_scenes(client, count)
    job_id = await new_job(client, up["upload_id"])
    await asyncio.to_thread(workers().run, job_id)
    status = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()["data"]
    assert status["status"] == "completed", status
    return job_id


def manifest(archive: zipfile.ZipFile, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(archive.read(f"{job_id}/manifest.json"))
    return data


async def test_the_default_archive_holds_json_labels_results_and_a_manifest(
    client: httpx.AsyncClient, workers: Workers
) -> None:
    job_id = await completed_job(client, workers)
    archive = await fetch_zip(client, download_url(job_id))
    root = job_id
    assert sorted(archive.namelist()) == [
        f"{root}/labels/scene0.json",
        f"{root}/labels/scene1.json",
        f"{root}/labels/scene2.json",
        f"{root}/manifest.json",
        f"{root}/results.json",
    ]
    served = (await client.get(f"/api/v1/jobs/{job_id}/results?format=json")).json()["data"]
    assert json.loads(archive.read(f"{root}/results.json")) == served
    one = json.loads(archive.read(f"{root}/labels/scene1.json"))
    assert one == served["results"][1]
    assert one["detection_count"] == 2
    info = manifest(archive, job_id)
    assert info["job_id"] == job_id
    assert (info["format"], info["include"], info["document"]) == (
        "json",
        ["labels"],
        "results.json",
    )
    assert info["file_count"] == 3
    assert info["summary"]["total_detections"] == 6
    assert [f["labels"] for f in info["files"]] == [f"labels/scene{n}.json" for n in range(3)]
    assert [f["detection_count"] for f in info["files"]] == [1, 2, 3]


async def test_yolo_with_every_part(client: httpx.AsyncClient, workers: Workers) -> None:
    job_id = await completed_job(client, workers)
    archive = await fetch_zip(
        client,
        download_url(job_id, format="yolo", include="labels,annotated,originals,thumbnails"),
    )
    info = manifest(archive, job_id)
    classes = archive.read(f"{job_id}/classes.txt").decode().splitlines()
    assert classes[:3] == ["plane", "ship", "storage_tank"]
    for n, item in enumerate(info["files"]):
        file_id = item["file_id"]
        assert item == {
            "file_id": file_id,
            "filename": f"scene{n}.png",
            "name": f"scene{n}",
            "dimensions": [256, 256],
            "detection_count": n + 1,
            "labels": f"labels/scene{n}.txt",
            "annotated": f"annotated/scene{n}.jpg",
            "thumbnail": f"thumbnails/scene{n}.jpg",
            "original": f"originals/scene{n}.png",
        }
        labels = archive.read(f"{job_id}/{item['labels']}").decode()
        served = await client.get(f"/api/v1/jobs/{job_id}/results/{file_id}/labels.txt")
        assert labels == served.text
        assert len(parse_yolo(labels)) == n + 1
        assert archive.read(f"{job_id}/{item['original']}") == scene(n)
        for kind, key in (("annotated", "annotated"), ("thumbnail", "thumbnail")):
            image = await client.get(f"/api/v1/files/{file_id}/{kind}?job_id={job_id}")
            assert archive.read(f"{job_id}/{item[key]}") == image.content
    # Images are stored as they are, text is compressed.
    kinds = {i.filename.split("/")[1]: i.compress_type for i in archive.infolist()}
    assert kinds["originals"] == kinds["annotated"] == zipfile.ZIP_STORED
    assert kinds["labels"] == zipfile.ZIP_DEFLATED


async def test_coco_is_one_document_pycocotools_loads(
    client: httpx.AsyncClient, workers: Workers, tmp_path: Any
) -> None:
    job_id = await completed_job(client, workers)
    archive = await fetch_zip(client, download_url(job_id, format="coco", include="labels"))
    assert sorted(archive.namelist()) == [f"{job_id}/coco.json", f"{job_id}/manifest.json"]
    path = tmp_path / "coco.json"
    path.write_bytes(archive.read(f"{job_id}/coco.json"))
    coco = COCO(str(path))
    assert len(coco.getAnnIds()) == 6
    assert [img["file_name"] for img in coco.loadImgs(coco.getImgIds())] == [
        "scene0.png",
        "scene1.png",
        "scene2.png",
    ]
    served = (await client.get(f"/api/v1/jobs/{job_id}/results?format=coco")).json()["data"]
    document = json.loads(path.read_text())
    assert document["annotations"] == served["coco"]["annotations"]
    assert document["categories"] == served["coco"]["categories"]


async def test_voc_labels_per_image(client: httpx.AsyncClient, workers: Workers) -> None:
    job_id = await completed_job(client, workers)
    archive = await fetch_zip(client, download_url(job_id, format="voc"))
    root = ET.fromstring(archive.read(f"{job_id}/labels/scene2.xml"))  # noqa: S314  (ours)
    assert root.findtext("filename") == "scene2.png"
    assert len(root.findall("object")) == 3
    assert manifest(archive, job_id)["document"] is None


async def test_an_empty_include_gives_the_document_and_the_manifest_only(
    client: httpx.AsyncClient, workers: Workers
) -> None:
    job_id = await completed_job(client, workers, count=1)
    archive = await fetch_zip(client, download_url(job_id, format="yolo", include=""))
    assert sorted(archive.namelist()) == [f"{job_id}/classes.txt", f"{job_id}/manifest.json"]


async def test_a_batch_keeps_its_folders_and_shared_names_get_the_file_id(
    client: httpx.AsyncClient, workers: Workers
) -> None:
    data = make_zip(
        [
            ("site_a/one.png", scene(0)),
            ("site_a/two.png", scene(1)),
            ("site_b/one.png", scene(2)),
            ("site_b/ONE.jpg", scene(0)),
        ]
    )
    made = await submit(client, data, config=FAST_CONFIG)
    assert made.status_code == 202, made.text
    job_id = made.json()["data"]["job_id"]
    ids = {f["filename"]: f["file_id"] for f in made.json()["data"]["upload"]["uploaded_files"]}
    await asyncio.to_thread(workers().run, job_id)
    archive = await fetch_zip(client, download_url(job_id, include="originals"))
    names = sorted(n.removeprefix(f"{job_id}/") for n in archive.namelist())
    assert names == sorted(
        [
            f"originals/site_b/ONE_{ids['site_b/ONE.jpg']}.jpg",
            "originals/site_a/one.png",
            "originals/site_a/two.png",
            f"originals/site_b/one_{ids['site_b/one.png']}.png",
            "manifest.json",
            "results.json",
        ]
    )


async def test_a_missing_stored_image_is_left_out_and_marked(
    client: httpx.AsyncClient, workers: Workers, settings: Settings
) -> None:
    job_id = await completed_job(client, workers, count=2)
    for path in (settings.storage_root / "results" / job_id).rglob("thumbnail.jpg"):
        path.unlink()
        break
    archive = await fetch_zip(client, download_url(job_id, include="thumbnails"))
    thumbs = [f["thumbnail"] for f in manifest(archive, job_id)["files"]]
    assert thumbs.count(None) == 1
    assert [n for n in archive.namelist() if "/thumbnails/" in n] == [
        f"{job_id}/{t}" for t in thumbs if t
    ]


@pytest.mark.parametrize("include", ["bogus", "labels,everything", "x" * 300])
async def test_an_unknown_part_is_refused(
    client: httpx.AsyncClient, workers: Workers, include: str
) -> None:
    job_id = await completed_job(client, workers, count=1)
    response = await client.get(download_url(job_id, include=include))
    assert response.status_code == 400
    assert_envelope(response.json(), "VALIDATION_ERROR")


async def test_unknown_or_unfinished_jobs(client: httpx.AsyncClient) -> None:
    unknown = await client.get(download_url("job_000000000000"))
    assert unknown.status_code == 404
    assert_envelope(unknown.json(), "JOB_NOT_FOUND")
    malformed = await client.get("/api/v1/jobs/job_../download")
    assert malformed.status_code == 404
    up = await upload_scenes(client, 1)
    job_id = await new_job(client, up["upload_id"])
    queued = await client.get(download_url(job_id))
    assert queued.status_code == 404
    assert_envelope(queued.json(), "RESULTS_NOT_READY")
    bad_format = await client.get(download_url(job_id, format="xml"))
    assert bad_format.status_code == 400


async def test_another_owners_job_is_not_found(auth_app: AuthApp, workers: Workers) -> None:
    ana = await auth_app.account("ana")
    ben = await auth_app.account("ben")
    admin = await auth_app.account("root", Role.ADMIN)
    made = await submit(
        auth_app.client,
        make_zip([("a.png", scene(0))]),
        config=FAST_CONFIG,
        headers=ana.headers,
    )
    job_id = made.json()["data"]["job_id"]
    theirs = await auth_app.client.get(download_url(job_id), headers=ben.headers)
    assert theirs.status_code == 404
    assert_envelope(theirs.json(), "JOB_NOT_FOUND")
    anonymous = await auth_app.client.get(download_url(job_id))
    assert anonymous.status_code == 401
    await asyncio.to_thread(workers().run, job_id)
    for account in (ana, admin):
        mine = await fetch_zip(auth_app.client, download_url(job_id), headers=account.headers)
        assert f"{job_id}/labels/a.json" in mine.namelist()
    theirs = await auth_app.client.get(download_url(job_id), headers=ben.headers)
    assert theirs.status_code == 404
