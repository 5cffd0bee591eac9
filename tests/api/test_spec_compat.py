"""What a client written against the spec relies on: the spec's YOLO lines (and the oriented
form as ``yolo_obb``), normalised coordinates within [0, 1], images an ``<img>`` shows (TIFF
originals as PNG), no annotated link when nothing was drawn, ``error.field`` and
``error.documentation_url`` pointing at an errors page served offline, and typed results in
the OpenAPI document. Jobs run through the real runner with the fake detector."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from nesydet.error_catalogue import JOB_FAILURES, error_catalogue
from tests import contract
from tests.api import test_job_runner
from tests.api.test_download import download_url, fetch_zip
from tests.api.test_job_runner import FAST_CONFIG, Worker
from tests.api.test_jobs import PREDICT
from tests.pipeline_fixtures import paint_blob, rotated_rect

Workers = Callable[..., Worker]
run_settings = test_job_runner.run_settings
workers = test_job_runner.workers

NUMBER = r"-?\d+\.\d{6}"


def edge_scene(fmt: str = "PNG") -> bytes:
    """Return a scene whose first object sits in the top-left corner: the fake detector's
    oriented box around it reaches a little past the image, as real models' do."""
    img = Image.new("RGB", (256, 192), (90, 100, 80))
    paint_blob(img, 0, 0.9, rotated_rect(10, 10, 20, 20, 0.0))
    paint_blob(img, 1, 0.8, rotated_rect(150, 100, 50, 20, 0.5))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


async def run_job(
    client: httpx.AsyncClient,
    workers: Workers,
    files: list[tuple[str, bytes, str]],
    config: dict[str, Any] | None = None,
) -> tuple[str, list[str]]:
    """Return the id of a completed job over ``files``, and the files' ids."""
    upload = await client.post(
        "/api/v1/inference/upload",
        files=[("files", (name, data, mime)) for name, data, mime in files],
    )
    assert upload.status_code == 200, upload.text
    up = upload.json()["data"]
    body = {"upload_id": up["upload_id"], "config": {**FAST_CONFIG, **(config or {})}}
    started = await client.post(PREDICT, json=body)
    assert started.status_code == 202, started.text
    job_id: str = started.json()["data"]["job_id"]
    await asyncio.to_thread(workers().run, job_id)
    status = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()["data"]
    assert status["status"] == "completed", status
    return job_id, [f["file_id"] for f in up["uploaded_files"]]


def coords(text: str, fields: int) -> list[float]:
    """Return every coordinate of YOLO label text whose lines have ``fields`` fields."""
    out: list[float] = []
    for line in text.splitlines():
        parts = line.split()
        assert len(parts) == fields, line
        assert all(re.fullmatch(NUMBER, p) for p in parts[1:]), line
        out += [float(p) for p in parts[1:-1]]
    return out


async def test_yolo_is_the_spec_form_and_yolo_obb_the_oriented_one_both_clipped(
    client: httpx.AsyncClient, workers: Workers
) -> None:
    job_id, [file_id] = await run_job(client, workers, [("edge.png", edge_scene(), "image/png")])
    base = f"/api/v1/jobs/{job_id}"
    polygons = (await client.get(f"{base}/results")).json()["data"]["results"][0]["detections"]
    assert min(x for d in polygons for x, _ in d["polygon"]) < 0  # the box reaches past
    assert all(0 <= v <= 1 for d in polygons for p in d["polygon_normalized"] for v in p)

    yolo = (await client.get(f"{base}/results", params={"format": "yolo"})).json()["data"]
    assert yolo["format"] == "yolo"
    [entry] = yolo["files"]
    upright = coords(entry["label_content"], 6)
    assert len(upright) == 8
    assert all(0 <= v <= 1 for v in upright)
    assert entry["download_url"] == f"{base}/results/{file_id}/labels.txt"
    served = await client.get(entry["download_url"])
    assert served.status_code == 200
    assert served.text == entry["label_content"]

    obb = (await client.get(f"{base}/results", params={"format": "yolo_obb"})).json()["data"]
    assert obb["format"] == "yolo_obb"
    [entry] = obb["files"]
    corners = coords(entry["label_content"], 10)
    assert len(corners) == 16
    assert min(corners) == 0.0  # clipped, not -0.00x
    assert all(0 <= v <= 1 for v in corners)
    assert entry["download_url"] == f"{base}/results/{file_id}/labels.txt?format=yolo_obb"
    assert (await client.get(entry["download_url"])).text == entry["label_content"]


