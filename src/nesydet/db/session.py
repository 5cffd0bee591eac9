"""Async engine and session factory; a unit of work that runs callbacks around its commit."""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None]]
_AFTER_COMMIT = "after_commit"
_ON_ROLLBACK = "on_rollback"


# How long a request waits for the database before it answers 503: to connect, for a free
# connection in the pool, and for one statement.
CONNECT_TIMEOUT_S = 5.0
POOL_TIMEOUT_S = 5.0
STATEMENT_TIMEOUT_S = 30.0


def create_engine(url: str, *, echo: bool = False, null_pool: bool = False) -> AsyncEngine:
    """Return an async engine; SQLite gets WAL, foreign keys and a busy timeout.

    On PostgreSQL, connections are checked before use (a restarted server is reconnected
    to, not reported) and every wait is bounded, so an unreachable database fails fast.
    """
    kwargs: dict[str, Any] = {"echo": echo}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            pool_timeout=POOL_TIMEOUT_S,
            connect_args={"timeout": CONNECT_TIMEOUT_S, "command_timeout": STATEMENT_TIMEOUT_S},
        )
    if null_pool:
        pooled = {"pool_size", "max_overflow", "pool_timeout"}
        kwargs = {k: v for k, v in kwargs.items() if k not in pooled}
        kwargs["poolclass"] = NullPool
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return the session factory; objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def after_commit(session: AsyncSession, callback: Callback) -> None:
    """Run ``callback`` once the session's transaction has committed (e.g. send a task)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def on_rollback(session: AsyncSession, callback: Callback) -> None:
    """Run ``callback`` if the session's work is rolled back (e.g. delete files just written)."""
    session.info.setdefault(_ON_ROLLBACK, []).append(callback)


async def commit(session: AsyncSession) -> None:
    """Commit, then run the after-commit callbacks; on failure roll back and run the undo ones.

    Once the commit succeeded the request has done its work: a callback that fails (say the
    broker is away when a job's task is sent) is logged and the others still run, so the
    client gets its answer, never a 500 for work that was stored.
    """
    try:
        await session.commit()
    except BaseException:
        await rollback(session)
        raise
    session.info.pop(_ON_ROLLBACK, None)
    for callback in session.info.pop(_AFTER_COMMIT, []):
        try:
            await callback()
        except Exception:  # the work is committed; what follows it is best effort
            log.exception("an after-commit step failed")


async def rollback(session: AsyncSession) -> None:
    """Roll back and run the undo callbacks registered with :func:`on_rollback`."""
    session.info.pop(_AFTER_COMMIT, None)
    try:
        await session.rollback()
    finally:
        for callback in reversed(session.info.pop(_ON_ROLLBACK, [])):
            await callback()


_UNREACHABLE_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EHOSTUNREACH,
     errno.ENETUNREACH, errno.ETIMEDOUT, errno.EPIPE}
)  # fmt: skip


def is_unavailable(exc: BaseException) -> bool:
    """Return whether ``exc`` means the database cannot be reached now (retry later), as
    opposed to a fault in the request or the code.

    The driver's own error is looked for down the chain of causes: SQLAlchemy wraps
    asyncpg's errors (``the database system is starting up``) in adapters of its own.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _unavailable_here(current):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def _unavailable_here(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _UNREACHABLE_ERRNOS
    return isinstance(exc, _asyncpg_unavailable())


def _asyncpg_unavailable() -> tuple[type[BaseException], ...]:
    try:
        from asyncpg import exceptions as pg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return ()
    return (
        pg.PostgresConnectionError,
        pg.CannotConnectNowError,
        pg.ConnectionDoesNotExistError,
        pg.InterfaceError,
        pg.AdminShutdownError,
        pg.CrashShutdownError,
        pg.TooManyConnectionsError,
    )
