"""Queries on idempotency keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.db.models import IdempotencyKey


async def add(*, session: AsyncSession, row: IdempotencyKey) -> None:
    """Insert a key and flush (raises IntegrityError when the key exists)."""
    session.add(row)
    await session.flush()


async def get(*, session: AsyncSession, scope: str, key: str) -> IdempotencyKey | None:
    """Return a key's row, or None."""
    stmt = (
        select(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def set_response(
    *, session: AsyncSession, scope: str, key: str, status_code: int, body: dict[str, Any]
) -> None:
    """Record the response given to the request that claimed the key."""
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(status_code=status_code, response=body)
        .execution_options(synchronize_session=False)
    )


async def delete_expired(*, session: AsyncSession, scope: str, key: str, before: datetime) -> None:
    """Delete one key if it was created before ``before``."""
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.scope == scope,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at < before,
        )
    )


async def delete_older(*, session: AsyncSession, before: datetime) -> int:
    """Delete every key created before ``before``; return how many."""
    result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]
