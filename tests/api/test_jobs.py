"""POST /inference/predict, job status, list, cancel, events, and results before completion.

No worker runs here: jobs stay queued (the end-to-end tests run real workers).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import select

from nesydet.api.routers.files import content_disposition
from nesydet.config import Settings
from nesydet.db.models import Job, JobFile
from nesydet.services.dispatch import Dispatcher
from tests import images
from tests.api.test_uploads import assert_envelope
from tests.streaming_asgi import StreamingASGITransport

PREDICT = "/api/v1/inference/predict"
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


async def upload(client: httpx.AsyncClient, count: int = 2) -> dict[str, Any]:
    files = [("files", (f"image{i}.png", images.png(128, 96), "image/png")) for i in range(count)]
    response = await client.post("/api/v1/inference/upload", files=files)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def job_row(client: httpx.AsyncClient, job_id: str) -> Job:
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        job = await session.get(Job, job_id)
        assert job is not None
        return job


def queued_messages(settings: Settings) -> list[dict[str, Any]]:
    folder = settings.broker_dir / "queue"
    return (
        [json.loads(p.read_text()) for p in sorted(folder.glob("*.msg"))] if folder.exists() else []
    )


async def test_predict_defaults_to_every_file(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    up = await upload(client, 3)
    response = await client.post(PREDICT, json={"upload_id": up["upload_id"]})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "accepted"
    assert body["message"] == "Inference job created"
    data = body["data"]
    assert re.fullmatch(r"job_[0-9a-f]{12}", data["job_id"])
    assert data["status"] == "queued"
    assert re.fullmatch(ISO, data["created_at"])
    assert re.fullmatch(ISO, data["estimated_completion"])
    assert data["estimated_completion"] > data["created_at"]
    assert data["file_count"] == 3
    assert data["status_url"] == f"/api/v1/jobs/{data['job_id']}/status"
    config = data["config"]
    assert config == {
        "model_path": "nesydet-demo-obb.pt",
        "model": None,
        "confidence_threshold": 0.25,
        "iou_threshold": 0.45,
        "class_agnostic_nms": False,
        "sahi": {"enabled": True, "slice_width": 640, "slice_height": 640, "overlap_ratio": 0.2},
        "symbolic_reasoning": {"enabled": True, "rules_file": "dota.pl", "rules": None},
        "visualization": {
            "enabled": True,
            "show_labels": True,
            "confidence_display": True,
            "show_suppressed": False,
        },
    }
    row = await job_row(client, data["job_id"])
    assert row.sent_at is not None
    [message] = queued_messages(settings)
    assert message["headers"]["task"] == "nesydet.run_inference"
    assert json.loads(base64.b64decode(message["body"]))[0] == [data["job_id"]]
    assert message["headers"]["timelimit"][0] == settings.job_time_limit_s(3)


async def test_predict_with_some_files_keeps_their_order(client: httpx.AsyncClient) -> None:
    up = await upload(client, 3)
    ids = [f["file_id"] for f in up["uploaded_files"]]
    response = await client.post(
        PREDICT, json={"upload_id": up["upload_id"], "file_ids": [ids[2], ids[0]]}
    )
    assert response.status_code == 202
    job_id = response.json()["data"]["job_id"]
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        rows = (
            await session.execute(
                select(JobFile).where(JobFile.job_id == job_id).order_by(JobFile.position)
            )
        ).scalars()
        assert [r.file_id for r in rows] == [ids[2], ids[0]]


async def test_the_row_is_committed_before_the_task_is_sent(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []
    original = Dispatcher.publish
    url = settings.database_url

    def spy(
        self: Dispatcher, job_id: str, image_count: int, countdown: float | None = None
    ) -> None:
        async def read() -> str | None:
            from nesydet.db.session import create_engine

            engine = create_engine(url, null_pool=True)
            async with engine.connect() as conn:
                status = (await conn.execute(select(Job.status).where(Job.id == job_id))).scalar()
            await engine.dispose()
            return status

        seen.append(asyncio.run(read()))  # another connection: sees only committed rows
        original(self, job_id, image_count, countdown)

    monkeypatch.setattr(Dispatcher, "publish", spy)
    up = await upload(client, 1)
    response = await client.post(PREDICT, json={"upload_id": up["upload_id"]})
    assert response.status_code == 202
    assert seen == ["queued"]


async def test_unknown_upload_is_404(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.post(PREDICT, json={"upload_id": "upl_000000000000"})
    assert response.status_code == 404
    assert_envelope(response.json(), "UPLOAD_NOT_FOUND")
    assert queued_messages(settings) == []


async def test_file_ids_from_another_upload_are_refused(client: httpx.AsyncClient) -> None:
    first = await upload(client, 1)
    second = await upload(client, 1)
    foreign = second["uploaded_files"][0]["file_id"]
    own = first["uploaded_files"][0]["file_id"]
    response = await client.post(
        PREDICT, json={"upload_id": first["upload_id"], "file_ids": [own, foreign, "img_nope"]}
    )
    assert response.status_code == 400
    body = response.json()
    assert_envelope(body, "INVALID_FILE_IDS")
    assert [e["field"] for e in body["errors"]] == ["file_ids[1]", "file_ids[2]"]
    assert {e["error_code"] for e in body["errors"]} == {"FILE_NOT_IN_UPLOAD"}


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        (
            {"confidence_threshold": 1.5},
            "config.confidence_threshold",
            "Must be between 0.0 and 1.0",
        ),
        (
            {"confidence_threshold": -0.1},
            "config.confidence_threshold",
            "Must be between 0.0 and 1.0",
        ),
        ({"iou_threshold": 2}, "config.iou_threshold", "Must be between 0.0 and 1.0"),
        ({"sahi": {"slice_width": 255}}, "config.sahi.slice_width", "Must be between 256 and 2048"),
        (
            {"sahi": {"slice_height": 2049}},
            "config.sahi.slice_height",
            "Must be between 256 and 2048",
        ),
        (
            {"sahi": {"overlap_ratio": 0.6}},
            "config.sahi.overlap_ratio",
            "Must be between 0.0 and 0.5",
        ),
        ({"confidence_threshold": "high"}, "config.confidence_threshold", "valid number"),
        (
            {"confidence_treshold": 0.3},
            "config.confidence_treshold",
            "Extra inputs are not permitted",
        ),
        ({"sahi": {"enable": False}}, "config.sahi.enable", "Extra inputs are not permitted"),
    ],
)
async def test_invalid_config_names_the_field(
    client: httpx.AsyncClient, settings: Settings, config: dict[str, Any], field: str, message: str
) -> None:
    up = await upload(client, 1)
    response = await client.post(PREDICT, json={"upload_id": up["upload_id"], "config": config})
    assert response.status_code == 400
    body = response.json()
    assert_envelope(body, "INVALID_CONFIG")
    assert body["message"] == "Invalid configuration"
    [item] = body["errors"]
    assert item["field"] == field
    assert message in item["error"]
    assert queued_messages(settings) == []


async def test_several_config_errors_are_all_listed(client: httpx.AsyncClient) -> None:
    up = await upload(client, 1)
    config = {"confidence_threshold": 3, "iou_threshold": -1, "sahi": {"overlap_ratio": 0.9}}
    response = await client.post(PREDICT, json={"upload_id": up["upload_id"], "config": config})
    fields = sorted(e["field"] for e in response.json()["errors"])
    assert fields == [
        "config.confidence_threshold",
        "config.iou_threshold",
        "config.sahi.overlap_ratio",
    ]


@pytest.mark.parametrize(
    ("config", "field", "code"),
    [
        ({"model_path": "/etc/passwd.pt"}, "config.model_path", "MODEL_NOT_FOUND"),
        ({"model_path": "../models/nesydet-demo-obb.pt"}, "config.model_path", "MODEL_NOT_FOUND"),
        ({"model_path": "missing.pt"}, "config.model_path", "MODEL_NOT_FOUND"),
        (
            {"symbolic_reasoning": {"rules_file": "/etc/hosts"}},
            "config.symbolic_reasoning.rules_file",
            "RULES_NOT_FOUND",
        ),
        (
            {"symbolic_reasoning": {"rules_file": "nope.pl"}},
            "config.symbolic_reasoning.rules_file",
            "RULES_NOT_FOUND",
        ),
    ],
)
async def test_model_and_rules_must_be_in_their_directories(
    client: httpx.AsyncClient, config: dict[str, Any], field: str, code: str
) -> None:
    up = await upload(client, 1)
    response = await client.post(PREDICT, json={"upload_id": up["upload_id"], "config": config})
    assert response.status_code == 400, response.text
    body = response.json()
    assert_envelope(body, "INVALID_CONFIG")
    [item] = body["errors"]
    assert (item["field"], item["error_code"]) == (field, code)
    assert "nesydet-demo-obb.pt" in item["error"] or "dota.pl" in item["error"]


async def test_absolute_model_path_inside_the_models_dir_is_accepted(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    up = await upload(client, 1)
    path = str((settings.models_dir / "other.pt").resolve())
    response = await client.post(
        PREDICT, json={"upload_id": up["upload_id"], "config": {"model_path": path}}
    )
    assert response.status_code == 202, response.text
    row = await job_row(client, response.json()["data"]["job_id"])
    assert row.model_name == "other"


async def test_rules_are_not_checked_when_reasoning_is_off(client: httpx.AsyncClient) -> None:
    up = await upload(client, 1)
    config = {"symbolic_reasoning": {"enabled": False, "rules_file": "absent.pl"}}
    response = await client.post(PREDICT, json={"upload_id": up["upload_id"], "config": config})
    assert response.status_code == 202


async def test_malformed_json_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        PREDICT, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert_envelope(response.json(), "VALIDATION_ERROR")
    missing = await client.post(PREDICT, json={})
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "upload_id"


async def test_queued_status_has_the_spec_shape(client: httpx.AsyncClient) -> None:
    up = await upload(client, 2)
    job_id = (await client.post(PREDICT, json={"upload_id": up["upload_id"]})).json()["data"][
        "job_id"
    ]
    response = await client.get(f"/api/v1/jobs/{job_id}/status")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    data = body["data"]
    spec = {"job_id", "status", "upload_id", "created_at", "updated_at", "progress"}
    assert set(data) == spec | {"model", "rules"}  # the extension: what the job runs
    assert data["model"]["name"] == "nesydet-demo-obb"
    assert data["model"]["sha256"] == hashlib.sha256(b"placeholder").hexdigest()
    assert data["model"]["version"] is None  # a file, not registered
    assert data["rules"]["name"] == "dota"
    assert data["status"] == "queued"
    assert data["progress"]["total_images"] == 2
    assert data["progress"]["processed_images"] == 0
    assert data["progress"]["percentage"] == 0
    assert re.fullmatch(ISO, data["created_at"])
    assert re.fullmatch(ISO, data["updated_at"])


async def test_unknown_job_is_404_everywhere(client: httpx.AsyncClient) -> None:
    for path in (
        "status",
        "results",
        "visualization",
        "events",
        "results/img_000000000000/labels.txt",
    ):
        response = await client.get(f"/api/v1/jobs/job_000000000000/{path}")
        assert response.status_code == 404, path
        assert_envelope(response.json(), "JOB_NOT_FOUND")
    response = await client.post("/api/v1/jobs/job_000000000000/cancel")
    assert_envelope(response.json(), "JOB_NOT_FOUND")


async def test_results_are_not_ready_before_completion(client: httpx.AsyncClient) -> None:
    up = await upload(client, 1)
    job_id = (await client.post(PREDICT, json={"upload_id": up["upload_id"]})).json()["data"][
        "job_id"
    ]
    file_id = up["uploaded_files"][0]["file_id"]
    for path in (
        f"/api/v1/jobs/{job_id}/results",
        f"/api/v1/jobs/{job_id}/results?format=yolo",
        f"/api/v1/jobs/{job_id}/visualization",
        f"/api/v1/jobs/{job_id}/results/{file_id}/labels.txt",
        f"/api/v1/files/{file_id}/annotated",
        f"/api/v1/files/{file_id}/thumbnail?job_id={job_id}",
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        body = response.json()
        assert_envelope(body, "RESULTS_NOT_READY")
    details = (await client.get(f"/api/v1/jobs/{job_id}/results")).json()["details"]
    assert details == "Job is still queued"


async def test_bad_result_format_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/jobs/job_000000000000/results", params={"format": "xml"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "format"


async def test_cancel_a_queued_job(client: httpx.AsyncClient) -> None:
    up = await upload(client, 1)
    job_id = (await client.post(PREDICT, json={"upload_id": up["upload_id"]})).json()["data"][
        "job_id"
    ]
    response = await client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["status"] == "cancelled"
    assert re.fullmatch(ISO, data["cancelled_at"])
    again = await client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 200
    assert again.json()["data"]["status"] == "cancelled"
    status = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()["data"]
    assert status["status"] == "cancelled"
    results = await client.get(f"/api/v1/jobs/{job_id}/results")
    assert results.json()["details"] == "Job was cancelled"


async def test_a_finished_job_cannot_be_cancelled(client: httpx.AsyncClient) -> None:
    up = await upload(client, 1)
    job_id = (await client.post(PREDICT, json={"upload_id": up["upload_id"]})).json()["data"][
        "job_id"
    ]
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        job = await session.get(Job, job_id)
        assert job is not None
        job.status = "completed"
        await session.commit()
    response = await client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 409
    assert_envelope(response.json(), "JOB_NOT_CANCELLABLE")


async def test_list_jobs_newest_first_with_cursor(client: httpx.AsyncClient) -> None:
    up = await upload(client, 1)
    ids = []
    for _ in range(5):
        ids.append(
            (await client.post(PREDICT, json={"upload_id": up["upload_id"]})).json()["data"][
                "job_id"
            ]
        )
    await client.post(f"/api/v1/jobs/{ids[1]}/cancel")
    page1 = (await client.get("/api/v1/jobs", params={"limit": 2})).json()["data"]
    assert [j["job_id"] for j in page1["jobs"]] == [ids[4], ids[3]]
    page2 = (
        await client.get("/api/v1/jobs", params={"limit": 2, "cursor": page1["next_cursor"]})
    ).json()["data"]
    assert [j["job_id"] for j in page2["jobs"]] == [ids[2], ids[1]]
    page3 = (
        await client.get("/api/v1/jobs", params={"limit": 2, "cursor": page2["next_cursor"]})
    ).json()["data"]
    assert [j["job_id"] for j in page3["jobs"]] == [ids[0]]
    assert page3["next_cursor"] is None
    cancelled = (await client.get("/api/v1/jobs", params={"status": "cancelled"})).json()["data"][
        "jobs"
    ]
    assert [j["job_id"] for j in cancelled] == [ids[1]]
    item = page1["jobs"][0]
    assert set(item) == {
        "job_id",
        "status",
        "upload_id",
        "file_count",
        "processed_images",
        "created_at",
        "updated_at",
        "status_url",
    }


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "garbage!!"},
        # A well-formed cursor whose time has no zone: "2026-01-01T00:00:00|job_x".
        {"cursor": "MjAyNi0wMS0wMVQwMDowMDowMHxqb2JfeA"},
        {"limit": 0},
        {"limit": 101},
        {"status": "done"},
    ],
)
async def test_list_jobs_rejects_bad_parameters(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    response = await client.get("/api/v1/jobs", params=params)
    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"


async def test_events_stream_ends_at_a_final_state(client: httpx.AsyncClient) -> None:
    up = await upload(client, 1)
    job_id = (await client.post(PREDICT, json={"upload_id": up["upload_id"]})).json()["data"][
        "job_id"
    ]
    events: list[dict[str, Any]] = []
    transport = StreamingASGITransport(client.app)  # type: ignore[attr-defined]
    async with (
        asyncio.timeout(60),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as sse,
        sse.stream("GET", f"/api/v1/jobs/{job_id}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            events.append(json.loads(line[6:]))
            if len(events) == 1:
                # The stream told the job is queued; cancelling it must end the stream.
                cancelled = await client.post(f"/api/v1/jobs/{job_id}/cancel")
                assert cancelled.status_code == 200
    assert [e["status"] for e in events] == ["queued", "cancelled"]
    assert all(e["job_id"] == job_id for e in events)


async def test_original_file_with_etag_and_304(client: httpx.AsyncClient) -> None:
    data = images.png(100, 80)
    response = await client.post(
        "/api/v1/inference/upload", files=[("files", ("a.png", data, "image/png"))]
    )
    file_id = response.json()["data"]["uploaded_files"][0]["file_id"]
    original = await client.get(f"/api/v1/files/{file_id}/original")
    assert original.status_code == 200
    assert original.content == data
    assert original.headers["content-type"] == "image/png"
    assert original.headers["cache-control"] == "public, max-age=31536000, immutable"
    etag = original.headers["etag"]
    cached = await client.get(f"/api/v1/files/{file_id}/original", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    missing = await client.get("/api/v1/files/img_000000000000/original")
    assert missing.status_code == 404
    assert_envelope(missing.json(), "FILE_NOT_FOUND")
    assert original.headers["content-disposition"] == 'attachment; filename="a.png"'
    assert original.headers["x-content-type-options"] == "nosniff"
    bad_kind = await client.get(f"/api/v1/files/{file_id}/raw")
    assert bad_kind.status_code == 400


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("a.png", 'inline; filename="a.png"'),
        ("港口 côte.png", "inline; filename*=utf-8''%E6%B8%AF%E5%8F%A3%20c%C3%B4te.png"),
    ],
)
def test_content_disposition_is_latin_1(name: str, header: str) -> None:
    # Header values go out as Latin-1: a name outside it must not make a download fail.
    assert content_disposition(name, attachment=False) == header
    assert content_disposition(name, attachment=True) == header.replace("inline", "attachment")
    header.encode("latin-1")
    # Either form gives the client the name back whole.
    value = header.removeprefix("inline; ")
    plain = value.removeprefix('filename="').removesuffix('"')
    encoded = value.removeprefix("filename*=utf-8''")
    assert (plain if encoded == value else unquote(encoded)) == name
