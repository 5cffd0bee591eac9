"""Queries on uploads and their files."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from nesydet.db.models import Job, Upload, UploadedFile
from nesydet.domain import JobStatus


async def add(*, session: AsyncSession, upload: Upload) -> None:
    """Stage an upload and its files and flush them."""
    session.add(upload)
    await session.flush()


async def get(*, session: AsyncSession, upload_id: str, owner: str | None = None) -> Upload | None:
    """Return the upload with its files (only if ``owner``'s, when given), or None."""
    stmt = select(Upload).where(Upload.id == upload_id).options(selectinload(Upload.files))
    if owner is not None:
        stmt = stmt.where(Upload.owner_id == owner)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_file(
    *, session: AsyncSession, file_id: str, owner: str | None = None
) -> UploadedFile | None:
    """Return one uploaded file (only if ``owner``'s, when given), or None."""
    stmt = select(UploadedFile).where(UploadedFile.id == file_id)
    if owner is not None:
        stmt = stmt.join(Upload, Upload.id == UploadedFile.upload_id).where(
            Upload.owner_id == owner
        )
    return (await session.execute(stmt)).scalar_one_or_none()


async def retention_candidates(
    *, session: AsyncSession, created_before: datetime
) -> list[tuple[Upload, datetime | None, int]]:
    """Return live uploads created before ``created_before``, each with the end of its latest
    job (None without jobs) and how many of its jobs are queued or running."""
    ended = func.max(
        func.coalesce(Job.completed_at, Job.failed_at, Job.cancelled_at, Job.updated_at)
    )
    active = func.count(Job.id).filter(Job.status.in_([JobStatus.QUEUED, JobStatus.PROCESSING]))
    stmt = (
        select(Upload, ended, active)
        .outerjoin(Job, Job.upload_id == Upload.id)
        .where(Upload.expired_at.is_(None), Upload.created_at < created_before)
        .group_by(Upload.id)
        .order_by(Upload.created_at)
    )
    return [(upload, last, int(n)) for upload, last, n in (await session.execute(stmt)).all()]


async def mark_expired(*, session: AsyncSession, upload_id: str, when: datetime) -> bool:
    """Mark an upload expired unless a job is queued or running on it; return whether done."""
    busy = select(Job.id).where(
        Job.upload_id == upload_id, Job.status.in_([JobStatus.QUEUED, JobStatus.PROCESSING])
    )
    result = await session.execute(
        update(Upload)
        .where(Upload.id == upload_id, Upload.expired_at.is_(None), ~exists(busy))
        .values(expired_at=when)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def expired_with_leftovers(*, session: AsyncSession) -> list[str]:
    """Return expired uploads that still have files or jobs (a cleanup that did not finish)."""
    files = select(UploadedFile.id).where(UploadedFile.upload_id == Upload.id)
    jobs = select(Job.id).where(Job.upload_id == Upload.id)
    stmt = select(Upload.id).where(Upload.expired_at.is_not(None), exists(files) | exists(jobs))
    return list((await session.execute(stmt)).scalars())


async def delete_contents(*, session: AsyncSession, upload_id: str) -> None:
    """Delete an upload's jobs (with their files and detections) and its file rows."""
    await session.execute(delete(Job).where(Job.upload_id == upload_id))
    await session.execute(delete(UploadedFile).where(UploadedFile.upload_id == upload_id))


async def remove(*, session: AsyncSession, upload_id: str) -> None:
    """Delete an upload and everything made from it."""
    await delete_contents(session=session, upload_id=upload_id)
    await session.execute(delete(Upload).where(Upload.id == upload_id))
