"""Workflow 1 end to end: real API server, real Celery worker processes, the demo model.

Each scenario runs on the embedded default (SQLite, filesystem broker) and on the production
set-up (PostgreSQL, Redis broker and status cache).

A scenario that needs the job at a given point (half done, still running when its worker is
killed or it is cancelled) holds the worker there with a gate around the real model
(``tests/gates.py``), never by hoping the worker is slow enough. Nothing waits a fixed time:
every wait is for a condition, with a deadline.
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

from nesydet.broker import make_celery
from nesydet.config import Settings
from nesydet.services.dispatch import Dispatcher
from tests import spec_examples as spec
from tests.conftest import _asyncpg_url, _pg_admin
from tests.gates import Gate
from tests.integration.prom import (
    REPO,
    ApiServer,
    Process,
    free_port,
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
# Jobs held by a gate: with SAHI off one image is one model call (see tests/gates.py).
NO_SAHI: dict[str, Any] = {"sahi": {"enabled": False}}
# Log lines the tests wait for: a send that failed (API), a delivery turned away (worker).
SEND_FAILED = "could not send the job's task"
NOT_CLAIMED = "job not claimed"


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

    def gate(self, name: str) -> Gate:
        """Return a new gate for a worker to start with."""
        return Gate(self.root / f"gate-{name}")

    def start_worker(self, gate: Gate | None = None, **env: str) -> Process:
        """Start a worker (held by ``gate`` before each model call, when given)."""
        n = len(self.workers)
        port = free_port()
        worker = spawn(
            f"worker-{n}",
            nesydet_command("worker", "--concurrency", "1"),
            env={
                **self.api.env,
                **(gate.env() if gate is not None else {}),
                "NESYDET_WORKER_METRICS_PORT": str(port),
                **env,
            },
            cwd=self.root,
        )
        worker.metrics_url = f"http://127.0.0.1:{port}/metrics"
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


def upload(client: httpx.Client, seeds: list[int], size: int = 1024) -> dict[str, Any]:
    files = [("files", (f"scene-{s}.png", scene_png(s, size)[0], "image/png")) for s in seeds]
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


def job_held_in_second_image(
    deployment: Deployment, client: httpx.Client, seeds: list[int]
) -> tuple[Process, Gate, dict[str, Any], str]:
    """Start a gated worker and a job over ``seeds``; return (worker, gate, upload, job id)
    once image 1 is stored and the worker is held before image 2's inference.

    The job is then certainly ``processing`` with one image done, however fast the model.
    """
    gate = deployment.gate("held")
    worker = deployment.start_worker(gate)
    up = upload(client, seeds)
    job_id = submit(client, up["upload_id"], config=NO_SAHI)
    gate.release(1)
    wait_processed(client, job_id, 1, worker)
    wait_until(lambda: gate.reached(2), timeout=120, what="the worker at image 2", process=worker)
    body = status(client, job_id)
    assert body["data"]["status"] == "processing", body
    assert body["data"]["progress"]["processed_images"] == 1, body
    return worker, gate, up, job_id


def done_files(deployment: Deployment, job_id: str) -> int:
    """Return how many of the job's images have their results stored."""
    [(count,)] = deployment.query(
        "SELECT count(*) FROM job_files WHERE job_id = :j AND status = 'done'", j=job_id
    )
    return int(count)


@dataclass(frozen=True)
class StoredDetection:
    class_name: str
    confidence: float
    box: tuple[float, float, float, float]


