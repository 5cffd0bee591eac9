"""Use cases for jobs: create (Endpoint 2), read status (Endpoint 3), list, cancel."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.config import Settings
from nesydet.db import session as uow
from nesydet.db.base import utcnow
from nesydet.db.models import Job, JobFile, Upload, UploadedFile
from nesydet.db.repositories import jobs as job_repo
from nesydet.domain import ACTIVE_STATUSES, JobStatus
from nesydet.errors import (
    InvalidFileIds,
    JobNotCancellable,
    JobNotFound,
    ValidationFailed,
)
from nesydet.ids import new_id
from nesydet.observability import metrics, tracing
from nesydet.schemas.jobs import PredictRequest
from nesydet.services.dispatch import Dispatcher
from nesydet.services.job_assets import (
    JobAssets,
    check_assets,
    recorded_config,
    resolve_assets,
)
from nesydet.services.job_status import job_status_payload, publish
from nesydet.services.status_cache import CachedStatus, StatusCache
from nesydet.services.uploads import get_upload
from nesydet.services.webhooks import subscriptions as webhooks
from nesydet.services.webhooks.outbox import WebhookOutbox

log = logging.getLogger(__name__)


async def estimate_completion(
    *, session: AsyncSession, settings: Settings, model: str, images: int, now: datetime
) -> datetime:
    """Return when a new job should finish: the images ahead of it and its own, at the
    seconds per image measured on recent jobs of the same model (its ``model_name``)."""
    per_image = await job_repo.seconds_per_image(session=session, model_name=model)
    per_image = per_image or settings.default_seconds_per_image
    ahead = await job_repo.images_ahead(session=session)
    workers = await job_repo.live_workers(
        session=session, since=now - timedelta(seconds=settings.heartbeat_stale_s)
    )
    return now + timedelta(seconds=per_image * (ahead / max(1, workers) + images))


async def create_job(
    *,
    session: AsyncSession,
    settings: Settings,
    dispatcher: Dispatcher,
    sessionmaker: async_sessionmaker[AsyncSession],
    cache: StatusCache,
    request: PredictRequest,
    owner: str | None,
) -> Job:
    """Validate a predict request, commit the job, then send its task.

    ``owner`` limits the uploads the caller may use (None: any). The job belongs to the
    upload's owner.

    Raises:
        UploadNotFound: the upload does not exist, is another owner's, or has expired.
        InvalidFileIds: some ``file_ids`` are not files of that upload.
        InvalidConfig: the model or rules file named by the config is not available.
        WebhookUrlRefused: ``webhook_url`` fails the SSRF guard.
    """
    await webhooks.check_job_url(request.webhook_url, settings)  # before anything is looked up
    upload = await get_upload(session=session, upload_id=request.upload_id, owner=owner)
    files = _chosen_files(upload, request.file_ids)
    model_file = check_assets(request.config, settings)
    job_id = new_id("job")
    assets = await resolve_assets(
        session=session, config=request.config, settings=settings, job_id=job_id,
        model_file=model_file,
    )  # fmt: skip
    now = utcnow()
    eta = await estimate_completion(
        session=session, settings=settings, model=assets.model.ref["name"], images=len(files),
        now=now,
    )  # fmt: skip
    job = _new_job(
        job_id, upload, files, recorded_config(request.config, model_file, assets), assets,
        now=now, eta=eta, time_limit_s=settings.job_time_limit_s(len(files)),
    )  # fmt: skip
    await job_repo.add(session=session, job=job)
    tracing.set_attribute("job_id", job.id)  # on the request's span
    await webhooks.add_job_webhook(session=session, job=job, url=request.webhook_url)

    _after_commit(session, job, dispatcher=dispatcher, sessionmaker=sessionmaker, cache=cache)
    return job


def _new_job(
    job_id: str,
    upload: Upload,
    files: list[UploadedFile],
    config: dict[str, Any],
    assets: JobAssets,
    *,
    now: datetime,
    eta: datetime,
    time_limit_s: float,
) -> Job:
    """Return the row of a new, queued job over ``files`` of ``upload``."""
    return Job(
        id=job_id,
        upload_id=upload.id,
        owner_id=upload.owner_id,
        status=JobStatus.QUEUED,
        config=config,
        model_name=assets.model.ref["name"],
        model_version=assets.model.version,
        model_ref=assets.model.ref,
        rules_ref=assets.rules.ref if assets.rules else None,
        estimated_completion=eta,
        file_count=len(files),
        processed_count=0,
        created_at=now,
        updated_at=now,
        attempts=0,
        retries=0,
        time_limit_s=time_limit_s,
        files=[JobFile(file_id=f.id, position=i, status="pending") for i, f in enumerate(files)],
    )


def _after_commit(
    session: AsyncSession,
    job: Job,
    *,
    dispatcher: Dispatcher,
    sessionmaker: async_sessionmaker[AsyncSession],
    cache: StatusCache,
) -> None:
    """Count the new job, publish its status and send its task, once it is committed."""
    model, version = job.model_name, job.model_version or ""

    async def after() -> None:
        metrics.INFERENCE_JOBS.labels(status=JobStatus.QUEUED).inc()
        metrics.MODEL_JOBS.labels(model=model, version=version).inc()
        await publish(cache, job)
        await dispatcher.send_and_record(sessionmaker, job.id, job.file_count)

    uow.after_commit(session, after)


def _chosen_files(upload: Upload, file_ids: list[str] | None) -> list[UploadedFile]:
    """Return the files a job covers: those named (in that order), else all of the upload.

    Raises:
        InvalidFileIds: some ids are not files of the upload.
        ValidationFailed: an id is named twice.
    """
    if file_ids is None:
        return list(upload.files)
    by_id = {f.id: f for f in upload.files}
    wrong = [
        {
            "field": f"file_ids[{i}]",
            "error_code": "FILE_NOT_IN_UPLOAD",
            "error": f"{fid} is not a file of {upload.id}",
        }
        for i, fid in enumerate(file_ids)
        if fid not in by_id
    ]
    if wrong:
        raise InvalidFileIds(
            "file_ids must name files of the upload",
            errors=wrong,
            details=", ".join(e["error"] for e in wrong),
        )
    if len(set(file_ids)) != len(file_ids):
        raise ValidationFailed(
            "file_ids has duplicates",
            errors=[{"field": "file_ids", "error_code": "DUPLICATE", "error": "each file once"}],
        )
    return [by_id[fid] for fid in file_ids]


def _unknown_job(job_id: str) -> JobNotFound:
    # The same answer for a job that does not exist and for another owner's.
    return JobNotFound("Job not found", details=f"no job with id {job_id}")


async def get_job(*, session: AsyncSession, job_id: str, owner: str | None) -> Job:
    """Return the job (only ``owner``'s, when given), or raise JobNotFound."""
    job = await job_repo.get(session=session, job_id=job_id, owner=owner)
    if job is None:
        raise _unknown_job(job_id)
    return job


async def _status(
    *, session: AsyncSession, cache: StatusCache, job_id: str, owner: str | None
) -> CachedStatus:
    cached = await cache.get(job_id)
    if cached is None:
        job = await get_job(session=session, job_id=job_id, owner=owner)
        await publish(cache, job)
        payload = json.dumps(job_status_payload(job)).encode()
        cached = CachedStatus(owner=job.owner_id, payload_json=payload)
    if owner is not None and cached.owner != owner:
        raise _unknown_job(job_id)
    return cached


async def get_status(
    *, session: AsyncSession, cache: StatusCache, job_id: str, owner: str | None
) -> dict[str, Any]:
    """Return the status payload: from the cache when fresh there, else from the database."""
    cached = await _status(session=session, cache=cache, job_id=job_id, owner=owner)
    return cached.payload()


async def status_body(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    cache: StatusCache,
    job_id: str,
    owner: str | None,
) -> bytes:
    """Return the status endpoint's whole JSON body; the hot path of every poller.

    A cache hit costs one Redis read and no JSON work (the cached text is the payload, and
    the entry names the owner); only a miss opens a database session.
    """
    async with sessionmaker() as session:  # connects only on a cache miss
        cached = await _status(session=session, cache=cache, job_id=job_id, owner=owner)
    return b'{"status":"success","data":' + cached.payload_json + b"}"


async def cancel_job(
    *,
    session: AsyncSession,
    cache: StatusCache,
    job_id: str,
    owner: str | None,
    dispatcher: Dispatcher | None = None,
) -> Job:
    """Cancel a queued or processing job; a running one stops before its next image.

    Raises:
        JobNotFound: no such job.
        JobNotCancellable: the job already completed or failed.
    """
    await get_job(session=session, job_id=job_id, owner=owner)
    now = utcnow()
    cancelled = await job_repo.transition(
        session=session,
        job_id=job_id,
        from_statuses=list(ACTIVE_STATUSES),
        values={
            "status": JobStatus.CANCELLED,
            "cancelled_at": now,
            "updated_at": now,
            "current_stage": None,
        },
    )
    if cancelled is None:
        job = await get_job(session=session, job_id=job_id, owner=owner)
        if job.status == JobStatus.CANCELLED:
            return job
        raise JobNotCancellable(
            "The job has already finished", details=f"job {job_id} is {job.status}"
        )

    # The job.cancelled webhook deliveries commit with the cancellation (``dispatcher``
    # sends their tasks afterwards).
    outbox = WebhookOutbox.of(dispatcher) if dispatcher is not None else None
    deliveries = await outbox.record(session, cancelled) if outbox is not None else []

    async def after() -> None:
        metrics.INFERENCE_JOBS.labels(status=JobStatus.CANCELLED).inc()
        await publish(cache, cancelled)
        if outbox is not None and deliveries:
            await outbox.send(deliveries)

    uow.after_commit(session, after)
    return cancelled


def encode_cursor(job: Job) -> str:
    """Return an opaque cursor that continues after ``job``."""
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Return the position a cursor encodes; ValidationFailed when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|", 1)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:  # ours always carry their zone
            raise ValueError("cursor time has no zone")
        return when, job_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            "Invalid cursor",
            errors=[
                {
                    "field": "cursor",
                    "error_code": "INVALID_VALUE",
                    "error": "not a cursor from this API",
                }
            ],
        ) from exc


async def list_jobs(
    *,
    session: AsyncSession,
    status: str | None,
    limit: int,
    cursor: str | None,
    owner: str | None,
) -> tuple[list[Job], str | None]:
    """Return a page of jobs (``owner``'s, when given), newest first, and the next cursor."""
    before = decode_cursor(cursor) if cursor else None
    jobs = await job_repo.list_page(
        session=session, status=status, limit=limit + 1, before=before, owner=owner
    )
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return jobs, (encode_cursor(jobs[-1]) if more and jobs else None)
