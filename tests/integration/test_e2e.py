"""Workflow 1 end to end: real API server, real Celery worker processes, the demo model.

Each scenario runs on the embedded default (SQLite, filesystem broker) and on the production
set-up (PostgreSQL, Redis broker and status cache).
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from nesydet.config import Settings
from nesydet.services.dispatch import Dispatcher
from nesydet.tasks.celery_app import make_celery
from tests import spec_examples as spec
from tests.conftest import _asyncpg_url, _pg_admin
from tests.integration.prom import (
    REPO,
    ApiServer,
    Process,
    nesydet_command,
    spawn,
    start_api_server,
    wait_until,
)
from tests.redis_server import RedisServer

sys.path.insert(0, str(REPO / "scripts"))
from demo_scenes import generate_scene

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FAST = {
    "NESYDET_SWEEPER_INTERVAL_S": "1",
    "NESYDET_HEARTBEAT_INTERVAL_S": "1",
    "NESYDET_HEARTBEAT_STALE_S": "5",
    "NESYDET_RETRY_DELAYS_S": "[0.5, 0.5, 0.5]",
    "NESYDET_RETRY_JITTER": "0",
    "NESYDET_IMAGE_CHECK_WORKERS": "1",
}


@dataclass
class Deployment:
    """A running API with the environment to start workers beside it."""

    kind: str
    api: ApiServer
    root: Path
    database_url: str
    redis: RedisServer | None = None
    workers: list[Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.api.url

    def start_worker(self, **env: str) -> Process:
        n = len(self.workers)
        worker = spawn(
            f"worker-{n}",
            nesydet_command("worker", "--concurrency", "1"),
            env={**self.api.env, **env},
            cwd=self.root,
        )
        self.workers.append(worker)
        wait_until(
            lambda: self.live_workers() >= 1, timeout=120, what="a live worker", process=worker
        )
        return worker

    def live_workers(self) -> int:
        text_ = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text_):
            if family.name == "active_workers":
                return int(family.samples[0].value)
        return 0

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async def run() -> list[tuple[Any, ...]]:
            engine = create_async_engine(self.database_url)
            try:
                async with engine.connect() as conn:
                    return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.api.stop()
        if self.redis is not None:
            self.redis.stop()


@pytest.fixture(
    params=["embedded", pytest.param("production", marks=[pytest.mark.postgres, pytest.mark.redis])]
)
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    root = tmp_path / "deploy"
    # The checkout's demo model and a file that is no model at all.
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(REPO / "models" / "nesydet-demo-obb.pt", models / "nesydet-demo-obb.pt")
    (models / "broken.pt").write_bytes(b"this is not a model")
    env = {**FAST, "NESYDET_MODELS_DIR": str(models)}
    redis = None
    if request.param == "production":
        admin: str = request.getfixturevalue("postgres_server")
        name = f"nesydet_e2e_{os.getpid()}"
        asyncio.run(
            _pg_admin(
                admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"
            )
        )
        database_url = _asyncpg_url(admin, name)
        redis = RedisServer(tmp_path)
        redis.start()
        env.update(
            NESYDET_DATABASE_URL=database_url,
            NESYDET_BROKER_URL=redis.url,
            NESYDET_REDIS_URL=redis.url.replace("/0", "/1"),
        )
    else:
        database_url = f"sqlite+aiosqlite:///{root / 'db.sqlite'}"
    api = start_api_server(root, **env)
    deployment = Deployment(request.param, api, root, database_url, redis)
    try:
        yield deployment
    finally:
        deployment.stop()
        if request.param == "production":
            asyncio.run(_pg_admin(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def scene_png(seed: int, size: int = 1024) -> tuple[bytes, int]:
    scene = generate_scene(size, size, seed)
    buf = io.BytesIO()
    scene.image.save(buf, format="PNG")
    return buf.getvalue(), len(scene.objects)


def upload(client: httpx.Client, seeds: list[int]) -> dict[str, Any]:
    files = [("files", (f"scene-{s}.png", scene_png(s)[0], "image/png")) for s in seeds]
    response = client.post("/api/v1/inference/upload", files=files)
    assert response.status_code == 200, response.text
    spec.assert_shape(response.json(), spec.UPLOAD_200)
    data: dict[str, Any] = response.json()["data"]
    return data


def submit(client: httpx.Client, upload_id: str, **body: Any) -> str:
    response = client.post("/api/v1/inference/predict", json={"upload_id": upload_id, **body})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["data"]["job_id"]
    return job_id


def wait_processed(client: httpx.Client, job_id: str, count: int, worker: Process) -> None:
    wait_until(
        lambda: status(client, job_id)["data"]["progress"]["processed_images"] >= count,
        timeout=300,
        what=f"{count} image(s) processed",
        process=worker,
    )


def status(client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/jobs/{job_id}/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def job_under_way(
    deployment: Deployment, client: httpx.Client, seeds: list[int]
) -> tuple[Process, str]:
    """Start a worker and a job over ``seeds``; return once its first image is done."""
    worker = deployment.start_worker()
    job_id = submit(client, upload(client, seeds)["upload_id"])
    wait_processed(client, job_id, 1, worker)
    return worker, job_id


def assert_stored_once(deployment: Deployment, job_id: str, total: int) -> None:
    """Assert the job's detections are ``total`` rows, none stored twice."""
    rows = deployment.query(
        "SELECT count(*), count(DISTINCT file_id || ':' || idx) FROM detections WHERE job_id = :j",
        j=job_id,
    )
    assert rows[0][0] == rows[0][1] == total