def stored_detections(
    deployment: Deployment, job_id: str, total: int
) -> dict[str, list[StoredDetection]]:
    """Return the job's stored detections by file, asserting they are what the job reports.

    Each file's rows are numbered 0..n-1 and are as many as its ``detection_count``, every
    file of the job is done, and all of them add up to ``total`` (the status summary's).
    """
    files = deployment.query(
        "SELECT file_id, status, detection_count FROM job_files WHERE job_id = :j", j=job_id
    )
    assert files, f"job {job_id} has no files"
    assert {st for _, st, _ in files} == {"done"}, files
    rows = deployment.query(
        "SELECT file_id, idx, class_name, confidence, x_min, y_min, x_max, y_max "
        "FROM detections WHERE job_id = :j ORDER BY file_id, idx",
        j=job_id,
    )
    by_file: dict[str, list[StoredDetection]] = {file_id: [] for file_id, _, _ in files}
    numbers: dict[str, list[int]] = {file_id: [] for file_id, _, _ in files}
    for file_id, idx, cls, conf, x0, y0, x1, y1 in rows:
        assert file_id in by_file, f"a detection of file {file_id}, which is not in the job"
        numbers[file_id].append(idx)
        by_file[file_id].append(StoredDetection(cls, conf, (x0, y0, x1, y1)))
    for file_id, idxs in numbers.items():
        assert idxs == list(range(len(idxs))), f"{file_id}: rows numbered {idxs}"
    assert {file_id: len(dets) for file_id, dets in by_file.items()} == {
        file_id: count for file_id, _, count in files
    }, "stored rows per file differ from job_files.detection_count"
    assert sum(len(dets) for dets in by_file.values()) == total
    return by_file


def assert_same_detections(
    got: list[StoredDetection], want: list[StoredDetection], where: str
) -> None:
    """Assert two runs found the same objects: same count, and one to one the same class,
    confidence (to 0.001) and box (to 0.5 px).

    A tolerance, not rounding: a value next to a rounding boundary would round apart on two
    runs that differ in the last bits (as two processes on a GPU may).
    """
    assert len(got) == len(want), f"{where}: {len(got)} detections, the clean run has {len(want)}"
    left = sorted(want, key=lambda d: (d.class_name, -d.confidence, d.box))
    unmatched = []
    for det in sorted(got, key=lambda d: (d.class_name, -d.confidence, d.box)):
        match = next(
            (
                i
                for i, other in enumerate(left)
                if other.class_name == det.class_name
                and abs(other.confidence - det.confidence) <= 1e-3
                and all(abs(a - b) <= 0.5 for a, b in zip(other.box, det.box, strict=True))
            ),
            None,
        )
        if match is None:
            unmatched.append(det)
        else:
            left.pop(match)
    assert not unmatched, f"{where}: not in the clean run: {unmatched}; clean run only: {left}"


def assert_same_as_clean_run(
    deployment: Deployment,
    client: httpx.Client,
    upload_id: str,
    job_id: str,
    config: dict[str, Any] | None = None,
) -> None:
    """Assert the finished job stored, file by file, what it reports, and exactly what a clean
    job (same upload, same config, no fault) stores."""
    body = status(client, job_id)
    assert body["data"]["status"] == "completed", body
    got = stored_detections(deployment, job_id, body["data"]["summary"]["total_detections"])
    clean_id = submit(client, upload_id, **({"config": config} if config is not None else {}))
    clean = wait_status(client, clean_id, {"completed", "failed"}, 300, deployment.workers)
    assert clean["data"]["status"] == "completed", clean
    want = stored_detections(deployment, clean_id, clean["data"]["summary"]["total_detections"])
    assert {f: len(d) for f, d in got.items()} == {f: len(d) for f, d in want.items()}
    for file_id, dets in want.items():
        assert_same_detections(got[file_id], dets, f"job {job_id}, file {file_id}")


def metric_samples(text_: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of a scrape by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text_)
        for sample in family.samples
    }


