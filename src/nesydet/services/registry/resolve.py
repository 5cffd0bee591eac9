"""What a new job runs: its model and rules resolved to ``{name, version, sha256}``.

A registered asset is named ``name`` (the routing's pick by job id, else the default version)
or ``name@version``; a file of the models or rules directory (``model_path``, ``rules_file``)
is hashed, and named by its registered version when one has the same content.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.asset_names import Kind, parse_ref, pick_version
from nesydet.db.models import AssetVersion
from nesydet.db.repositories import assets as repo
from nesydet.errors import InvalidConfig, NotFound
from nesydet.pipeline.onnx_export import sha256_of
from nesydet.services.registry.catalogue import get_asset, get_version

_hashes: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Resolved:
    """A job's model or rules: the ref it records, and how it was chosen."""

    ref: dict[str, Any]
    spelled: str  # name@version (registered) or the file name

    @property
    def version(self) -> str | None:
        """Return the registered version, None for a file not registered."""
        value = self.ref.get("version")
        return str(value) if value is not None else None


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file, cached by its path, size and mtime."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        cached = _hashes.get(key)
    if cached is not None:
        return cached
    digest = sha256_of(path)
    with _hash_lock:
        _hashes[key] = digest
    return digest


async def registered(
    *, session: AsyncSession, kind: Kind, spelled: str, field: str, job_id: str
) -> Resolved:
    """Return the version a job naming ``spelled`` gets.

    Raises:
        InvalidConfig: not a ``name`` or ``name@version``, unknown, or deprecated without
            being named exactly (a deprecated version runs only when asked for by version).
    """
    ref = parse_ref(spelled)
    if ref is None:
        raise _invalid(field, "INVALID_VALUE", f"{spelled!r} is not name or name@version")
    try:
        asset = await get_asset(session=session, kind=kind, name=ref.name)
        version = ref.version
        if version is None:
            weights = {k: int(v) for k, v in (asset.routing or {}).items()}
            version = pick_version(weights, job_id) if weights else asset.default_version
        if version is None:
            raise _invalid(field, "NO_DEFAULT", f"{kind} {ref.name!r} has no default version")
        row = await get_version(session=session, kind=kind, name=ref.name, version=version)
    except NotFound as exc:  # ModelNotFound / RulesNotFound: a config error of this job
        raise _invalid(field, exc.code, exc.message) from exc
    return Resolved(version_ref(row), f"{row.name}@{row.version}")


def version_ref(row: AssetVersion) -> dict[str, Any]:
    """Return what a job records of a registered version (and the worker needs to fetch it)."""
    meta = row.meta or {}
    ref: dict[str, Any] = {
        "name": row.name,
        "version": row.version,
        "sha256": row.sha256,
        "storage_key": row.storage_key,
        "format": row.format,
    }
    if meta.get("task"):
        ref["task"] = meta["task"]
    if row.export and row.export.get("status") == "ready":
        ref["export"] = {k: row.export[k] for k in ("storage_key", "sha256")}
    return ref


async def file_ref(*, session: AsyncSession, kind: Kind, path: Path, name: str) -> Resolved:
    """Return a directory file's ref: its registered name and version when one has the same
    content, else its stem and no version."""
    sha = await anyio.to_thread.run_sync(file_sha256, path)
    same = await repo.by_sha256(session=session, kind=kind, sha256=sha)
    if same:
        return Resolved({"name": same[0].name, "version": same[0].version, "sha256": sha}, name)
    return Resolved({"name": Path(name).stem, "version": None, "sha256": sha}, name)


def _invalid(field: str, code: str, message: str) -> InvalidConfig:
    return InvalidConfig(
        "Invalid configuration",
        errors=[{"field": field, "error_code": code, "error": message}],
        details=f"{field}: {message}",
    )


def public(ref: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return the part of a ref that status, results and exports show."""
    if ref is None:
        return None
    return {"name": ref["name"], "version": ref.get("version"), "sha256": ref["sha256"]}
