"""Queries on jobs, their files and detections. Transitions are conditional updates, so two
processes racing on one job (a redelivered task, the sweeper) can never both win.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from nesydet.db.base import utcnow
from nesydet.db.models import Detection, Job, JobFile, Worker
from nesydet.domain import JobStatus


async def add(*, session: AsyncSession, job: Job) -> None:
    """Stage a job with its files and flush."""
    session.add(job)
    await session.flush()


async def get(
    *, session: AsyncSession, job_id: str, with_files: bool = False, owner: str | None = None
) -> Job | None:
    """Return a job (optionally with its files and their uploads; only if ``owner``'s, when
    given), or None."""
    stmt = select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
    if owner is not None:
        stmt = stmt.where(Job.owner_id == owner)
    if with_files:
        stmt = stmt.options(selectinload(Job.files))
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    *,
    session: AsyncSession,
    status: str | None,
    limit: int,
    before: tuple[datetime, str] | None,
    owner: str | None = None,
) -> list[Job]:
    """Return up to ``limit`` jobs (``owner``'s, when given), newest first, older than the
    ``before`` key when given."""
    stmt = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if owner is not None:
        stmt = stmt.where(Job.owner_id == owner)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if before is not None:
        created, job_id = before
        stmt = stmt.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    return list((await session.execute(stmt)).scalars())


async def mark_sent(*, session: AsyncSession, job_id: str, when: datetime) -> None:
    """Record when the job's task was handed to the broker (or, for a retry, is due)."""
    await session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED).values(sent_at=when)
    )


async def claim(
    *,
    session: AsyncSession,
    job_id: str,
    token: str,
    worker_id: str,
    stale_before: datetime,
    time_limit_s: float,
) -> Job | None:
    """Take the job for this worker (queued, or processing with a dead holder); return the
    claimed row, or None when someone else has it or it is over."""
    now = utcnow()
    stmt = (
        update(Job)
        .where(
            Job.id == job_id,
            or_(
                Job.status == JobStatus.QUEUED,
                and_(
                    Job.status == JobStatus.PROCESSING,
                    or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before),
                ),
            ),
        )
        .values(
            status=JobStatus.PROCESSING,
            claim_token=token,
            worker_id=worker_id,
            heartbeat_at=now,
            started_at=func.coalesce(Job.started_at, now),
            deadline_at=now + timedelta(seconds=time_limit_s),
            attempts=Job.attempts + 1,
            error_code=None,
            error_message=None,
            error_details=None,
            updated_at=now,
            current_stage="Starting",
            version=Job.version + 1,
        )
    )
    return await _returned(session, stmt)


async def _returned(session: AsyncSession, stmt: Update) -> Job | None:
    """Run a conditional UPDATE of one job; return the row as it now is, or None if no row
    matched. The row comes back by RETURNING, so it is exactly what was written."""
    result = await session.execute(
        stmt.returning(Job).execution_options(synchronize_session=False, populate_existing=True)
    )
    return result.scalar_one_or_none()


async def update_held(
    *, session: AsyncSession, job_id: str, token: str, values: dict[str, Any]
) -> Job | None:
    """Update a job this worker still holds (processing, same claim); None if it lost it."""
    return await _returned(
        session,
        update(Job)
        .where(Job.id == job_id, Job.claim_token == token, Job.status == JobStatus.PROCESSING)
        .values(**values, version=Job.version + 1),
    )


async def transition(
    *, session: AsyncSession, job_id: str, from_statuses: Sequence[str], values: dict[str, Any]
) -> Job | None:
    """Move a job out of one of ``from_statuses``; None when it was in none of them."""
    return await _returned(
        session,
        update(Job)
        .where(Job.id == job_id, Job.status.in_(list(from_statuses)))
        .values(**values, version=Job.version + 1),
    )


