"""Use cases of the registry: register a version, read assets and versions.

A file is stored once by content (``registry/<kind>/<sha256><suffix>``) after its inspection
passed; each version row points at it. The first version of a name becomes its default.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.asset_names import (
    NAME_PATTERN,
    SUFFIXES,
    VERSION_PATTERN,
    Kind,
    next_version,
    storage_key,
)
from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import Asset, AssetVersion
from nesydet.db.repositories import assets as repo
from nesydet.errors import StorageError, ValidationFailed
from nesydet.errors_assets import INVALID, NOT_FOUND, VersionExists
from nesydet.services.registry.inspection import inspect_file
from nesydet.storage import Storage, StorageFailure

log = logging.getLogger(__name__)


async def get_asset(*, session: AsyncSession, kind: Kind, name: str, lock: bool = False) -> Asset:
    """Return the asset, or raise ModelNotFound / RulesNotFound."""
    asset = await repo.get(session=session, kind=kind, name=name, lock=lock)
    if asset is None:
        raise NOT_FOUND[kind](
            f"No {kind} named {name!r}", details=f"see GET /api/v1/{collection(kind)}"
        )
    return asset


async def get_version(
    *, session: AsyncSession, kind: Kind, name: str, version: str
) -> AssetVersion:
    """Return one version, or raise ModelNotFound / RulesNotFound."""
    row = await repo.get_version(session=session, kind=kind, name=name, version=version)
    if row is None:
        await get_asset(session=session, kind=kind, name=name)  # which of the two is missing
        raise NOT_FOUND[kind](
            f"{kind.capitalize()} {name!r} has no version {version!r}",
            details=f"see GET /api/v1/{collection(kind)}/{name}",
        )
    return row


def collection(kind: Kind) -> str:
    """Return the API collection of a kind: models or rules."""
    return "models" if kind == "model" else "rules"


def file_suffix(kind: Kind, filename: str) -> str:
    """Return the file's suffix when the kind accepts it, else raise InvalidModel/Rules."""
    suffix = Path(filename).suffix.lower()
    if suffix not in SUFFIXES[kind]:
        raise INVALID[kind](
            f"A {kind} file must end in {' or '.join(SUFFIXES[kind])}",
            details=f"got {filename!r}",
        )
    return suffix


async def register(
    *,
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    kind: Kind,
    name: str,
    version: str | None,
    staged: Path,
    sha256: str,
    size: int,
    created_by: str | None,
) -> AssetVersion:
    """Inspect a staged file, store it by content and add it as a version.

    ``staged`` has the file's own suffix. Raises VersionExists (the version, or the same
    content, is there already), InvalidModel / InvalidRules, StorageError.
    """
    existing = await repo.versions(session=session, kind=kind, names=[name])
    version = version or next_version([v.version for v in existing])
    _check_new(kind, name, version, sha256, existing)
    meta = await inspect_file(
        kind, staged, timeout_s=settings.inspect_timeout_s, memory_mb=settings.inspect_memory_mb
    )
    suffix = staged.suffix.lower()
    row = AssetVersion(
        kind=kind,
        name=name,
        version=version,
        sha256=sha256,
        format=suffix.lstrip("."),
        size_bytes=size,
        storage_key=storage_key(kind, sha256, suffix),
        meta=meta,
        export={"status": "pending"} if suffix == ".pt" else None,
        created_by=created_by,
        created_at=utcnow(),
    )
    await _store(storage, row.storage_key, staged)
    await _add_rows(session, kind, row, first=not existing)
    log.info("asset registered", extra={"kind": kind, "asset": name, "version": version})
    return row


def _check_new(
    kind: Kind, name: str, version: str, sha256: str, existing: list[AssetVersion]
) -> None:
    for other in existing:
        if other.version == version:
            raise VersionExists(
                f"{kind.capitalize()} {name!r} has a version {version!r} already",
                details="give another version, or leave it out for the next number",
            )
        if other.sha256 == sha256:
            raise VersionExists(
                f"This file is {kind} {name!r} version {other.version!r} already",
                details=f"sha256 {sha256}",
            )


