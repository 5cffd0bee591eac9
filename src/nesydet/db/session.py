"""Async engine and session factory; a unit of work that runs callbacks around its commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

Callback = Callable[[], Awaitable[None]]
_AFTER_COMMIT = "after_commit"
_ON_ROLLBACK = "on_rollback"


def create_engine(url: str, *, echo: bool = False, null_pool: bool = False) -> AsyncEngine:
    """Return an async engine; SQLite gets WAL, foreign keys and a busy timeout."""
    kwargs: dict[str, Any] = {"echo": echo}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
    if null_pool:
        kwargs = {k: v for k, v in kwargs.items() if k not in {"pool_size", "max_overflow"}}
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
    """Commit, then run the after-commit callbacks; on failure roll back and run the undo ones."""
    try:
        await session.commit()
    except BaseException:
        await rollback(session)
        raise
    session.info.pop(_ON_ROLLBACK, None)
    for callback in session.info.pop(_AFTER_COMMIT, []):
        await callback()


async def rollback(session: AsyncSession) -> None:
    """Roll back and run the undo callbacks registered with :func:`on_rollback`."""
    session.info.pop(_AFTER_COMMIT, None)
    try:
        await session.rollback()
    finally:
        for callback in reversed(session.info.pop(_ON_ROLLBACK, [])):
            await callback()