async def release_stale(
    *,
    session: AsyncSession,
    job_id: str,
    token: str | None,
    stale_before: datetime,
    values: dict[str, Any],
) -> Job | None:
    """Apply ``values`` to a processing job only if its holder is still the same, silent one;
    return the updated row, or None."""
    return await _returned(
        session,
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.PROCESSING,
            Job.claim_token == token if token is not None else Job.claim_token.is_(None),
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before),
        )
        .values(**values, version=Job.version + 1),
    )


async def heartbeat(*, session: AsyncSession, job_id: str, token: str) -> None:
    """Refresh the job's heartbeat while this worker holds it."""
    await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.claim_token == token, Job.status == JobStatus.PROCESSING)
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def replace_detections(
    *, session: AsyncSession, job_id: str, file_id: str, rows: list[dict[str, Any]]
) -> None:
    """Replace a file's detections in a job (a redelivered task never duplicates them)."""
    await session.execute(
        delete(Detection).where(Detection.job_id == job_id, Detection.file_id == file_id)
    )
    if rows:
        await session.execute(
            insert(Detection), [{**r, "job_id": job_id, "file_id": file_id} for r in rows]
        )


async def finish_file(
    *, session: AsyncSession, job_id: str, file_id: str, values: dict[str, Any]
) -> None:
    """Mark one file of a job done with its counts and artefact keys."""
    await session.execute(
        update(JobFile)
        .where(JobFile.job_id == job_id, JobFile.file_id == file_id)
        .values(status="done", **values)
        .execution_options(synchronize_session=False)
    )


async def summary(*, session: AsyncSession, job_id: str) -> tuple[int, float | None]:
    """Return the job's detection count and mean confidence."""
    row = (
        await session.execute(
            select(func.count(Detection.id), func.avg(Detection.confidence)).where(
                Detection.job_id == job_id
            )
        )
    ).one()
    return int(row[0]), (float(row[1]) if row[1] is not None else None)


async def detections(
    *, session: AsyncSession, job_id: str, file_id: str | None = None
) -> list[Detection]:
    """Return a job's detections (one file's when given), in file and index order."""
    stmt = select(Detection).where(Detection.job_id == job_id)
    if file_id is not None:
        stmt = stmt.where(Detection.file_id == file_id)
    stmt = stmt.order_by(Detection.file_id, Detection.idx)
    return list((await session.execute(stmt)).scalars())


async def job_files(*, session: AsyncSession, job_id: str) -> list[JobFile]:
    """Return the job's files in order, with their uploaded-file rows."""
    stmt = select(JobFile).where(JobFile.job_id == job_id).order_by(JobFile.position)
    return list((await session.execute(stmt)).scalars())