def wait_status(
    client: httpx.Client, job_id: str, wanted: set[str], timeout: float, workers: list[Process]
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while True:
        body = status(client, job_id)
        seen.add(body["data"]["status"])
        if body["data"]["status"] in wanted:
            return body
        if time.monotonic() > deadline:
            logs = "\n".join(w.output() for w in workers)
            raise TimeoutError(f"job {job_id} stayed {body['data']}; seen {seen}\n{logs}")
        time.sleep(0.25)


def test_workflow_1(deployment: Deployment) -> None:
    deployment.start_worker()
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        up = upload(client, [11, 12])
        response = client.post(
            "/api/v1/inference/predict",
            json={
                "upload_id": up["upload_id"],
                "config": {"confidence_threshold": 0.25, "sahi": {"enabled": True}},
            },
        )
        assert response.status_code == 202, response.text
        spec.assert_shape(response.json(), spec.PREDICT_202)
        job_id = response.json()["data"]["job_id"]
        seen: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            body = status(client, job_id)
            seen.setdefault(body["data"]["status"], body)
            if (
                body["data"]["status"] == "processing"
                and body["data"]["progress"].get("processed_images") == 1
            ):
                seen["processing-1"] = body
            if body["data"]["status"] in {"completed", "failed"}:
                break
            time.sleep(0.2)
        final = seen.get("completed") or seen.get("failed")
        assert final is not None, "the job did not finish"
        assert final["data"]["status"] == "completed", final
        spec.assert_shape(final, spec.STATUS_COMPLETED)
        if "queued" in seen:
            spec.assert_shape(seen["queued"], spec.STATUS_QUEUED)
        assert "processing" in seen, "polling never saw the job processing"
        spec.assert_shape(
            seen.get("processing-1", seen["processing"]),
            {
                "status": "success",
                "data": {
                    k: v for k, v in spec.STATUS_PROCESSING["data"].items() if k != "progress"
                },
            },
        )
        processing = seen.get("processing-1")
        if processing is not None:
            spec.assert_shape(processing, spec.STATUS_PROCESSING)
            assert processing["data"]["progress"]["percentage"] == 50
        summary = final["data"]["summary"]
        assert summary["total_detections"] > 0
        assert 0 < summary["average_confidence"] <= 1
        assert summary["processing_time_seconds"] > 0

        results = client.get(f"/api/v1/jobs/{job_id}/results")
        assert results.status_code == 200
        spec.assert_shape(results.json(), spec.RESULTS_JSON)
        data = results.json()["data"]
        assert [r["file_id"] for r in data["results"]] == [
            f["file_id"] for f in up["uploaded_files"]
        ]
        total = sum(r["detection_count"] for r in data["results"])
        assert total == summary["total_detections"]
        det = data["results"][0]["detections"][0]
        assert set(det["reasoning"]) >= {
            "original_confidence",
            "adjusted_confidence",
            "action",
            "rules_fired",
        }
        assert len(det["polygon"]) == 4  # the demo model is an oriented-box model

        yolo = client.get(f"/api/v1/jobs/{job_id}/results", params={"format": "yolo"})
        spec.assert_shape(yolo.json(), spec.RESULTS_YOLO)
        first = yolo.json()["data"]["files"][0]
        labels = client.get(first["download_url"])
        assert labels.status_code == 200
        assert labels.text == first["label_content"]
        assert len(labels.text.splitlines()) == data["results"][0]["detection_count"]

        coco = client.get(f"/api/v1/jobs/{job_id}/results", params={"format": "coco"}).json()[
            "data"
        ]["coco"]
        assert len(coco["images"]) == 2
        assert len(coco["annotations"]) == total
        voc = client.get(f"/api/v1/jobs/{job_id}/results", params={"format": "voc"}).json()["data"][
            "files"
        ]
        assert voc[0]["voc_xml"].startswith("<annotation>")
        one = client.get(
            f"/api/v1/jobs/{job_id}/results", params={"file_id": first["file_id"]}
        ).json()["data"]
        assert [r["file_id"] for r in one["results"]] == [first["file_id"]]

        vis = client.get(f"/api/v1/jobs/{job_id}/visualization")
        spec.assert_shape(vis.json(), spec.VISUALIZATION_URL)
        item = vis.json()["data"]["visualizations"][0]
        for key in ("original_url", "annotated_url", "thumbnail_url"):
            image = client.get(item[key])
            assert image.status_code == 200, key
            assert image.headers["etag"]
            assert image.headers["cache-control"]
            Image.open(io.BytesIO(image.content)).verify()
            again = client.get(item[key], headers={"If-None-Match": image.headers["etag"]})
            assert again.status_code == 304
        thumb = Image.open(io.BytesIO(client.get(item["thumbnail_url"]).content))
        assert max(thumb.size) == 256
        inline = client.get(
            f"/api/v1/jobs/{job_id}/visualization",
            params={"file_id": item["file_id"], "format": "base64"},
        )
        spec.assert_shape(inline.json(), spec.VISUALIZATION_BASE64)
        png = base64.b64decode(inline.json()["data"]["original_image"].split(",", 1)[1])
        assert png == client.get(item["original_url"]).content

        listed = client.get("/api/v1/jobs").json()["data"]["jobs"]
        assert listed[0]["job_id"] == job_id
        assert listed[0]["status"] == "completed"
        metrics = client.get("/metrics").text
        assert 'inference_jobs_total{status="completed"}' in metrics
        assert 'model_inference_time_seconds_count{model="nesydet-demo-obb"}' in metrics
        assert "detection_count_total{class=" in metrics
    assert_stored_once(deployment, job_id, total)


def test_failures_keep_their_code(deployment: Deployment) -> None:
    # The API only checks that the model file exists; the worker finds it cannot be loaded.
    deployment.start_worker()
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        up = upload(client, [21])
        job_id = submit(client, up["upload_id"], config={"model_path": "broken.pt"})
        body = wait_status(client, job_id, {"failed", "completed"}, 120, deployment.workers)
        spec.assert_shape(body, spec.STATUS_FAILED)
        error = body["data"]["error"]
        assert error["code"] == "MODEL_LOAD_ERROR"
        assert error["message"] == "Failed to load YOLO model"
        assert error["details"]
        results = client.get(f"/api/v1/jobs/{job_id}/results")
        assert results.status_code == 404
        spec.assert_shape(results.json(), spec.RESULTS_404)
    [(attempts, retries)] = deployment.query(
        "SELECT attempts, retries FROM jobs WHERE id = :j", j=job_id
    )
    assert (attempts, retries) == (1, 0), "MODEL_LOAD_ERROR is not retried"


def test_storage_errors_are_retried_then_fail(deployment: Deployment) -> None:
    deployment.start_worker()
    blocker = deployment.root / "storage" / "results"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the results folder should be")
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        up = upload(client, [31])
        job_id = submit(client, up["upload_id"])
        body = wait_status(client, job_id, {"failed", "completed"}, 300, deployment.workers)
        assert body["data"]["status"] == "failed"
        assert body["data"]["error"]["code"] == "STORAGE_ERROR"
    [(attempts, retries)] = deployment.query(
        "SELECT attempts, retries FROM jobs WHERE id = :j", j=job_id
    )
    assert (attempts, retries) == (4, 3), "three retries after the first attempt"


def test_worker_killed_mid_job_completes_without_duplicates(deployment: Deployment) -> None:
    seeds = [41, 42, 43, 44]
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        first, job_id = job_under_way(deployment, client, seeds)
        assert status(client, job_id)["data"]["status"] == "processing"
        # The whole worker, parent and children, dies at once: no clean shutdown, no ack.
        for proc in psutil.Process(first.proc.pid).children(recursive=True):
            proc.send_signal(signal.SIGKILL)
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        done_before = status(client, job_id)["data"]["progress"]["processed_images"]
        assert done_before < len(seeds), "the job finished before the kill; use more images"
        deployment.start_worker()
        body = wait_status(client, job_id, {"completed", "failed"}, 400, deployment.workers)
        assert body["data"]["status"] == "completed", body
        total = body["data"]["summary"]["total_detections"]
        per_file = client.get(f"/api/v1/jobs/{job_id}/results").json()["data"]["results"]
        assert sum(r["detection_count"] for r in per_file) == total
    assert_stored_once(deployment, job_id, total)
    [(attempts,)] = deployment.query("SELECT attempts FROM jobs WHERE id = :j", j=job_id)
    assert attempts >= 2


def test_cancel_a_running_job_stops_it(deployment: Deployment) -> None:
    worker = deployment.start_worker()
    seeds = [51, 52, 53, 54, 55]
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        up = upload(client, seeds)
        job_id = submit(client, up["upload_id"])
        wait_processed(client, job_id, 1, worker)
        response = client.post(f"/api/v1/jobs/{job_id}/cancel")
        assert response.status_code == 200
        assert response.json()["data"]["status"] == "cancelled"
        at_cancel = deployment.query(
            "SELECT count(*) FROM job_files WHERE job_id = :j AND status = 'done'", j=job_id
        )[0][0]
        # Give the worker time to finish the image it was on and notice.
        wait_until(
            lambda: deployment.query("SELECT current_job_id FROM workers")[0][0] is None,
            timeout=120, what="the worker to let go of the job", process=worker,
        )  # fmt: skip
        after = deployment.query(
            "SELECT count(*) FROM job_files WHERE job_id = :j AND status = 'done'", j=job_id
        )[0][0]
        assert after == at_cancel < len(seeds), "no image may be completed after the cancel"
        body = status(client, job_id)
        assert body["data"]["status"] == "cancelled"
        assert client.get(f"/api/v1/jobs/{job_id}/results").json()["details"] == "Job was cancelled"
        # The worker is free for the next job.
        next_job = submit(client, up["upload_id"], file_ids=[up["uploaded_files"][0]["file_id"]])
        assert (
            wait_status(client, next_job, {"completed", "failed"}, 300, deployment.workers)["data"][
                "status"
            ]
            == "completed"
        )


@pytest.mark.parametrize(
    "deployment",
    [pytest.param("production", marks=[pytest.mark.postgres, pytest.mark.redis])],
    indirect=True,
)
def test_broker_down_at_submit(deployment: Deployment) -> None:
    # Only the production set-up has a broker that can be away: the embedded one is a folder.
    assert deployment.redis is not None
    deployment.start_worker()
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        up = upload(client, [61])
        deployment.redis.stop()
        response = client.post("/api/v1/inference/predict", json={"upload_id": up["upload_id"]})
        assert response.status_code == 202
        job_id = response.json()["data"]["job_id"]
        assert deployment.query("SELECT status, sent_at FROM jobs WHERE id = :j", j=job_id) == [
            ("queued", None)
        ]
        time.sleep(2)  # sweeps run and fail while the broker is away
        assert status(client, job_id)["data"]["status"] == "queued"
        deployment.redis.start()
        body = wait_status(client, job_id, {"completed", "failed"}, 300, deployment.workers)
        assert body["data"]["status"] == "completed", body


def test_a_task_delivered_twice_does_not_duplicate(deployment: Deployment) -> None:
    deployment.start_worker()
    settings = Settings(
        broker_url=deployment.api.env["NESYDET_BROKER_URL"],
        var_dir=Path(deployment.api.env["NESYDET_VAR_DIR"]),
    )
    celery = make_celery(settings)
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        up = upload(client, [71, 72])
        job_id = submit(client, up["upload_id"])
        # The same task again, as a sweeper racing the request, or a broker redelivery, would.
        Dispatcher(celery, settings).publish(job_id, 2)
        Dispatcher(celery, settings).publish(job_id, 2)
        body = wait_status(client, job_id, {"completed", "failed"}, 300, deployment.workers)
        assert body["data"]["status"] == "completed", body
        time.sleep(2)  # let the extra deliveries arrive and be turned away
        assert status(client, job_id)["data"] == body["data"]
        total = body["data"]["summary"]["total_detections"]
    celery.close()
    assert_stored_once(deployment, job_id, total)
    [(attempts,)] = deployment.query("SELECT attempts FROM jobs WHERE id = :j", j=job_id)
    assert attempts == 1, "a second delivery must not take over a job a live worker holds"
