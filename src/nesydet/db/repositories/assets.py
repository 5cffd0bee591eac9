"""Queries on the model and rules registry, and on the jobs that use a version."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.db.models import Asset, AssetVersion, Job
from nesydet.domain import ACTIVE_STATUSES


async def get(*, session: AsyncSession, kind: str, name: str, lock: bool = False) -> Asset | None:
    """Return the asset, or None; ``lock`` holds its row until the commit (PostgreSQL)."""
    stmt = select(Asset).where(Asset.kind == kind, Asset.name == name)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_assets(*, session: AsyncSession, kind: str) -> list[Asset]:
    """Return every asset of a kind, by name."""
    stmt = select(Asset).where(Asset.kind == kind).order_by(Asset.name)
    return list((await session.execute(stmt)).scalars())


async def versions(*, session: AsyncSession, kind: str, names: list[str]) -> list[AssetVersion]:
    """Return the versions of the named assets, oldest first."""
    stmt = (
        select(AssetVersion)
        .where(AssetVersion.kind == kind, AssetVersion.name.in_(names))
        .order_by(AssetVersion.name, AssetVersion.id)
    )
    return list((await session.execute(stmt)).scalars())


async def get_version(
    *, session: AsyncSession, kind: str, name: str, version: str
) -> AssetVersion | None:
    """Return one version, or None."""
    stmt = select(AssetVersion).where(
        AssetVersion.kind == kind, AssetVersion.name == name, AssetVersion.version == version
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def by_sha256(*, session: AsyncSession, kind: str, sha256: str) -> list[AssetVersion]:
    """Return the versions whose file has this content, oldest first."""
    stmt = (
        select(AssetVersion)
        .where(AssetVersion.kind == kind, AssetVersion.sha256 == sha256)
        .order_by(AssetVersion.id)
    )
    return list((await session.execute(stmt)).scalars())


async def get_version_by_id(*, session: AsyncSession, version_id: int) -> AssetVersion | None:
    """Return a version by its row id, or None."""
    return await session.get(AssetVersion, version_id)


async def add(*, session: AsyncSession, row: Asset | AssetVersion) -> None:
    """Stage a row and flush."""
    session.add(row)
    await session.flush()


async def delete_version(*, session: AsyncSession, row: AssetVersion) -> None:
    """Delete one version (and its asset when it was the last); flush."""
    await session.delete(row)
    await session.flush()
    left = await session.scalar(
        select(func.count())
        .select_from(AssetVersion)
        .where(AssetVersion.kind == row.kind, AssetVersion.name == row.name)
    )
    if not left:
        await session.execute(delete(Asset).where(Asset.kind == row.kind, Asset.name == row.name))


def _ref_field(kind: str) -> Any:
    return Job.model_ref if kind == "model" else Job.rules_ref


async def active_jobs_using(
    *, session: AsyncSession, kind: str, name: str, version: str, limit: int = 5
) -> list[str]:
    """Return ids of queued or processing jobs that resolved to this version (a few)."""
    ref = _ref_field(kind)
    stmt = (
        select(Job.id)
        .where(Job.status.in_(list(ACTIVE_STATUSES)))
        .where(ref["name"].as_string() == name)
        .where(ref["version"].as_string() == version)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def jobs_by_version(*, session: AsyncSession, name: str) -> dict[str, int]:
    """Return how many jobs each version of a model ran (or is to run), by version."""
    stmt = (
        select(Job.model_version, func.count())
        .where(Job.model_name == name, Job.model_version.is_not(None))
        .group_by(Job.model_version)
    )
    return {str(v): int(n) for v, n in (await session.execute(stmt)).all()}


async def stored_elsewhere(*, session: AsyncSession, kind: str, sha256: str, but: int) -> bool:
    """Return whether another version keeps the same stored file."""
    stmt = (
        select(func.count())
        .select_from(AssetVersion)
        .where(AssetVersion.kind == kind, AssetVersion.sha256 == sha256, AssetVersion.id != but)
    )
    return bool(await session.scalar(stmt))