async def latest_done_file(
    *, session: AsyncSession, file_id: str, job_id: str | None
) -> JobFile | None:
    """Return the file's result in that job, or in its most recent completed job."""
    stmt = (
        select(JobFile)
        .join(Job, Job.id == JobFile.job_id)
        .where(JobFile.file_id == file_id, Job.status == JobStatus.COMPLETED)
        .order_by(Job.completed_at.desc())
        .limit(1)
    )
    if job_id is not None:
        stmt = stmt.where(Job.id == job_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def seconds_per_image(
    *, session: AsyncSession, model_name: str, recent: int = 50
) -> float | None:
    """Return the mean processing seconds per image over recent completed jobs of a model."""
    recent_jobs = (
        select(Job.processing_time_seconds, Job.file_count)
        .where(Job.status == JobStatus.COMPLETED, Job.model_name == model_name)
        .order_by(Job.completed_at.desc())
        .limit(recent)
        .subquery()
    )
    row = (
        await session.execute(
            select(
                func.sum(recent_jobs.c.processing_time_seconds), func.sum(recent_jobs.c.file_count)
            )
        )
    ).one()
    if not row[0] or not row[1]:
        return None
    return float(row[0]) / float(row[1])


async def images_ahead(*, session: AsyncSession) -> int:
    """Return how many images wait in queued or processing jobs."""
    value = await session.scalar(
        select(func.coalesce(func.sum(Job.file_count - Job.processed_count), 0)).where(
            Job.status.in_([JobStatus.QUEUED, JobStatus.PROCESSING])
        )
    )
    return int(value or 0)


async def count_by_status(*, session: AsyncSession, status: str) -> int:
    """Return how many jobs are in a status."""
    return int(
        await session.scalar(select(func.count()).select_from(Job).where(Job.status == status)) or 0
    )


async def counts_by_status(*, session: AsyncSession) -> dict[str, int]:
    """Return how many jobs there are in each status (statuses with none are left out)."""
    stmt = select(Job.status, func.count()).group_by(Job.status)
    return {str(status): int(n) for status, n in (await session.execute(stmt)).all()}


async def unsent(
    *, session: AsyncSession, created_before: datetime, sent_before: datetime
) -> list[tuple[str, int]]:
    """Return (id, image count) of queued jobs never handed to the broker, or handed over
    long ago."""
    stmt = select(Job.id, Job.file_count).where(
        Job.status == JobStatus.QUEUED,
        or_(
            and_(Job.sent_at.is_(None), Job.created_at < created_before),
            Job.sent_at < sent_before,
        ),
    )
    return [(job_id, count) for job_id, count in (await session.execute(stmt)).all()]


async def sent_before(
    *, session: AsyncSession, before: datetime
) -> list[tuple[str, int, datetime]]:
    """Return (id, image count, sent at) of queued jobs whose task was sent before ``before``."""
    stmt = select(Job.id, Job.file_count, Job.sent_at).where(
        Job.status == JobStatus.QUEUED, Job.sent_at.is_not(None), Job.sent_at < before
    )
    rows = (await session.execute(stmt)).all()
    return [(job_id, count, sent) for job_id, count, sent in rows if sent is not None]


async def take_resend(
    *, session: AsyncSession, job_id: str, sent_at: datetime, now: datetime
) -> bool:
    """Record a resend of a queued job's task if nobody else did since ``sent_at``; return
    whether this caller won (several sweepers may race for it)."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.sent_at == sent_at)
        .values(sent_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def stale_processing(*, session: AsyncSession, stale_before: datetime) -> list[Job]:
    """Return processing jobs whose worker stopped sending heartbeats."""
    stmt = select(Job).where(
        Job.status == JobStatus.PROCESSING,
        or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before),
    )
    return list((await session.execute(stmt)).scalars())


async def worker_heartbeat(
    *, session: AsyncSession, worker_id: str, hostname: str, pid: int, job_id: str | None
) -> None:
    """Insert or refresh a worker's row."""
    now = utcnow()
    result = await session.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(heartbeat_at=now, current_job_id=job_id)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        session.add(
            Worker(
                id=worker_id,
                hostname=hostname,
                pid=pid,
                started_at=now,
                heartbeat_at=now,
                current_job_id=job_id,
            )
        )


async def remove_worker(*, session: AsyncSession, worker_id: str) -> None:
    """Delete a worker's row when it stops cleanly."""
    await session.execute(delete(Worker).where(Worker.id == worker_id))


async def live_workers(*, session: AsyncSession, since: datetime) -> int:
    """Return the number of workers with a heartbeat since ``since``."""
    return int(
        await session.scalar(
            select(func.count()).select_from(Worker).where(Worker.heartbeat_at >= since)
        )
        or 0
    )


async def prune_workers(*, session: AsyncSession, before: datetime) -> None:
    """Forget workers silent since ``before``."""
    await session.execute(delete(Worker).where(Worker.heartbeat_at < before))


async def ids_of_upload(*, session: AsyncSession, upload_id: str) -> list[str]:
    """Return the ids of an upload's jobs."""
    stmt = select(Job.id).where(Job.upload_id == upload_id)
    return list((await session.execute(stmt)).scalars())


async def remove(*, session: AsyncSession, job_id: str) -> None:
    """Delete a job with its files and detections."""
    await session.execute(delete(Job).where(Job.id == job_id))
