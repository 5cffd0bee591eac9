"""Queries of the monitoring dashboard: the active jobs, and the jobs of a window counted by
bucket in one pass over the table.

Counting happens in the database, so a week of jobs comes back as a few hundred rows. A
bucket's index is computed from the timestamp's seconds since 1970; that arithmetic differs
between PostgreSQL and SQLite, hence the two compiled forms of each bucket function.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Integer, and_, bindparam, case, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import defer
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from nesydet.db.models import Job
from nesydet.domain import ACTIVE_STATUSES, JobStatus

# The Julian day of 1970-01-01T00:00Z, and seconds in a day: SQLite's julianday() to epoch.
_UNIX_EPOCH_JD = 2440587.5
_DAY_S = 86400.0


class _Bucket(FunctionElement[int]):
    """The index of the bucket holding a timestamp, from ``(ts - start) / width``."""

    type = Integer()
    inherit_cache = True


class FloorBucket(_Bucket):
    """Index ``k`` such that ``start + k*width <= ts < start + (k+1)*width``."""

    name = "floor_bucket"
    inherit_cache = True


class CeilBucket(_Bucket):
    """Index ``k`` such that ``start + k*width < ts <= start + (k+1)*width``: an event at
    ``ts`` is first seen at the end of bucket ``k`` (-1 or less: at or before ``start``)."""

    name = "ceil_bucket"
    inherit_cache = True


def _parts(element: _Bucket, compiler: SQLCompiler, **kw: Any) -> tuple[str, str, str]:
    ts, start, width = (compiler.process(c, **kw) for c in element.clauses)
    return ts, start, width


def _pg_offset(element: _Bucket, compiler: SQLCompiler, **kw: Any) -> str:
    # date_part gives a double; EXTRACT gives a numeric, several times slower per row.
    ts, start, width = _parts(element, compiler, **kw)
    return f"((date_part('epoch', {ts}) - {start}) / {width})"


@compiles(FloorBucket, "postgresql")
def _floor_pg(element: FloorBucket, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(FLOOR({_pg_offset(element, compiler, **kw)}) AS INTEGER)"


@compiles(CeilBucket, "postgresql")
def _ceil_pg(element: CeilBucket, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(CAST(CEIL({_pg_offset(element, compiler, **kw)}) AS INTEGER) - 1)"


def _sqlite_offset(element: _Bucket, compiler: SQLCompiler, **kw: Any) -> str:
    ts, start, width = _parts(element, compiler, **kw)
    return f"(((julianday({ts}) - {_UNIX_EPOCH_JD}) * {_DAY_S} - {start}) / {width})"


# SQLite has no FLOOR or CEIL everywhere, and CAST truncates towards zero: shifted by _SHIFT
# the offset is positive, where truncating is flooring, and it is computed once per row (a
# timestamp's julianday() is most of a row's cost). An offset past +-_SHIFT buckets (15 years
# at the narrowest) comes out one bucket off, still far outside the window.
_SHIFT = 1_000_000_000


@compiles(FloorBucket, "sqlite")
def _floor_sqlite(element: FloorBucket, compiler: SQLCompiler, **kw: Any) -> str:
    x = _sqlite_offset(element, compiler, **kw)
    return f"(CAST({x} + {_SHIFT} AS INTEGER) - {_SHIFT})"


@compiles(CeilBucket, "sqlite")
def _ceil_sqlite(element: CeilBucket, compiler: SQLCompiler, **kw: Any) -> str:
    # ceil(x) = -floor(-x)
    x = _sqlite_offset(element, compiler, **kw)
    return f"({_SHIFT} - CAST({_SHIFT} - {x} AS INTEGER) - 1)"


def _owned(owner: str | None) -> list[ColumnElement[bool]]:
    return [Job.owner_id == owner] if owner is not None else []


async def active_jobs(*, session: AsyncSession, owner: str | None, limit: int) -> list[Job]:
    """Return up to ``limit`` queued or processing jobs (``owner``'s, when given), newest
    first."""
    stmt = (
        select(Job)
        .options(defer(Job.config, raiseload=True))  # a job's config is not shown here
        .where(Job.status.in_(sorted(ACTIVE_STATUSES)), *_owned(owner))
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def count_active(*, session: AsyncSession, owner: str | None) -> int:
    """Return how many jobs are queued or processing (``owner``'s, when given)."""
    stmt = (
        select(func.count())
        .select_from(Job)
        .where(Job.status.in_(sorted(ACTIVE_STATUSES)), *_owned(owner))
    )
    return int(await session.scalar(stmt) or 0)


class WindowCount(NamedTuple):
    """How many jobs share these bucket indexes (None: the event has not happened)."""

    came: int  # CeilBucket of created_at
    left: int | None  # CeilBucket of when it stopped waiting; None: queued now
    ended: int | None  # FloorBucket of when a completed or failed job ended
    completed: bool
    mine: bool  # the owner's, or anyone's when no owner was given
    jobs: int
    timed: int  # completed jobs with a processing time
    seconds: float  # their summed processing time


def _left_queue_at() -> ColumnElement[Any]:
    """When a job stopped waiting: its start, or its end if it never started; None while it
    is queued (a job queued again for a retry waits again, whatever its stamps say)."""
    return case(
        (Job.status == JobStatus.QUEUED, None),
        else_=func.coalesce(
            Job.started_at, Job.completed_at, Job.failed_at, Job.cancelled_at, Job.updated_at
        ),
    )


async def window_counts(
    *, session: AsyncSession, start: datetime, end: datetime, width_s: float, owner: str | None
) -> list[WindowCount]:
    """Return the jobs that matter to the window ``[start, end]`` (created by its end, and
    active or ended after its start), grouped by the buckets of their events."""
    edges: tuple[ColumnElement[float], ...] = (
        bindparam("bucket_start", start.timestamp()),
        bindparam("bucket_width", width_s),
    )
    # failed_at is only set on a final failure and completed_at on success; updated_at stands
    # in for rows without the stamp, as on the status endpoint.
    ended_at = func.coalesce(Job.completed_at, Job.failed_at, Job.updated_at)
    left_active_at = func.coalesce(
        Job.completed_at, Job.failed_at, Job.cancelled_at, Job.updated_at
    )
    finished = Job.status.in_([JobStatus.COMPLETED, JobStatus.FAILED])
    completed = Job.status == JobStatus.COMPLETED
    rows = (
        select(
            CeilBucket(Job.created_at, *edges).label("came"),
            CeilBucket(_left_queue_at(), *edges).label("left"),
            case((finished, FloorBucket(ended_at, *edges))).label("ended"),
            completed.label("completed"),
            (Job.owner_id == owner if owner is not None else true()).label("mine"),
            case((completed, Job.processing_time_seconds)).label("seconds"),
        )
        .where(
            # Two branches, each with its own index, and created_at in both: SQLite would
            # otherwise read the whole table through ix_jobs_created_at_id.
            or_(
                and_(Job.status.in_(sorted(ACTIVE_STATUSES)), Job.created_at <= end),
                # The write that ends a job stamps updated_at too (the worker's store, cancel,
                # the sweeper), never before the end stamp, so ix_jobs_updated_at finds every
                # job that ended in the window without reading the older ones; the exact test
                # follows. A job changed later for another reason adds nothing to any bucket.
                and_(Job.updated_at >= start, left_active_at >= start, Job.created_at <= end),
            ),
        )
        .subquery()
    )
    # Grouped on the subquery's columns: grouping on the expressions themselves would not
    # match on PostgreSQL, whose bound parameters are numbered anew in each place.
    keys = (rows.c.came, rows.c.left, rows.c.ended, rows.c.completed, rows.c.mine)
    stmt = select(
        *keys, func.count(), func.count(rows.c.seconds), func.sum(rows.c.seconds)
    ).group_by(*keys)
    return [
        WindowCount(
            int(came), left, ended, bool(done), bool(mine), int(n), int(timed), float(secs or 0)
        )
        for came, left, ended, done, mine, n, timed, secs in (await session.execute(stmt)).all()
    ]
