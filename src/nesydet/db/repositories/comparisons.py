"""Queries on comparisons of two jobs, and the rows a comparison is computed from."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.db.models import Comparison


async def add(*, session: AsyncSession, comparison: Comparison) -> None:
    """Stage a comparison and flush."""
    session.add(comparison)
    await session.flush()


async def get(*, session: AsyncSession, comparison_id: str, owner: str | None) -> Comparison | None:
    """Return the comparison (only if ``owner``'s, when given), or None."""
    stmt = select(Comparison).where(Comparison.id == comparison_id)
    if owner is not None:
        stmt = stmt.where(Comparison.owner_id == owner)
    return (await session.execute(stmt)).scalar_one_or_none()
