"""The monitoring dashboard (spec, Workflow 4): the jobs running now, the queue and the
workers, and job completions and the queue's length over a window, all from the database.

Who sees what: the caller's own jobs make up ``current_jobs``, the average inference time and
the completions series (everyone's for admins, viewers, and with authentication off). The
queue's length, now and over time, and the live workers are figures of the whole service,
which every reader may see (``/metrics`` publishes them too): they count jobs, never show them.

The queue's length now is the count of ``queued`` job rows, not the broker's queue
(``broker_scan.queue_length``, which ``/metrics`` uses): it is then the last point of its own
series, it counts the jobs a client is waiting for even when their task has not reached the
broker yet, and the dashboard never waits on a broker that is away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import Job
from nesydet.db.repositories import dashboard as dashboard_repo
from nesydet.db.repositories import jobs as job_repo
from nesydet.db.repositories.dashboard import WindowCount
from nesydet.schemas.jobs import Progress
from nesydet.schemas.monitoring import (
    CURRENT_JOBS_SHOWN,
    CompletionBucket,
    CurrentJob,
    DashboardData,
    DashboardSeries,
    QueuePoint,
    window_length,
)
from nesydet.services.job_status import job_status_payload, status_url


@dataclass(frozen=True, slots=True)
class Buckets:
    """A window cut into ``count`` equal buckets ending at ``end``."""

    end: datetime
    length: timedelta
    count: int

    @property
    def start(self) -> datetime:
        """Return when the window begins."""
        return self.end - self.length

    @property
    def width_s(self) -> float:
        """Return the length of one bucket in seconds."""
        return self.length.total_seconds() / self.count

    def edge(self, index: int) -> datetime:
        """Return where bucket ``index`` begins (``count``: the window's end)."""
        if index >= self.count:
            return self.end
        return self.start + timedelta(seconds=self.width_s * index)


async def dashboard(
    *,
    session: AsyncSession,
    settings: Settings,
    owner: str | None,
    window: str,
    buckets: int,
    now: datetime | None = None,
) -> DashboardData:
    """Return the dashboard over the ``window`` ending now, its series in ``buckets``
    buckets; ``owner``'s jobs only where the figures are per caller, when given."""
    cut = Buckets(end=now or utcnow(), length=window_length(window), count=buckets)
    jobs = await dashboard_repo.active_jobs(session=session, owner=owner, limit=CURRENT_JOBS_SHOWN)
    total = len(jobs)
    if total == CURRENT_JOBS_SHOWN:
        total = await dashboard_repo.count_active(session=session, owner=owner)
    stale_before = cut.end - timedelta(seconds=settings.heartbeat_stale_s)
    workers = await job_repo.live_workers(session=session, since=stale_before)
    tally = _Tally(cut)
    for row in await dashboard_repo.window_counts(
        session=session, start=cut.start, end=cut.end, width_s=cut.width_s, owner=owner
    ):
        tally.add(row)
    return DashboardData(
        scope="all" if owner is None else "own",
        window=window,
        window_start=cut.start,
        window_end=cut.end,
        bucket_seconds=round(cut.width_s, 3),
        current_jobs=[current_job(job) for job in jobs],
        current_jobs_total=total,
        queue_length=tally.queued_now,
        active_workers=workers,
        avg_inference_time_s=tally.average_s(),
        series=DashboardSeries(completions=tally.completions(), queue_length=tally.queue()),
    )


def current_job(job: Job) -> CurrentJob:
    """Return the dashboard's view of an active job (progress as its status shows it)."""
    return CurrentJob(
        job_id=job.id,
        status=job.status,
        upload_id=job.upload_id,
        progress=Progress.model_validate(job_status_payload(job)["progress"]),
        created_at=job.created_at,
        started_at=job.started_at,
        status_url=status_url(job.id),
    )


@dataclass
class _Tally:
    """The series of one window, summed up from the grouped counts."""

    cut: Buckets
    waiting: int = 0  # jobs waiting at the window's start
    queued_now: int = 0  # jobs queued at its end, all owners
    arrivals: list[int] = field(default_factory=list)
    departures: list[int] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    timed: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        for series in (self.arrivals, self.departures, self.completed, self.failed):
            series.extend([0] * self.cut.count)

    def add(self, row: WindowCount) -> None:
        """Count one group of jobs: its wait in the queue, and its end if it is the caller's."""
        came, left, ended = row.came, row.left, row.ended
        if left is None:
            self.queued_now += row.jobs
        # Stamps that say a job stopped waiting before it came: it never waited.
        if left is None or left >= came:
            if came < 0 and (left is None or left >= 0):
                self.waiting += row.jobs
            if 0 <= came < self.cut.count:
                self.arrivals[came] += row.jobs
            if left is not None and 0 <= left < self.cut.count:
                self.departures[left] += row.jobs
        if row.mine and ended is not None and 0 <= ended < self.cut.count:
            (self.completed if row.completed else self.failed)[ended] += row.jobs
            self.timed += row.timed
            self.seconds += row.seconds

    def completions(self) -> list[CompletionBucket]:
        """Return the completed and failed jobs per bucket."""
        edge = self.cut.edge
        return [
            CompletionBucket(start=edge(i), end=edge(i + 1), completed=done, failed=lost)
            for i, (done, lost) in enumerate(zip(self.completed, self.failed, strict=True))
        ]

    def queue(self) -> list[QueuePoint]:
        """Return the jobs waiting at the end of each bucket."""
        points, waiting = [], self.waiting
        for i, (came, left) in enumerate(zip(self.arrivals, self.departures, strict=True)):
            waiting += came - left
            points.append(QueuePoint(at=self.cut.edge(i + 1), queued=max(waiting, 0)))
        return points

    def average_s(self) -> float | None:
        """Return the mean processing time of the completed jobs, or None without any."""
        return round(self.seconds / self.timed, 3) if self.timed else None
