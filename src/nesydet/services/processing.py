"""What a worker does with one job: claim it, run the pipeline image by image, store every
image's results atomically, and finish, retry or fail it as Workflow 3 says.

The runner is synchronous (the pipeline is CPU-bound and Prolog must stay on this thread);
database calls are coroutines run on the worker process's own event loop.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import secrets
import tempfile
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import Job, JobFile, JobStatus
from nesydet.db.repositories import jobs as job_repo
from nesydet.observability import metrics
from nesydet.pipeline import (
    ImageLoadError,
    InferenceError,
    ModelLoadError,
    Pipeline,
    PipelineConfig,
    PipelineError,
    PipelineResult,
    RulesError,
    export,
    load_image,
)
from nesydet.schemas.jobs import job_status_payload
from nesydet.services.dispatch import Dispatcher
from nesydet.services.results import detection_row
from nesydet.services.saver import BackgroundSaver
from nesydet.services.status_cache import SyncStatusCache
from nesydet.storage import Storage, StorageFailure

log = logging.getLogger(__name__)
T = TypeVar("T")

ANNOTATED_QUALITY = 90
THUMBNAIL_QUALITY = 85


class JobFailure(Exception):
    """A job cannot go on; ``retryable`` failures are tried again later."""

    def __init__(self, code: str, message: str, details: str = "", *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retryable = retryable


# Pipeline errors as Workflow 3 names them: (code, message, retried?).
_PIPELINE_FAILURES: dict[type[PipelineError], tuple[str, str, bool]] = {
    ModelLoadError: ("MODEL_LOAD_ERROR", "Failed to load YOLO model", False),
    RulesError: ("RULES_ERROR", "Symbolic reasoning failed", False),
    ImageLoadError: ("FILE_ERROR", "Could not read an image", False),
    InferenceError: ("INFERENCE_ERROR", "Inference failed", True),
}


class JobLost(Exception):
    """The job was cancelled, or another worker took it over: stop without writing."""


def result_key(job_id: str, file_id: str, name: str) -> str:
    """Return the storage key of one artefact of a job's file."""
    return f"results/{job_id}/{file_id}/{name}"


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()


@dataclass
class HeldJob:
    """The job this worker holds, as a detached row kept in step with what it commits."""

    job: Job
    token: str
    started: float
    # Seconds per image until this worker has timed one of its own: the rate measured on
    # recent jobs of the model, as the estimate given when the job was created.
    seconds_per_image: float
    images_done_here: int = 0
    last_write: float = 0.0
    # The main thread and the saving thread both change the job: one at a time, so the
    # status clients see never goes backwards.
    lock: threading.Lock = field(default_factory=threading.Lock)


def estimate_finish(held: HeldJob, remaining: int, *, now: float | None = None) -> datetime:
    """Return when the held job should finish ``remaining`` more images.

    At this worker's own pace once it has done an image of the job, before that at the rate
    measured on recent jobs of the model.
    """
    now = time.monotonic() if now is None else now
    if held.images_done_here:
        per_image = (now - held.started) / held.images_done_here
    else:
        per_image = held.seconds_per_image
    return utcnow() + timedelta(seconds=per_image * remaining)