async def test_the_download_keeps_yolo_as_the_spec_form_and_adds_yolo_obb(
    client: httpx.AsyncClient, workers: Workers
) -> None:
    job_id, _ = await run_job(client, workers, [("edge.png", edge_scene(), "image/png")])
    for fmt, fields in (("yolo", 6), ("yolo_obb", 10)):
        archive = await fetch_zip(client, download_url(job_id, format=fmt))
        labels = archive.read(f"{job_id}/labels/edge.txt").decode()
        assert all(0 <= v <= 1 for v in coords(labels, fields))
        served = await client.get(f"/api/v1/jobs/{job_id}/results", params={"format": fmt})
        assert labels == served.json()["data"]["files"][0]["label_content"]
        assert archive.read(f"{job_id}/classes.txt").decode().splitlines()[:2] == [
            "plane",
            "ship",
        ]


async def test_a_tiff_original_is_shown_as_png(client: httpx.AsyncClient, workers: Workers) -> None:
    tiff = edge_scene("TIFF")
    job_id, [file_id] = await run_job(client, workers, [("scene.tif", tiff, "image/tiff")])
    original = await client.get(f"/api/v1/files/{file_id}/original")
    assert original.headers["content-type"] == "image/tiff"
    assert original.content == tiff

    png = await client.get(f"/api/v1/files/{file_id}/original", params={"as": "png"})
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png"
    assert png.headers["content-disposition"] == 'inline; filename="scene.png"'
    shown = Image.open(io.BytesIO(png.content))
    assert (shown.format, shown.size) == ("PNG", (256, 192))
    assert shown.convert("RGB").tobytes() == Image.open(io.BytesIO(tiff)).convert("RGB").tobytes()
    again = await client.get(
        f"/api/v1/files/{file_id}/original?as=png", headers={"If-None-Match": png.headers["etag"]}
    )
    assert again.status_code == 304

    links = (await client.get(f"/api/v1/jobs/{job_id}/visualization")).json()["data"]
    [item] = links["visualizations"]
    assert item["original_url"] == f"/api/v1/files/{file_id}/original?as=png"
    inline = await client.get(f"/api/v1/jobs/{job_id}/visualization", params={"format": "base64"})
    data = inline.json()["data"]
    for key in ("original_image", "annotated_image", "thumbnail_image"):
        assert re.match(r"data:image/(jpeg|png);base64,", data[key]), key
    assert data["original_image"].startswith("data:image/png;base64,")
    raw = base64.b64decode(data["original_image"].split(",", 1)[1])
    assert raw == png.content

    wrong = await client.get(f"/api/v1/files/{file_id}/annotated", params={"as": "png"})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["field"] == "as"


async def test_a_png_original_keeps_its_plain_link(
    client: httpx.AsyncClient, workers: Workers
) -> None:
    job_id, [file_id] = await run_job(client, workers, [("a.png", edge_scene(), "image/png")])
    [item] = (await client.get(f"/api/v1/jobs/{job_id}/visualization")).json()["data"][
        "visualizations"
    ]
    assert item["original_url"] == f"/api/v1/files/{file_id}/original"
    assert item["annotated_url"] == f"/api/v1/files/{file_id}/annotated?job_id={job_id}"


async def test_without_visualization_there_is_no_annotated_link(
    client: httpx.AsyncClient, workers: Workers
) -> None:
    job_id, [file_id] = await run_job(
        client,
        workers,
        [("a.png", edge_scene(), "image/png")],
        config={"visualization": {"enabled": False}},
    )
    data = (await client.get(f"/api/v1/jobs/{job_id}/visualization")).json()["data"]
    [item] = data["visualizations"]
    assert item["annotated_url"] is None
    assert item["thumbnail_url"] == f"/api/v1/files/{file_id}/thumbnail?job_id={job_id}"
    assert (await client.get(item["thumbnail_url"])).status_code == 200
    inline = (
        await client.get(f"/api/v1/jobs/{job_id}/visualization", params={"format": "base64"})
    ).json()["data"]
    assert inline["annotated_image"] is None
    assert inline["thumbnail_image"].startswith("data:image/jpeg;base64,")


