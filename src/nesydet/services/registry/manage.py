"""Use cases that change a registered asset: its default, deprecation, routing, deletion."""

from __future__ import annotations

import logging

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.asset_names import Kind
from nesydet.db import session as uow
from nesydet.db.base import utcnow
from nesydet.db.models import Asset, AssetVersion
from nesydet.db.repositories import assets as repo
from nesydet.errors_assets import IN_USE, InvalidRouting
from nesydet.services.registry.catalogue import collection, get_asset, get_version
from nesydet.storage import Storage, StorageFailure

log = logging.getLogger(__name__)

MAX_WEIGHT = 1000


async def set_default(*, session: AsyncSession, kind: Kind, name: str, version: str) -> Asset:
    """Make ``version`` the default; a deprecated version cannot be (InvalidRouting)."""
    asset = await get_asset(session=session, kind=kind, name=name, lock=True)
    row = await get_version(session=session, kind=kind, name=name, version=version)
    if row.deprecated_at is not None:
        raise InvalidRouting(
            f"Version {version!r} is deprecated", details="undeprecate it first, or pick another"
        )
    asset.default_version = version
    asset.updated_at = utcnow()
    return asset


async def set_deprecated(
    *, session: AsyncSession, kind: Kind, name: str, version: str, deprecated: bool
) -> tuple[Asset, AssetVersion]:
    """Deprecate (or restore) a version; the default or a routed version cannot be deprecated."""
    asset = await get_asset(session=session, kind=kind, name=name, lock=True)
    row = await get_version(session=session, kind=kind, name=name, version=version)
    if deprecated:
        _not_live(kind, asset, version, "deprecated")
    row.deprecated_at = (row.deprecated_at or utcnow()) if deprecated else None
    asset.updated_at = utcnow()
    return asset, row


def _not_live(kind: Kind, asset: Asset, version: str, what: str) -> None:
    if asset.default_version == version:
        raise IN_USE[kind](
            f"Version {version!r} is the default: it cannot be {what}",
            details=f"make another version the default first (PATCH /api/v1/{collection(kind)}"
            f"/{asset.name})",
        )
    if (asset.routing or {}).get(version):
        raise IN_USE[kind](
            f"Version {version!r} has a weight in the routing: it cannot be {what}",
            details=f"change the routing first (PUT /api/v1/models/{asset.name}/routing)",
        )


async def delete_version(
    *, session: AsyncSession, storage: Storage, kind: Kind, name: str, version: str
) -> None:
    """Delete a version that no queued or running job, default or routing uses.

    The default may go when it is the last version (the asset goes with it). The stored
    file is deleted after the commit unless another version has the same content.
    """
    asset = await get_asset(session=session, kind=kind, name=name, lock=True)
    row = await get_version(session=session, kind=kind, name=name, version=version)
    jobs = await repo.active_jobs_using(session=session, kind=kind, name=name, version=version)
    if jobs:
        raise IN_USE[kind](
            f"A queued or running job uses {kind} {name!r} version {version!r}",
            details=f"jobs {', '.join(jobs)}: wait for them or cancel them",
        )
    versions = await repo.versions(session=session, kind=kind, names=[name])
    if len(versions) > 1:
        _not_live(kind, asset, version, "deleted")
    shared = await repo.stored_elsewhere(session=session, kind=kind, sha256=row.sha256, but=row.id)
    export_key = (row.export or {}).get("storage_key")
    keys = [row.storage_key, *([export_key] if export_key else [])]
    await repo.delete_version(session=session, row=row)

    async def remove_files() -> None:
        for key in keys if not shared else keys[1:]:
            try:
                await anyio.to_thread.run_sync(storage.delete, key)
            except StorageFailure as exc:  # the rows are gone; an orphan file only costs space
                log.warning("registry file not deleted", extra={"key": key, "error": str(exc)})

    uow.after_commit(session, remove_files)


async def set_routing(*, session: AsyncSession, name: str, weights: dict[str, int]) -> Asset:
    """Set a model's routing weights ({} removes it); every version named must exist, not be
    deprecated, and at least one weight must be positive."""
    asset = await get_asset(session=session, kind="model", name=name, lock=True)
    rows = {v.version: v for v in await repo.versions(session=session, kind="model", names=[name])}
    problems = [_weight_problem(v, w, rows.get(v)) for v, w in sorted(weights.items())]
    errors = [p for p in problems if p is not None]
    if weights and not any(w > 0 for w in weights.values()):
        errors.append({"field": "weights", "error_code": "INVALID_VALUE", "error": "all zero"})
    if errors:
        raise InvalidRouting(
            "Invalid routing",
            errors=errors,
            details="; ".join(f"{e['field']}: {e['error']}" for e in errors),
        )
    asset.routing = {v: int(w) for v, w in sorted(weights.items())} or None
    asset.updated_at = utcnow()
    return asset


def _weight_problem(version: str, weight: int, row: AssetVersion | None) -> dict[str, str] | None:
    field = f"weights.{version}"
    if row is None:
        return {"field": field, "error_code": "NOT_FOUND", "error": "no such version"}
    if row.deprecated_at is not None:
        return {"field": field, "error_code": "DEPRECATED", "error": "the version is deprecated"}
    if not 0 <= weight <= MAX_WEIGHT:
        return {"field": field, "error_code": "INVALID_VALUE", "error": f"0 to {MAX_WEIGHT}"}
    return None