async def _store(storage: Storage, key: str, staged: Path) -> None:
    try:
        if await anyio.to_thread.run_sync(storage.stat, key) is None:
            await anyio.to_thread.run_sync(storage.put_file, key, staged)
    except StorageFailure as exc:
        raise StorageError("Could not store the file", details=str(exc)) from exc


async def _add_rows(session: AsyncSession, kind: Kind, row: AssetVersion, *, first: bool) -> None:
    now = row.created_at
    try:
        if first:
            asset = Asset(kind=kind, name=row.name, default_version=row.version, created_at=now)
            asset.updated_at = now
            await repo.add(session=session, row=asset)
        await repo.add(session=session, row=row)
    except IntegrityError as exc:  # another request registered the same name or version
        raise VersionExists(
            f"{kind.capitalize()} {row.name!r} version {row.version!r} was registered "
            "at the same time",
            details="read it with GET, or send another version",
        ) from exc
    if not first:
        asset = await get_asset(session=session, kind=kind, name=row.name)
        asset.updated_at = now


def check_name(name: str, version: str | None) -> None:
    """Raise ValidationFailed unless name and version are well formed."""
    errors = []
    if not re.match(NAME_PATTERN, name):
        errors.append(("name", "lowercase letters, digits, '.', '_' or '-'; at most 64"))
    if version is not None and not re.match(VERSION_PATTERN, version):
        errors.append(("version", "letters, digits, '.', '_' or '-'; at most 32"))
    if errors:
        raise ValidationFailed(
            "Invalid name or version",
            errors=[{"field": f, "error_code": "INVALID_VALUE", "error": e} for f, e in errors],
            details="; ".join(f"{f}: {e}" for f, e in errors),
        )


async def asset_data(*, session: AsyncSession, asset: Asset, with_versions: bool) -> dict[str, Any]:
    """Return an asset as the API shows it (with its versions, and models' job counts)."""
    rows = await repo.versions(session=session, kind=asset.kind, names=[asset.name])
    data = _summary(asset, rows)
    if with_versions:
        jobs = (
            await repo.jobs_by_version(session=session, name=asset.name)
            if asset.kind == "model"
            else {}
        )
        data["versions"] = [version_data(v, asset, jobs.get(v.version, 0)) for v in rows]
    return data


def _summary(asset: Asset, rows: list[AssetVersion]) -> dict[str, Any]:
    return {
        "name": asset.name,
        "default_version": asset.default_version,
        "latest_version": rows[-1].version if rows else None,
        "version_count": len(rows),
        "routing": asset.routing if asset.kind == "model" else None,
        "created_at": asset.created_at,
        "updated_at": asset.updated_at,
    }


async def list_data(*, session: AsyncSession, kind: Kind) -> list[dict[str, Any]]:
    """Return every asset of a kind as the list shows it."""
    assets = await repo.list_assets(session=session, kind=kind)
    rows = await repo.versions(session=session, kind=kind, names=[a.name for a in assets])
    by_name: dict[str, list[AssetVersion]] = {}
    for row in rows:
        by_name.setdefault(row.name, []).append(row)
    return [_summary(a, by_name.get(a.name, [])) for a in assets]


def version_data(row: AssetVersion, asset: Asset | None, jobs: int | None = None) -> dict[str, Any]:
    """Return one version as the API shows it."""
    meta = row.meta or {}
    return {
        "name": row.name,
        "version": row.version,
        "sha256": row.sha256,
        "format": row.format,
        "size_bytes": row.size_bytes,
        "created_at": row.created_at,
        "default": asset is not None and asset.default_version == row.version,
        "deprecated": row.deprecated_at is not None,
        "task": meta.get("task"),
        "classes": meta.get("classes"),
        "input_size": meta.get("input_size"),
        "facts_used": meta.get("facts_used"),
        "export": row.export,
        "jobs": jobs if row.kind == "model" else None,
    }
