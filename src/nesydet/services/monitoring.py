"""Figures about the whole service for the API's ``/metrics``: the same on every API replica.

They are read once per scrape and cheaply: one grouped count of jobs by status, one count of
live workers, and one length of the broker's ``inference`` queue. A figure that cannot be read
(database or broker away) is left out of the scrape rather than failing it: the process's own
metrics still matter most when a dependency is down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.repositories import jobs as job_repo
from nesydet.domain import JobStatus
from nesydet.services.broker_scan import queue_length

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClusterFigures:
    """Messages waiting in the broker, live worker processes, and jobs by status (None or
    empty: not known right now)."""

    queue_length: int | None
    live_workers: int | None
    jobs_by_status: dict[str, int] = field(default_factory=dict)


async def cluster_figures(
    *, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> ClusterFigures:
    """Return the queue length, the number of live workers and the jobs in each status."""
    waiting = await anyio.to_thread.run_sync(
        lambda: queue_length(settings.broker_url, settings.broker_dir)
    )
    try:
        async with sessionmaker() as session:
            counts = await job_repo.counts_by_status(session=session)
            workers = await job_repo.live_workers(
                session=session, since=utcnow() - timedelta(seconds=settings.heartbeat_stale_s)
            )
    except Exception as exc:  # the database is away: the scrape goes on without these
        log.warning("cluster figures unavailable", extra={"error": repr(exc)})
        return ClusterFigures(queue_length=waiting, live_workers=None)
    by_status = {status.value: counts.get(status.value, 0) for status in JobStatus}
    return ClusterFigures(queue_length=waiting, live_workers=workers, jobs_by_status=by_status)
