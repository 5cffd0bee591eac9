"""The job runner with a fake detector, on SQLite and PostgreSQL: a job to its end, retries, a
cancel seen between images, storage failures and a job taken over from a dead worker.

Jobs are created through the API; the runner runs in a thread, as in a worker process, with
its own I/O loop and engine. The fake stands in for the model only (STYLE rule 9).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from sqlalchemy import select

from nesydet.broker import make_celery
from nesydet.config import Settings
from nesydet.db.models import Detection, Job, JobFile
from nesydet.db.session import create_engine, create_sessionmaker
from nesydet.pipeline import Pipeline
from nesydet.pipeline.detector import ImageSize
from nesydet.pipeline.types import RawDetections
from nesydet.services.dispatch import Dispatcher
from nesydet.services.processing.io_loop import IoLoop
from nesydet.services.processing.runner import JobRunner
from nesydet.services.processing.saver import BackgroundSaver
from nesydet.services.processing.store import JobStore
from nesydet.services.status_cache import NoStatusCache
from nesydet.storage import LocalStorage, StorageFailure
from tests.api.test_jobs import PREDICT, queued_messages
from tests.pipeline_fixtures import FakeDetector, paint_blob, rotated_rect

# One model call per image (no slicing), no Prolog: the runner is under test, not the pipeline.
FAST_CONFIG = {"sahi": {"enabled": False}, "symbolic_reasoning": {"enabled": False}}
# Blobs the fake detector finds in image n: n + 1 of them, so each image's count differs.
SCENES = 3


class GatedDetector(FakeDetector):
    """The fake detector, calling ``before(n)`` before it looks at its n-th image (1-based)."""

    def __init__(self, before: Callable[[int], None] | None = None) -> None:
        super().__init__("obb")
        self.before = before
        self.images = 0

    def predict_batch(
        self, images: Sequence[npt.NDArray[np.uint8]], conf: float, *, iou: float, imgsz: ImageSize
    ) -> list[RawDetections]:
        self.images += 1
        if self.before is not None:
            self.before(self.images)
        return super().predict_batch(images, conf, iou=iou, imgsz=imgsz)


class FlakyStorage(LocalStorage):
    """Local storage whose result writes fail ``failures`` times (-1: always)."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def put_bytes(self, key: str, data: bytes) -> None:
        if key.startswith("results/") and self.failures != 0:
            self.failures -= 1 if self.failures > 0 else 0
            raise StorageFailure(f"could not store {key}: No space left on device")
        super().put_bytes(key, data)


@dataclass
class Worker:
    runner: JobRunner
    detector: GatedDetector
    io: IoLoop
    closers: list[Callable[[], None]] = field(default_factory=list)

    def run(self, job_id: str) -> None:
        self.runner.run(job_id)

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


@pytest.fixture
def run_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "retry_delays_s": [0.0, 0.0, 0.0],
            "retry_jitter": 0.0,
            "progress_interval_s": 0.0,  # every stage is written: a cancel is seen at once
            "heartbeat_stale_s": 0.5,
        }
    )


@pytest.fixture
def workers(run_settings: Settings) -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(
        worker_id: str = "host:1",
        *,
        before: Callable[[int], None] | None = None,
        storage: LocalStorage | None = None,
    ) -> Worker:
        detector = GatedDetector(before)
        loop = IoLoop()
        engine = create_engine(run_settings.database_url)
        celery = make_celery(run_settings)
        saver = BackgroundSaver()
        runner = JobRunner(
            settings=run_settings,
            pipeline=Pipeline(
                run_settings.models_dir,
                run_settings.rules_dir,
                default_model=run_settings.default_model,
                detector_factory=lambda _path, _device: detector,
            ),
            storage=storage or LocalStorage(run_settings.storage_root),
            store=JobStore(
                sessionmaker=create_sessionmaker(engine),
                cache=NoStatusCache(),
                worker_id=worker_id,
                heartbeat_stale_s=run_settings.heartbeat_stale_s,
                default_seconds_per_image=1.0,
            ),
            io=loop,
            dispatcher=Dispatcher(celery, run_settings),
            saver=saver,
        )
        worker = Worker(runner, detector, loop)
        worker.closers += [
            loop.close,
            lambda: loop.run(engine.dispose()),
            celery.close,
            saver.close,
        ]
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()


