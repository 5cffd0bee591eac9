"""Deleting data: by retention (spec, Data Protection: files deleted after 7 days) and by their
owner (DELETE on an upload or a job).

An upload is kept ``retention_days`` after its last use: its upload, or the end of its latest
job, whichever is later; never while a job on it is queued or running. Retention marks the
upload expired first (so that no new job can start on it and clients are told why it is
gone), then deletes the files, then the rows; a cleanup cut short is finished by the next one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.db import session as uow
from nesydet.db.base import utcnow
from nesydet.db.models import Upload
from nesydet.db.repositories import jobs as job_repo
from nesydet.db.repositories import uploads as upload_repo
from nesydet.domain import ACTIVE_STATUSES
from nesydet.errors import JobRunning, UploadInUse
from nesydet.observability import metrics
from nesydet.services.jobs import get_job
from nesydet.services.processing.artefacts import results_prefix
from nesydet.services.uploads import get_upload, upload_key
from nesydet.storage import Storage

log = logging.getLogger(__name__)


@dataclass
class Freed:
    """What a deletion removed from storage."""

    objects: int = 0
    bytes: int = 0

    def add(self, counts: tuple[int, int]) -> None:
        """Count a prefix's deletion (objects, bytes)."""
        self.objects += counts[0]
        self.bytes += counts[1]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An upload retention looked at."""

    upload_id: str
    owner_id: str | None
    last_use: datetime
    bytes: int


@dataclass
class CleanupReport:
    """What a cleanup did (or, dry, would do)."""

    deleted: list[Candidate] = field(default_factory=list)
    kept_in_use: list[Candidate] = field(default_factory=list)
    freed: Freed = field(default_factory=Freed)


async def _delete_files(storage: Storage, upload_id: str, job_ids: list[str]) -> Freed:
    freed = Freed()
    for prefix in [upload_key(upload_id), *map(results_prefix, job_ids)]:
        freed.add(await anyio.to_thread.run_sync(storage.delete_prefix, prefix))
    return freed


def _count(reason: str, freed: Freed) -> None:
    metrics.DELETED_OBJECTS.labels(reason=reason).inc(freed.objects)
    metrics.DELETED_BYTES.labels(reason=reason).inc(freed.bytes)


async def _finish(
    *, sessionmaker: async_sessionmaker[AsyncSession], storage: Storage, upload_id: str
) -> Freed:
    """Delete an expired upload's files, then its jobs and file rows (the row stays)."""
    async with sessionmaker() as session:
        job_ids = await job_repo.ids_of_upload(session=session, upload_id=upload_id)
    freed = await _delete_files(storage, upload_id, job_ids)
    async with sessionmaker() as session:
        await upload_repo.delete_contents(session=session, upload_id=upload_id)
        await session.commit()
    return freed


def _last_use(upload: Upload, last_job_end: datetime | None) -> datetime:
    return max(upload.created_at, last_job_end) if last_job_end else upload.created_at


async def cleanup(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
    older_than: timedelta,
    dry_run: bool = False,
    now: datetime | None = None,
) -> CleanupReport:
    """Delete every upload unused for ``older_than`` (nothing, with ``dry_run``)."""
    now = now or utcnow()
    cutoff = now - older_than
    report = CleanupReport()
    async with sessionmaker() as session:
        rows = await upload_repo.retention_candidates(session=session, created_before=cutoff)
        leftovers = [] if dry_run else await upload_repo.expired_with_leftovers(session=session)
    for upload, last_job_end, active in rows:
        candidate = Candidate(
            upload.id, upload.owner_id, _last_use(upload, last_job_end), upload.total_bytes
        )
        if candidate.last_use >= cutoff:
            continue
        if active:
            report.kept_in_use.append(candidate)
            continue
        if dry_run:
            report.deleted.append(candidate)
            continue
        async with sessionmaker() as session:
            marked = await upload_repo.mark_expired(session=session, upload_id=upload.id, when=now)
            await session.commit()
        if not marked:  # a job started on it meanwhile, or another cleanup took it
            continue
        report.deleted.append(candidate)
        leftovers.append(upload.id)
    for upload_id in dict.fromkeys(leftovers):
        freed = await _finish(sessionmaker=sessionmaker, storage=storage, upload_id=upload_id)
        report.freed.add((freed.objects, freed.bytes))
    if not dry_run and report.deleted:
        metrics.EXPIRED_UPLOADS.inc(len(report.deleted))
        _count("retention", report.freed)
        log.info(
            "retention cleanup",
            extra={"uploads": len(report.deleted), "objects": report.freed.objects,
                   "bytes": report.freed.bytes},
        )  # fmt: skip
    return report


async def delete_upload(
    *, session: AsyncSession, storage: Storage, upload_id: str, owner: str | None
) -> None:
    """Delete an upload and everything made from it, for its owner: the rows now (with the
    request's commit), the files right after it.

    Raises:
        UploadNotFound: no such upload, or another owner's.
        UploadInUse: a job on it is queued or running (cancel it first).
    """
    await get_upload(session=session, upload_id=upload_id, owner=owner)
    job_ids = await job_repo.ids_of_upload(session=session, upload_id=upload_id)
    for job_id in job_ids:
        job = await get_job(session=session, job_id=job_id, owner=None)
        if job.status in ACTIVE_STATUSES:
            raise UploadInUse(details=f"job {job_id} is {job.status}: cancel it first")
    await upload_repo.remove(session=session, upload_id=upload_id)
    _files_after_commit(session, storage, [upload_key(upload_id), *map(results_prefix, job_ids)])


async def delete_job(
    *, session: AsyncSession, storage: Storage, job_id: str, owner: str | None
) -> None:
    """Delete a finished job and its results, for its owner (files after the commit).

    Raises:
        JobNotFound: no such job, or another owner's.
        JobRunning: it is queued or running (cancel it first).
    """
    job = await get_job(session=session, job_id=job_id, owner=owner)
    if job.status in ACTIVE_STATUSES:
        raise JobRunning(details=f"job {job_id} is {job.status}: cancel it first")
    await job_repo.remove(session=session, job_id=job_id)
    _files_after_commit(session, storage, [results_prefix(job_id)])


def _files_after_commit(session: AsyncSession, storage: Storage, prefixes: list[str]) -> None:
    async def delete_files() -> None:
        freed = Freed()
        for prefix in prefixes:
            freed.add(await anyio.to_thread.run_sync(storage.delete_prefix, prefix))
        _count("owner", freed)

    uow.after_commit(session, delete_files)