class JobRunner:
    """Runs jobs in one worker process; one instance per process, reused for every task."""

    def __init__(
        self,
        *,
        settings: Settings,
        pipeline: Pipeline,
        storage: Storage,
        sessionmaker: async_sessionmaker[AsyncSession],
        loop: asyncio.AbstractEventLoop,
        cache: SyncStatusCache,
        dispatcher: Dispatcher,
        saver: BackgroundSaver,
        worker_id: str,
        on_hold: Any = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.storage = storage
        self.sessionmaker = sessionmaker
        self.loop = loop
        self.cache = cache
        self.dispatcher = dispatcher
        self.saver = saver
        self.worker_id = worker_id
        # Told which job this process holds, so its heartbeat thread can refresh it.
        self.on_hold = on_hold or (lambda held: None)

    def _db(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    # -- state changes -------------------------------------------------------------------

    def _publish_status(self, job: Job) -> None:
        self.cache.put(job.id, job_status_payload(job))

    def _claim(self, job_id: str) -> HeldJob | None:
        """Take the job if it is free (or its holder went silent); load it with its files."""
        token = secrets.token_hex(8)
        stale = utcnow() - timedelta(seconds=self.settings.heartbeat_stale_s)

        async def claim() -> tuple[Job, float | None] | None:
            async with self.sessionmaker() as session:
                job = await job_repo.get(session=session, job_id=job_id)
                if job is None:
                    return None
                taken = await job_repo.claim(
                    session=session,
                    job_id=job_id,
                    token=token,
                    worker_id=self.worker_id,
                    stale_before=stale,
                    time_limit_s=job.time_limit_s,
                )
                await session.commit()
                if not taken:
                    return None
                # populate_existing: the row as the claim left it, with its files.
                job = await job_repo.get(session=session, job_id=job_id, with_files=True)
                if job is None:
                    return None
                rate = await job_repo.seconds_per_image(session=session, model_name=job.model_name)
                return job, rate

        claimed = self._db(claim())
        if claimed is None:
            return None
        job, rate = claimed
        return HeldJob(
            job=job,
            token=token,
            started=time.monotonic(),
            seconds_per_image=rate or self.settings.default_seconds_per_image,
        )

    def _update(self, held: HeldJob, **values: Any) -> None:
        """Write ``values`` to the held job, in the database first, then the cache."""
        values.setdefault("updated_at", utcnow())

        async def write() -> bool:
            async with self.sessionmaker() as session:
                ok = await job_repo.update_held(
                    session=session, job_id=held.job.id, token=held.token, values=values
                )
                await session.commit()
                return ok

        with held.lock:
            if not self._db(write()):
                raise JobLost(held.job.id)
            held.last_write = time.monotonic()
            for key, value in values.items():
                setattr(held.job, key, value)
            self._publish_status(held.job)

    def _progress(self, held: HeldJob, **values: Any) -> None:
        """Write a progress detail unless one was written very recently.

        Stage names change several times per image; clients poll every few seconds, so
        writing each one would cost more than it tells. Each image's results are committed
        regardless (and that commit notices a cancellation).
        """
        if time.monotonic() - held.last_write >= self.settings.progress_interval_s:
            self._update(held, **values)

    # -- the work ------------------------------------------------------------------------

    def run(self, job_id: str) -> None:
        """Process a job to its end (or hand it back for a retry); never raises for job errors."""
        held = self._claim(job_id)
        if held is None:
            log.info(
                "job not claimed: finished, cancelled or held elsewhere", extra={"job_id": job_id}
            )
            return
        self.on_hold(held)
        metrics.INFERENCE_JOBS.labels(status=JobStatus.PROCESSING).inc()
        metrics.ACTIVE_JOBS.inc()
        self._publish_status(held.job)
        log.info("job started", extra={"job_id": job_id, "attempt": held.job.attempts})
        try:
            self._process(held)
        except JobLost:
            log.info("job cancelled or taken over; stopping", extra={"job_id": job_id})
        except SoftTimeLimitExceeded:
            limit = f"{held.job.time_limit_s:.0f} s"
            self._fail_or_retry(
                held,
                JobFailure(
                    "INFERENCE_ERROR",
                    "Job time limit exceeded",
                    f"the job ran past {limit}",
                    retryable=False,
                ),
            )
        except JobFailure as failure:
            self._fail_or_retry(held, failure)
        except Exception as exc:  # anything unforeseen is an inference failure, retried
            log.exception("job crashed", extra={"job_id": job_id})
            self._fail_or_retry(
                held,
                JobFailure(
                    "INFERENCE_ERROR", "Inference pipeline failed", repr(exc), retryable=True
                ),
            )
        finally:
            metrics.ACTIVE_JOBS.dec()
            self.on_hold(None)

    def _process(self, held: HeldJob) -> None:
        job = held.job
        config = self._pipeline_config(job)
        pending = [f for f in job.files if f.status != "done"]
        done_before = job.file_count - len(pending)
        self._update(
            held,
            processed_count=done_before,
            current_stage="Loading model",
            estimated_completion=estimate_finish(held, len(pending)),
        )
        try:
            self.pipeline.detector(config.model_path)  # loaded once per process, then cached
        except PipelineError as exc:
            raise self._pipeline_failure(exc, None) from exc
        try:
            for n, job_file in enumerate(pending):
                self._process_file(held, job_file, config, done_before + n)
                held.images_done_here += 1
            self.saver.wait()
        except BaseException:
            # The image being saved finishes (or fails) before the job's fate is written.
            self.saver.drain()
            raise
        self._finish(held)

    def _pipeline_config(self, job: Job) -> PipelineConfig:
        try:
            return PipelineConfig.from_dict(job.config)
        except (TypeError, ValueError) as exc:
            raise JobFailure(
                "INVALID_CONFIG", "Invalid job configuration", str(exc), retryable=False
            ) from exc

    def _process_file(
        self, held: HeldJob, job_file: JobFile, config: PipelineConfig, index: int
    ) -> None:
        total = held.job.file_count
        remaining = total - index

        def on_stage(stage: str) -> None:
            self._progress(held, current_stage=f"{stage} ({index + 1}/{total})")

        self._progress(
            held,
            current_stage=f"Reading image ({index + 1}/{total})",
            estimated_completion=estimate_finish(held, remaining),
        )
        image = self._read_image(job_file)
        try:
            result = self.pipeline.run(image, config, on_stage=on_stage)
        except PipelineError as exc:
            raise self._pipeline_failure(exc, job_file) from exc
        finally:
            image.close()
        self.saver.submit(lambda: self._save(held, job_file, result, processed=index + 1))

    def _save(
        self, held: HeldJob, job_file: JobFile, result: PipelineResult, processed: int
    ) -> None:
        """Store one image's artefacts and results (on the saving thread)."""
        keys = self._store_artefacts(held.job.id, job_file, result)
        self._commit_file(held, job_file, result, keys, processed=processed)
        model = result.model_name
        metrics.MODEL_INFERENCE_TIME.labels(model=model).observe(
            result.timings.get("inference", 0.0)
        )
        for stage, seconds in result.timings.items():
            metrics.PIPELINE_STAGE_TIME.labels(stage=stage).observe(seconds)
        for det in result.detections:
            metrics.DETECTIONS.labels(**{"class": det.class_name}).inc()

    def _pipeline_failure(self, exc: PipelineError, job_file: JobFile | None) -> JobFailure:
        code, message, retryable = _PIPELINE_FAILURES.get(type(exc), (exc.code, exc.message, False))
        where = ""
        if job_file is not None and code != "MODEL_LOAD_ERROR":
            where = f"{job_file.file.filename} ({job_file.file_id}): "
        return JobFailure(code, message, where + (exc.details or exc.message), retryable=retryable)

    def _read_image(self, job_file: JobFile) -> Image.Image:
        upload = job_file.file
        try:
            path = self.storage.local_path(upload.storage_key)
            if path is not None:
                if not path.is_file():
                    raise JobFailure(
                        "FILE_ERROR",
                        "Could not read an image",
                        f"{upload.filename} ({upload.id}): the stored file is missing",
                        retryable=False,
                    )
                return load_image(path)
            with tempfile.NamedTemporaryFile(suffix=Path(upload.storage_key).suffix) as tmp:
                for chunk in self.storage.iter_chunks(upload.storage_key):
                    tmp.write(chunk)
                tmp.flush()
                image = load_image(Path(tmp.name))
                image.load()
                return image
        except ImageLoadError as exc:
            raise JobFailure(
                "FILE_ERROR",
                "Could not read an image",
                f"{upload.filename} ({upload.id}): {exc.details or exc.message}",
                retryable=False,
            ) from exc
        except StorageFailure as exc:
            raise JobFailure(
                "STORAGE_ERROR", "Could not read an image from storage", str(exc), retryable=True
            ) from exc

    def _store_artefacts(
        self, job_id: str, job_file: JobFile, result: PipelineResult
    ) -> dict[str, str | None]:
        width, height = result.image_size
        labels_key = result_key(job_id, job_file.file_id, "labels.txt")
        thumbnail_key = result_key(job_id, job_file.file_id, "thumbnail.jpg")
        annotated_key = None
        try:
            labels = export.to_yolo(result.detections, width, height)
            self.storage.put_bytes(labels_key, labels.encode())
            self.storage.put_bytes(thumbnail_key, _jpeg(result.thumbnail, THUMBNAIL_QUALITY))
            if result.annotated is not None:
                annotated_key = result_key(job_id, job_file.file_id, "annotated.jpg")
                self.storage.put_bytes(annotated_key, _jpeg(result.annotated, ANNOTATED_QUALITY))
        except StorageFailure as exc:
            raise JobFailure(
                "STORAGE_ERROR", "Could not save results", str(exc), retryable=True
            ) from exc
        return {
            "labels_key": labels_key,
            "thumbnail_key": thumbnail_key,
            "annotated_key": annotated_key,
        }

    def _commit_file(
        self,
        held: HeldJob,
        job_file: JobFile,
        result: PipelineResult,
        keys: dict[str, str | None],
        processed: int,
    ) -> None:
        """Store one image's detections and progress in one transaction, if still ours."""
        width, height = result.image_size
        rows = [detection_row(det, i) for i, det in enumerate(result.detections)]
        now = utcnow()
        remaining = held.job.file_count - processed
        job_values = {
            "processed_count": processed,
            "updated_at": now,
            "estimated_completion": estimate_finish(held, remaining),
        }

        async def write() -> bool:
            async with self.saver.sessionmaker() as session:
                if not await job_repo.update_held(
                    session=session, job_id=held.job.id, token=held.token, values=job_values
                ):
                    await session.rollback()
                    return False
                await job_repo.replace_detections(
                    session=session, job_id=held.job.id, file_id=job_file.file_id, rows=rows
                )
                await job_repo.finish_file(
                    session=session,
                    job_id=held.job.id,
                    file_id=job_file.file_id,
                    values={
                        "detection_count": len(rows),
                        "dropped_count": len(result.dropped),
                        "width": width,
                        "height": height,
                        "timings": {k: round(v, 6) for k, v in result.timings.items()},
                        "processed_at": now,
                        **keys,
                    },
                )
                await session.commit()
                return True

        with held.lock:
            try:
                ok = self.saver.db(write())
            except (OperationalError, DBAPIError) as exc:
                raise JobFailure(
                    "STORAGE_ERROR", "Could not save results", repr(exc), retryable=True
                ) from exc
            if not ok:
                raise JobLost(held.job.id)
            for key, value in job_values.items():
                setattr(held.job, key, value)
            self._publish_status(held.job)

    def _finish(self, held: HeldJob) -> None:
        async def totals() -> tuple[int, float | None]:
            async with self.sessionmaker() as session:
                return await job_repo.summary(session=session, job_id=held.job.id)

        count, mean = self._db(totals())
        now = utcnow()
        started = held.job.started_at or now
        elapsed = (now - started).total_seconds()
        self._update(
            held,
            status=JobStatus.COMPLETED,
            completed_at=now,
            current_stage=None,
            estimated_completion=None,
            total_detections=count,
            average_confidence=round(mean, 6) if mean is not None else None,
            processing_time_seconds=round(elapsed, 3),
            processed_count=held.job.file_count,
        )
        metrics.INFERENCE_JOBS.labels(status=JobStatus.COMPLETED).inc()
        metrics.INFERENCE_DURATION.observe(elapsed)
        log.info(
            "job completed",
            extra={"job_id": held.job.id, "detections": count, "seconds": round(elapsed, 2)},
        )

    def _fail_or_retry(self, held: HeldJob, failure: JobFailure) -> None:
        delays = self.settings.retry_delays_s
        retries = held.job.retries
        now = utcnow()
        try:
            if failure.retryable and retries < len(delays):
                jitter = self.settings.retry_jitter
                delay = delays[retries] * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311
                self._update(
                    held,
                    status=JobStatus.QUEUED,
                    retries=retries + 1,
                    claim_token=None,
                    worker_id=None,
                    current_stage=f"Retrying in {delay:.0f} s after {failure.code}",
                    estimated_completion=now + timedelta(seconds=delay),
                    # When its task is due: the sweeper takes a queued job as lost only once
                    # it is overdue by resend_queued_after_s, so it never cuts the delay short.
                    sent_at=now + timedelta(seconds=delay),
                    error_code=failure.code,
                    error_message=failure.message,
                    error_details=failure.details,
                )
                log.warning(
                    "job will be retried",
                    extra={
                        "job_id": held.job.id,
                        "code": failure.code,
                        "delay_s": round(delay, 1),
                        "retry": retries + 1,
                    },
                )
                self._send_retry(held.job, delay)
                return
            self._update(
                held,
                status=JobStatus.FAILED,
                failed_at=now,
                current_stage=None,
                estimated_completion=None,
                error_code=failure.code,
                error_message=failure.message,
                error_details=failure.details,
            )
        except JobLost:
            return
        metrics.INFERENCE_JOBS.labels(status=JobStatus.FAILED).inc()
        log.error(
            "job failed",
            extra={"job_id": held.job.id, "code": failure.code, "details": failure.details},
        )

    def _send_retry(self, job: Job, delay: float) -> None:
        try:
            self.dispatcher.publish(job.id, job.file_count, countdown=delay)
        except Exception as exc:
            log.warning("could not send the retry", extra={"job_id": job.id, "error": repr(exc)})
        else:
            return
        # Not sent: mark it so that the sweeper sends it once it is due (the broker may be
        # back by then), not a full resend interval later.
        due = utcnow() + timedelta(seconds=delay - self.settings.resend_queued_after_s)

        async def overdue() -> None:
            async with self.sessionmaker() as session:
                await job_repo.mark_sent(session=session, job_id=job.id, when=due)
                await session.commit()

        self._db(overdue())