def scene(n: int) -> bytes:
    img = Image.new("RGB", (256, 256), (90, 100, 80))
    for k in range(n + 1):
        paint_blob(img, k % 3, 0.9 - 0.1 * k, rotated_rect(30 + 60 * k, 40 + 50 * k, 30, 16, 0.3))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


async def upload_scenes(client: httpx.AsyncClient, count: int = SCENES) -> dict[str, Any]:
    files = [("files", (f"scene{n}.png", scene(n), "image/png")) for n in range(count)]
    response = await client.post("/api/v1/inference/upload", files=files)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def new_job(client: httpx.AsyncClient, upload_id: str) -> str:
    response = await client.post(PREDICT, json={"upload_id": upload_id, "config": FAST_CONFIG})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["data"]["job_id"]
    return job_id


async def job(client: httpx.AsyncClient, job_id: str) -> Job:
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        row = await session.get(Job, job_id, populate_existing=True)
        assert row is not None
        return row


async def stored(client: httpx.AsyncClient, job_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Return a job's stored detections per file as (class, confidence, box) rows, and check
    they agree with each file's ``detection_count``."""
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        files = (await session.execute(select(JobFile).where(JobFile.job_id == job_id))).scalars()
        counts = {f.file_id: f.detection_count for f in files if f.status == "done"}
        rows = (
            await session.execute(
                select(Detection).where(Detection.job_id == job_id).order_by(Detection.idx)
            )
        ).scalars()
        by_file: dict[str, list[tuple[Any, ...]]] = {}
        for d in rows:
            box = tuple(round(v, 2) for v in (d.x_min, d.y_min, d.x_max, d.y_max))
            by_file.setdefault(d.file_id, []).append((d.class_name, round(d.confidence, 4), box))
    assert {f: len(v) for f, v in by_file.items()} == {f: c for f, c in counts.items() if c}
    return by_file


async def clean_run(
    client: httpx.AsyncClient, workers: Callable[..., Worker], upload_id: str
) -> dict[str, list[tuple[Any, ...]]]:
    """Return the detections of the same images run by a fresh worker without faults."""
    job_id = await new_job(client, upload_id)
    await asyncio.to_thread(workers("clean:1").run, job_id)
    assert (await job(client, job_id)).status == "completed"
    return await stored(client, job_id)


async def test_a_job_runs_to_completion(
    client: httpx.AsyncClient, workers: Callable[..., Worker]
) -> None:
    up = await upload_scenes(client)
    job_id = await new_job(client, up["upload_id"])
    await asyncio.to_thread(workers().run, job_id)
    row = await job(client, job_id)
    assert (row.status, row.processed_count, row.attempts, row.retries) == ("completed", 3, 1, 0)
    detections = await stored(client, job_id)
    assert [len(detections[f["file_id"]]) for f in up["uploaded_files"]] == [1, 2, 3]
    assert row.total_detections == 6
    status = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()["data"]
    assert status["summary"]["total_detections"] == 6


async def test_a_storage_failure_is_retried_and_the_retry_completes(
    client: httpx.AsyncClient,
    workers: Callable[..., Worker],
    run_settings: Settings,
) -> None:
    up = await upload_scenes(client)
    job_id = await new_job(client, up["upload_id"])
    flaky = FlakyStorage(run_settings.storage_root, failures=1)
    worker = workers(storage=flaky)
    await asyncio.to_thread(worker.run, job_id)
    row = await job(client, job_id)
    assert (row.status, row.retries, row.error_code) == ("queued", 1, "STORAGE_ERROR")
    assert "No space left on device" in (row.error_details or "")
    status = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()["data"]
    assert status["error"]["code"] == "STORAGE_ERROR"
    assert status["attempts"] == 1
    # The retry's task was sent, after the predict's own.
    sent = [json.loads(base64.b64decode(m["body"]))[0] for m in queued_messages(run_settings)]
    assert sent == [[job_id], [job_id]]
    await asyncio.to_thread(worker.run, job_id)  # the retry's delivery
    row = await job(client, job_id)
    assert (row.status, row.attempts, row.retries) == ("completed", 2, 1)
    assert row.error_code is None
    assert await stored(client, job_id) == await clean_run(client, workers, up["upload_id"])


async def test_storage_failing_every_time_fails_the_job_after_the_last_retry(
    client: httpx.AsyncClient, workers: Callable[..., Worker], run_settings: Settings
) -> None:
    up = await upload_scenes(client, 1)
    job_id = await new_job(client, up["upload_id"])
    worker = workers(storage=FlakyStorage(run_settings.storage_root, failures=-1))
    for _ in range(4):  # the first delivery and one per retry delay
        await asyncio.to_thread(worker.run, job_id)
    row = await job(client, job_id)
    assert (row.status, row.attempts, row.retries, row.error_code) == (
        "failed",
        4,
        3,
        "STORAGE_ERROR",
    )
    assert await stored(client, job_id) == {}
    await asyncio.to_thread(worker.run, job_id)  # a late redelivery changes nothing
    assert (await job(client, job_id)).attempts == 4


async def test_a_missing_input_file_fails_at_once_with_file_error(
    client: httpx.AsyncClient, workers: Callable[..., Worker], run_settings: Settings
) -> None:
    up = await upload_scenes(client, 2)
    second = up["uploaded_files"][1]
    (run_settings.storage_root / "uploads" / up["upload_id"] / f"{second['file_id']}.png").unlink()
    job_id = await new_job(client, up["upload_id"])
    await asyncio.to_thread(workers().run, job_id)
    row = await job(client, job_id)
    assert (row.status, row.retries, row.error_code) == ("failed", 0, "FILE_ERROR")
    assert second["file_id"] in (row.error_details or "")
    assert "missing" in (row.error_details or "")
    # The image before it was saved; nothing after it.
    assert list(await stored(client, job_id)) == [up["uploaded_files"][0]["file_id"]]


async def test_a_cancel_is_seen_between_images(
    client: httpx.AsyncClient, workers: Callable[..., Worker]
) -> None:
    up = await upload_scenes(client)
    job_id = await new_job(client, up["upload_id"])
    loop = asyncio.get_running_loop()

    def cancel_during_the_second_image(n: int) -> None:
        if n == 2:
            # The first image's results are saved on the saving thread: let them land first.
            deadline = loop_time_of(loop) + 30
            while asyncio.run_coroutine_threadsafe(job(client, job_id), loop).result(30) \
                    .processed_count < 1:  # fmt: skip
                assert loop_time_of(loop) < deadline, "the first image was never saved"
                time.sleep(0.02)
            cancel = client.post(f"/api/v1/jobs/{job_id}/cancel")
            response = asyncio.run_coroutine_threadsafe(cancel, loop).result(30)
            assert response.json()["data"]["status"] == "cancelled"

    worker = workers(before=cancel_during_the_second_image)
    await asyncio.to_thread(worker.run, job_id)
    row = await job(client, job_id)
    assert row.status == "cancelled"
    assert worker.detector.images == 2, "the third image must not be started after the cancel"
    # The second image finished computing after the cancel: its results were not kept.
    assert list(await stored(client, job_id)) == [up["uploaded_files"][0]["file_id"]]
    assert row.processed_count == 1


async def test_a_job_is_taken_over_from_a_dead_worker_whose_late_writes_are_refused(
    client: httpx.AsyncClient, workers: Callable[..., Worker]
) -> None:
    up = await upload_scenes(client)
    job_id = await new_job(client, up["upload_id"])
    stuck, release = threading.Event(), threading.Event()

    def hang_on_the_second_image(n: int) -> None:
        if n == 2:
            stuck.set()
            assert release.wait(60), "the test never released the first worker"

    first = workers("host-a:1", before=hang_on_the_second_image)
    first_run = asyncio.create_task(asyncio.to_thread(first.run, job_id))
    assert await asyncio.to_thread(stuck.wait, 60)
    # The first worker is silent (no heartbeat here); once stale, another takes the job over.
    second = workers("host-b:1")
    deadline = loop_time() + 30
    while (await job(client, job_id)).status != "completed":
        assert loop_time() < deadline, "the job was not taken over"
        await asyncio.to_thread(second.run, job_id)
        await asyncio.sleep(0.1)
    row = await job(client, job_id)
    assert (row.worker_id, row.attempts) == ("host-b:1", 2)
    assert second.detector.images == 2, "the image saved by the first worker is not redone"
    before_release = await stored(client, job_id)
    release.set()
    await first_run  # its late save of the second image is refused: it stops quietly
    after = await stored(client, job_id)
    assert after == before_release
    assert (await job(client, job_id)).status == "completed"
    assert after == await clean_run(client, workers, up["upload_id"])


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def loop_time_of(loop: asyncio.AbstractEventLoop) -> float:
    return loop.time()