def check_metrics_split(client: httpx.Client, worker: Process, detections: int) -> None:
    """The worker serves what it did and its host's figures; the API serves what it was asked
    and the cluster's gauges. No event is counted by both, so sums over targets are right."""
    assert worker.metrics_url is not None
    own = httpx.get(worker.metrics_url, timeout=10).text
    api = client.get("/metrics").text
    done = metric_samples(own)
    assert done[("inference_jobs_total", (("status", "completed"),))] == 1
    assert done[("worker_processes", ())] == 1
    timed = [
        dict(labels)
        for (name, labels), value in done.items()
        if name == "model_inference_time_seconds_count" and value > 0
    ]
    # The version is "1" once the bundled model is registered, "" for a job made before.
    assert [t["model"] for t in timed] == ["nesydet-demo-obb"]
    assert timed[0]["version"] in ("", "1")
    found = sum(v for (name, _), v in done.items() if name == "detection_count_total")
    assert found == detections
    assert done[("memory_usage_bytes", (("scope", "worker"),))] > 0
    assert ("cpu_usage_percent", ()) in done
    asked = metric_samples(api)
    assert asked[("inference_jobs_total", (("status", "queued"),))] == 1
    assert asked[("jobs_current", (("status", "completed"),))] == 1
    assert asked[("active_workers", ())] == 1
    assert asked[("queue_length", (("queue", "inference"),))] == 0
    assert asked[("memory_usage_bytes", (("scope", "api"),))] > 0
    for name in ("detection_count_total", "model_inference_time_seconds_count", "active_jobs"):
        assert not any(n == name for n, _ in asked), f"{name} on the API's /metrics"
    assert not any(n == "inference_jobs_total" and dict(lbl).get("status") == "completed"
                   for n, lbl in asked), "completions counted on the API too"  # fmt: skip


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
    gate = deployment.gate("workflow")
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        up = upload(client, [11, 12])
        config = {"confidence_threshold": 0.25, **NO_SAHI}
        response = client.post(
            "/api/v1/inference/predict", json={"upload_id": up["upload_id"], "config": config}
        )
        assert response.status_code == 202, response.text
        spec.assert_shape(response.json(), spec.PREDICT_202)
        job_id = response.json()["data"]["job_id"]
        # No worker runs yet: the job waits in the queue, and its message in the broker.
        queued = status(client, job_id)
        assert queued["data"]["status"] == "queued", queued
        spec.assert_shape(queued, spec.STATUS_QUEUED)
        waiting = metric_samples(client.get("/metrics").text)
        assert waiting[("queue_length", (("queue", "inference"),))] == 1
        assert waiting[("jobs_current", (("status", "queued"),))] == 1
        worker = deployment.start_worker(gate)
        # Image 1 goes through; the worker is then held before image 2's inference.
        gate.release(1)
        wait_processed(client, job_id, 1, worker)
        wait_until(
            lambda: gate.reached(2), timeout=120, what="the worker at image 2", process=worker
        )
        processing = status(client, job_id)
        assert processing["data"]["status"] == "processing", processing
        assert processing["data"]["progress"]["processed_images"] == 1, processing
        spec.assert_shape(processing, spec.STATUS_PROCESSING)
        assert processing["data"]["progress"]["percentage"] == 50
        gate.open()
        final = wait_status(client, job_id, {"completed", "failed"}, 300, [worker])
        assert final["data"]["status"] == "completed", final
        spec.assert_shape(final, spec.STATUS_COMPLETED)
        summary = final["data"]["summary"]
        assert summary["total_detections"] > 0
        assert 0 < summary["average_confidence"] <= 1
        assert summary["processing_time_seconds"] > 0

        check_results(client, job_id, up, summary["total_detections"])
        check_visualizations(client, job_id)
        listed = client.get("/api/v1/jobs").json()["data"]["jobs"]
        assert listed[0]["job_id"] == job_id
        assert listed[0]["status"] == "completed"
        check_metrics_split(client, worker, summary["total_detections"])
        # What it stored is what it reports, and what a job run without the gate finds.
        assert_same_as_clean_run(deployment, client, up["upload_id"], job_id, config)


def check_results(client: httpx.Client, job_id: str, up: dict[str, Any], total: int) -> None:
    """Check a completed two-image job's results in every format against its ``total``."""
    results = client.get(f"/api/v1/jobs/{job_id}/results")
    assert results.status_code == 200
    spec.assert_shape(results.json(), spec.RESULTS_JSON)
    data = results.json()["data"]
    assert [r["file_id"] for r in data["results"]] == [f["file_id"] for f in up["uploaded_files"]]
    assert sum(r["detection_count"] for r in data["results"]) == total
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

    coco = client.get(f"/api/v1/jobs/{job_id}/results", params={"format": "coco"}).json()["data"][
        "coco"
    ]
    assert len(coco["images"]) == 2
    assert len(coco["annotations"]) == total
    voc = client.get(f"/api/v1/jobs/{job_id}/results", params={"format": "voc"}).json()["data"][
        "files"
    ]
    assert voc[0]["voc_xml"].startswith("<annotation>")
    one = client.get(f"/api/v1/jobs/{job_id}/results", params={"file_id": first["file_id"]}).json()[
        "data"
    ]
    assert [r["file_id"] for r in one["results"]] == [first["file_id"]]