async def test_a_validation_error_names_its_field_and_documentation(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        PREDICT, json={"upload_id": "upl_000000000000", "config": {"confidence_threshold": 2}}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_CONFIG"
    assert error["field"] == "config.confidence_threshold"
    assert error["documentation_url"] == "/docs/errors#INVALID_CONFIG"

    missing = (await client.get("/api/v1/jobs/job_000000000000/status")).json()["error"]
    assert missing["field"] is None
    assert missing["documentation_url"] == "/docs/errors#JOB_NOT_FOUND"

    page = await client.get("/docs/errors")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for code in (*error_catalogue(), *JOB_FAILURES):
        assert f'id="{code}"' in page.text, code


async def test_the_errors_page_lists_every_code_with_its_status(
    client: httpx.AsyncClient,
) -> None:
    data = (await client.get("/docs/errors.json")).json()["data"]
    listed = {e["code"]: e["status"] for e in data["errors"]}
    assert listed == {code: status for code, (status, _) in error_catalogue().items()}
    for code in ("VALIDATION_ERROR", "JOB_NOT_FOUND", "RATE_LIMIT_EXCEEDED", "INVALID_FORMAT"):
        assert code in listed
    assert listed["SERVICE_UNAVAILABLE"] == 503
    assert {f["code"] for f in data["job_failures"]} == set(JOB_FAILURES)
    assert all(e["meaning"] for e in data["errors"])


def test_job_failure_codes_are_the_workers() -> None:
    from nesydet.services.processing import failures

    codes = {code for code, _, _ in failures._PIPELINE_FAILURES.values()}
    assert codes | {"STORAGE_ERROR"} == set(JOB_FAILURES)


async def test_results_and_visualizations_are_typed_in_openapi(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for name, members in (
        ("ResultsResponse", {"JsonResults", "YoloResults", "CocoResults", "VocResults"}),
        ("VisualizationResponse", {"VisualizationList", "VisualizationInline"}),
    ):
        data = schemas[name]["properties"]["data"]
        assert {ref["$ref"].rsplit("/", 1)[1] for ref in data["oneOf"]} == members
        assert data["discriminator"]["propertyName"] == "format"
    detection = schemas["DetectionOut"]
    assert detection["properties"]["bbox_normalized"]["$ref"].endswith("/BoxYolo")
    assert schemas["BoxYolo"]["properties"]["center_x"]["maximum"] == 1.0
    error = schemas["ErrorDetail"]["properties"]
    assert {"field", "documentation_url"} <= set(error)
    results = doc["paths"]["/api/v1/jobs/{job_id}/results"]["get"]
    formats = next(p for p in results["parameters"] if p["name"] == "format")
    assert formats["schema"]["enum"] == ["json", "yolo", "yolo_obb", "coco", "voc"]


async def test_the_contract_check_catches_a_response_the_document_does_not_describe(
    client: httpx.AsyncClient,
) -> None:
    app = client.app  # type: ignore[attr-defined]
    request = httpx.Request("GET", "http://testserver/api/v1/jobs/job_000000000000/status")
    bad = b'{"status": "success", "data": {"job_id": 7}}'
    with pytest.raises(contract.ContractViolation, match="data"):
        contract.check(app, request, 200, "application/json", bad)
    with pytest.raises(contract.ContractViolation, match="not documented"):
        contract.check(app, request, 201, "application/json", b"{}")
    envelope = (await client.get("/api/v1/jobs/job_000000000000/status")).content
    contract.check(app, request, 404, "application/json", envelope)
    with pytest.raises(contract.ContractViolation, match="not on the errors page"):
        contract.check(
            app, request, 404, "application/json", envelope.replace(b"JOB_NOT_FOUND", b"NOPE")
        )


async def test_the_contract_check_sees_the_suites_responses(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, int]] = []
    check = contract.check

    def spy(app: Any, request: httpx.Request, status: int, content_type: str, raw: bytes) -> None:
        seen.append((request.url.path, status))
        check(app, request, status, content_type, raw)

    monkeypatch.setattr(contract, "check", spy)
    await client.get("/api/v1/jobs/job_000000000000/results")
    assert seen == [("/api/v1/jobs/job_000000000000/results", 404)]
