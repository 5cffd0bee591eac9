"""What a worker does with one job: claim it, run the pipeline image by image, save every
image's results, and finish, retry or fail it as Workflow 3 says.

Three threads take part, each with one job:
- the caller's thread (the Celery task) runs the pipeline: the model and Prolog are
  synchronous and CPU-bound, and Prolog must stay on the thread that started it;
- the saving thread (:class:`BackgroundSaver`) encodes and stores an image's artefacts while
  the next image is computed;
- the I/O loop (:class:`IoLoop`) does every database and cache call, for both of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import Job, JobFile
from nesydet.domain import JobStatus
from nesydet.observability import metrics, tracing, worker_metrics
from nesydet.pipeline import Pipeline, PipelineConfig, PipelineError, PipelineResult
from nesydet.services.dispatch import Dispatcher
from nesydet.services.processing.artefacts import read_image, store_artefacts
from nesydet.services.processing.failures import (
    JobFailure,
    JobLost,
    pipeline_failure,
    storage_failure,
)
from nesydet.services.processing.io_loop import IoLoop
from nesydet.services.processing.retry import RetryAt, next_step
from nesydet.services.processing.saver import BackgroundSaver
from nesydet.services.processing.store import Claim, JobStore, estimate_finish
from nesydet.services.registry.files import AssetFetchError, AssetFiles, pipeline_dict
from nesydet.storage import Storage

log = logging.getLogger(__name__)

# Told which job this process now holds (None when it holds none), with the claim token:
# the heartbeat refreshes that job while it is held.
ClaimListener = Callable[[str | None, str | None], None]


def _ignore(_job_id: str | None, _token: str | None) -> None:
    return None


class JobRunner:
    """Runs jobs in one worker process; one instance per process, reused for every task."""

    def __init__(
        self,
        *,
        settings: Settings,
        pipeline: Pipeline,
        storage: Storage,
        store: JobStore,
        io: IoLoop,
        dispatcher: Dispatcher,
        saver: BackgroundSaver,
        on_claim: ClaimListener = _ignore,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.storage = storage
        self.store = store
        self.io = io
        self.dispatcher = dispatcher
        self.saver = saver
        self.on_claim = on_claim
        self.assets = AssetFiles(storage, settings.asset_cache_root, settings.onnx_cache_dir)

    def run(self, job_id: str) -> None:
        """Process a job to its end (or hand it back for a retry); never raises for job errors.

        Traced as one ``job`` span (a child of the sender's span when the task carried one),
        with a span per pipeline stage of each image under it.
        """
        with tracing.span("job", kind=tracing.CONSUMER, attributes={"job_id": job_id}):
            self._run(job_id)

    def _run(self, job_id: str) -> None:
        claim = self.io.run(self.store.claim(job_id))
        if claim is None:
            log.info(
                "job not claimed: finished, cancelled or held elsewhere", extra={"job_id": job_id}
            )
            return
        self.on_claim(job_id, claim.token)
        tracing.set_attribute("job.attempt", claim.job.attempts)
        metrics.INFERENCE_JOBS.labels(status=JobStatus.PROCESSING).inc()
        worker_metrics.ACTIVE_JOBS.inc()
        log.info("job started", extra={"job_id": job_id, "attempt": claim.job.attempts})
        self._log(claim, "info", f"Job started (attempt {claim.job.attempts})")
        try:
            self._process(claim)
        except JobLost:
            log.info("job cancelled or taken over; stopping", extra={"job_id": job_id})
            self._log(claim, "info", "Stopped: the job was cancelled or taken over")
        except SoftTimeLimitExceeded:
            limit = f"{claim.job.time_limit_s:.0f} s"
            timeout = JobFailure(
                "INFERENCE_ERROR",
                "Job time limit exceeded",
                f"the job ran past {limit}",
                retryable=False,
            )
            self._fail_or_retry(claim, timeout)
        except JobFailure as failure:
            self._fail_or_retry(claim, failure)
        except Exception as exc:  # anything unforeseen is an inference failure, retried
            log.exception("job crashed", extra={"job_id": job_id})
            crash = JobFailure(
                "INFERENCE_ERROR", "Inference pipeline failed", repr(exc), retryable=True
            )
            self._fail_or_retry(claim, crash)
        finally:
            worker_metrics.ACTIVE_JOBS.dec()
            self.on_claim(None, None)

    def _write(self, claim: Claim, **values: Any) -> None:
        self.io.run(self.store.write(claim, values))
        if "status" in values:  # the job's outcome: completed, failed, or queued for a retry
            tracing.set_attribute("job.status", str(values["status"]))

    def _log(self, claim: Claim, level: str, message: str, **fields: Any) -> None:
        """Publish a line of the job's log for its watchers, without waiting for it."""
        self.io.start(self.store.log(claim.job_id, level, message, **fields))

    def _progress(self, claim: Claim, **values: Any) -> None:
        """Write a progress detail unless one was written very recently.

        Stage names change several times per image; clients poll every few seconds, so
        writing each one would cost more than it tells. Each image's results are committed
        regardless (and that commit notices a cancellation).
        """
        if time.monotonic() - claim.last_write >= self.settings.progress_interval_s:
            self._write(claim, **values)

    def _process(self, claim: Claim) -> None:
        job = claim.job
        config = self._pipeline_config(job)
        pending = [f for f in job.files if f.status != "done"]
        done_before = job.file_count - len(pending)
        self._log(claim, "info", "Loading model", model=job.model_name)
        self._write(
            claim,
            processed_count=done_before,
            current_stage="Loading model",
            estimated_completion=estimate_finish(claim, len(pending)),
        )
        try:
            self.pipeline.detector(config.model_path)  # loaded once per process, then cached
        except PipelineError as exc:
            raise pipeline_failure(exc, None) from exc
        try:
            for n, job_file in enumerate(pending):
                self._process_file(claim, job_file, config, done_before + n)
                claim.images_done_here += 1
            self.saver.wait()
        except BaseException:
            # The image being saved finishes (or fails) before the job's fate is written.
            self.saver.drain()
            raise
        self._finish(claim)

    def _pipeline_config(self, job: Job) -> PipelineConfig:
        try:
            data = pipeline_dict(job.config, job.model_ref, job.rules_ref, self.assets)
        except AssetFetchError as exc:  # storage may be back on the next attempt
            raise storage_failure("Could not fetch the job's model or rules", exc) from exc
        try:
            return PipelineConfig.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise JobFailure(
                "INVALID_CONFIG", "Invalid job configuration", str(exc), retryable=False
            ) from exc

    def _process_file(
        self, claim: Claim, job_file: JobFile, config: PipelineConfig, index: int
    ) -> None:
        total = claim.job.file_count

        def on_stage(stage: str) -> None:
            self._log(claim, "info", f"{stage} ({index + 1}/{total})", file_id=job_file.file_id)
            self._progress(claim, current_stage=f"{stage} ({index + 1}/{total})")

        self._log(claim, "info", f"Reading image ({index + 1}/{total})", file_id=job_file.file_id)
        self._progress(
            claim,
            current_stage=f"Reading image ({index + 1}/{total})",
            estimated_completion=estimate_finish(claim, total - index),
        )
        image = read_image(self.storage, job_file.file)
        try:
            result = self.pipeline.run(image, config, on_stage=on_stage)
            # The stages ran back to back and the last ended as run() returned.
            tracing.record_steps(
                result.timings,
                end_ns=time.time_ns(),
                attributes={"file_id": job_file.file_id, "image.index": index},
            )
        except PipelineError as exc:
            raise pipeline_failure(exc, job_file) from exc
        finally:
            image.close()
        self.saver.submit(lambda: self._save(claim, job_file, result, processed=index + 1))

    def _save(
        self, claim: Claim, job_file: JobFile, result: PipelineResult, processed: int
    ) -> None:
        """Store one image's artefacts, then its results (runs on the saving thread)."""
        keys = store_artefacts(self.storage, claim.job_id, job_file.file_id, result)
        self.io.run(self.store.save_file(claim, job_file, result, keys, processed=processed))
        job = claim.job
        worker_metrics.MODEL_INFERENCE_TIME.labels(
            model=job.model_name, version=job.model_version or ""
        ).observe(result.timings.get("inference", 0.0))
        for stage, seconds in result.timings.items():
            worker_metrics.PIPELINE_STAGE_TIME.labels(stage=stage).observe(seconds)
        for det in result.detections:
            worker_metrics.DETECTIONS.labels(**{"class": det.class_name}).inc()

    def _finish(self, claim: Claim) -> None:
        count, mean = self.io.run(self.store.totals(claim.job_id))
        now = utcnow()
        elapsed = (now - (claim.job.started_at or now)).total_seconds()
        # Before the final status, which ends every watch of the job.
        self._log(claim, "info", f"Job completed: {count} detections in {elapsed:.1f} s")
        self._write(
            claim,
            status=JobStatus.COMPLETED,
            completed_at=now,
            current_stage=None,
            estimated_completion=None,
            total_detections=count,
            average_confidence=round(mean, 6) if mean is not None else None,
            processing_time_seconds=round(elapsed, 3),
            processed_count=claim.job.file_count,
        )
        metrics.INFERENCE_JOBS.labels(status=JobStatus.COMPLETED).inc()
        worker_metrics.INFERENCE_DURATION.observe(elapsed)
        log.info(
            "job completed",
            extra={"job_id": claim.job_id, "detections": count, "seconds": round(elapsed, 2)},
        )

    def _fail_or_retry(self, claim: Claim, failure: JobFailure) -> None:
        step = next_step(
            retryable=failure.retryable,
            retries_done=claim.job.retries,
            delays_s=self.settings.retry_delays_s,
            jitter=self.settings.retry_jitter,
            now=utcnow(),
        )
        try:
            if isinstance(step, RetryAt):
                self._retry(claim, failure, step)
            else:
                self._fail(claim, failure)
        except JobLost:
            log.info("job cancelled or taken over before its failure was written")

    def _retry(self, claim: Claim, failure: JobFailure, step: RetryAt) -> None:
        self._write(
            claim,
            status=JobStatus.QUEUED,
            retries=step.retry,
            claim_token=None,
            worker_id=None,
            current_stage=f"Retrying in {step.delay_s:.0f} s after {failure.code}",
            estimated_completion=step.at,
            # When its task is due: the sweeper takes a queued job as lost only once it is
            # overdue by resend_queued_after_s, so it never cuts the delay short.
            sent_at=step.at,
            error_code=failure.code,
            error_message=failure.message,
            error_details=failure.details,
        )
        self._log(
            claim,
            "warning",
            f"Retry {step.retry} in {step.delay_s:.0f} s after {failure.code}: {failure.message}",
            code=failure.code,
        )
        log.warning(
            "job will be retried",
            extra={
                "job_id": claim.job_id,
                "code": failure.code,
                "delay_s": round(step.delay_s, 1),
                "retry": step.retry,
            },
        )
        self._send_retry(claim, step)

    def _fail(self, claim: Claim, failure: JobFailure) -> None:
        self._log(
            claim, "error", f"Job failed: {failure.code}: {failure.message}", code=failure.code
        )
        self._write(
            claim,
            status=JobStatus.FAILED,
            failed_at=utcnow(),
            current_stage=None,
            estimated_completion=None,
            error_code=failure.code,
            error_message=failure.message,
            error_details=failure.details,
        )
        metrics.INFERENCE_JOBS.labels(status=JobStatus.FAILED).inc()
        log.error(
            "job failed",
            extra={"job_id": claim.job_id, "code": failure.code, "details": failure.details},
        )

    def _send_retry(self, claim: Claim, step: RetryAt) -> None:
        try:
            self.dispatcher.publish(claim.job_id, claim.job.file_count, countdown=step.delay_s)
            return
        except Exception as exc:  # the broker is away: the sweeper sends it once it is due
            log.warning(
                "could not send the retry", extra={"job_id": claim.job_id, "error": repr(exc)}
            )
        # Marked so that the sweeper sends it when it is due (the broker may be back by then),
        # not a full resend interval later.
        due = step.at - timedelta(seconds=self.settings.resend_queued_after_s)
        self.io.run(self.store.mark_due(claim.job_id, due))