def check_visualizations(client: httpx.Client, job_id: str) -> None:
    """Check a completed job's images: links, caching headers, thumbnail size, inline form."""
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
        first, _, up, job_id = job_held_in_second_image(deployment, client, seeds)
        # The whole worker, parent and children, dies at once: no clean shutdown, no ack.
        for proc in psutil.Process(first.proc.pid).children(recursive=True):
            proc.send_signal(signal.SIGKILL)
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        assert status(client, job_id)["data"]["progress"]["processed_images"] == 1
        assert done_files(deployment, job_id) == 1
        deployment.start_worker()
        body = wait_status(client, job_id, {"completed", "failed"}, 400, deployment.workers)
        assert body["data"]["status"] == "completed", body
        total = body["data"]["summary"]["total_detections"]
        per_file = client.get(f"/api/v1/jobs/{job_id}/results").json()["data"]["results"]
        assert sum(r["detection_count"] for r in per_file) == total
        [(attempts,)] = deployment.query("SELECT attempts FROM jobs WHERE id = :j", j=job_id)
        assert attempts >= 2
        # Image 1 stored by the dead worker, the rest by the new one: nothing twice, nothing
        # lost, the same detections as a job that no one killed.
        assert_same_as_clean_run(deployment, client, up["upload_id"], job_id, NO_SAHI)


def test_cancel_a_running_job_stops_it(deployment: Deployment) -> None:
    seeds = [51, 52, 53, 54, 55]
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        worker, gate, up, job_id = job_held_in_second_image(deployment, client, seeds)
        wait_until(
            lambda: deployment.query("SELECT current_job_id FROM workers") == [(job_id,)],
            timeout=60, what="the worker's row to name the job it holds", process=worker,
        )  # fmt: skip
        response = client.post(f"/api/v1/jobs/{job_id}/cancel")
        assert response.status_code == 200
        assert response.json()["data"]["status"] == "cancelled"
        assert done_files(deployment, job_id) == 1
        # Let the worker go on: it finishes image 2's inference, and storing it finds the job
        # cancelled.
        gate.open()
        wait_until(
            lambda: deployment.query("SELECT current_job_id FROM workers") == [(None,)],
            timeout=120, what="the worker to let go of the job", process=worker,
        )  # fmt: skip
        assert gate.passed(2), "the worker let go before it ran image 2"
        assert done_files(deployment, job_id) == 1, "no image may be completed after the cancel"
        body = status(client, job_id)
        assert body["data"]["status"] == "cancelled"
        assert body["data"]["progress"]["processed_images"] == 1
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
    api = deployment.api.process
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        up = upload(client, [61])
        deployment.redis.stop()
        response = client.post("/api/v1/inference/predict", json={"upload_id": up["upload_id"]})
        assert response.status_code == 202
        job_id = response.json()["data"]["job_id"]
        assert deployment.query("SELECT status, sent_at FROM jobs WHERE id = :j", j=job_id) == [
            ("queued", None)
        ]
        # The request's send failed; wait until a sweep has tried again and failed too.
        wait_until(
            lambda: api.log_text().count(SEND_FAILED) >= 2,
            timeout=60, what="a sweep to fail to send the job", process=api,
        )  # fmt: skip
        assert status(client, job_id)["data"]["status"] == "queued"
        assert deployment.query("SELECT status, sent_at FROM jobs WHERE id = :j", j=job_id) == [
            ("queued", None)
        ]
        deployment.redis.start()
        body = wait_status(client, job_id, {"completed", "failed"}, 300, deployment.workers)
        assert body["data"]["status"] == "completed", body


def test_a_task_delivered_twice_does_not_duplicate(deployment: Deployment) -> None:
    worker = deployment.start_worker()
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
        celery.close()
        body = wait_status(client, job_id, {"completed", "failed"}, 300, deployment.workers)
        assert body["data"]["status"] == "completed", body
        # Both extra deliveries reach the worker and are turned away.
        wait_until(
            lambda: worker.log_text().count(NOT_CLAIMED) >= 2,
            timeout=120, what="the extra deliveries to be turned away", process=worker,
        )  # fmt: skip
        assert status(client, job_id)["data"] == body["data"]
        [(attempts,)] = deployment.query("SELECT attempts FROM jobs WHERE id = :j", j=job_id)
        assert attempts == 1, "a second delivery must not take over a job a live worker holds"
        assert_same_as_clean_run(deployment, client, up["upload_id"], job_id)
