"""Figures about the whole service read from the database, for ``/metrics``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.repositories import jobs as job_repo
from nesydet.domain import JobStatus


@dataclass(frozen=True, slots=True)
class ClusterFigures:
    """Jobs waiting for a worker, and workers that beat recently."""

    queued_jobs: int
    live_workers: int


async def cluster_figures(
    *, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> ClusterFigures:
    """Return the queue length and the number of live workers, from the database."""
    async with sessionmaker() as session:
        queued = await job_repo.count_by_status(session=session, status=JobStatus.QUEUED)
        workers = await job_repo.live_workers(
            session=session, since=utcnow() - timedelta(seconds=settings.heartbeat_stale_s)
        )
    return ClusterFigures(queued_jobs=queued, live_workers=workers)
