"""The ONNX export of a registered ``.pt``, made by a worker (task on the queue ``exports``).

The export is checked against the ``.pt`` on the probe scenes (the check `auto` makes before
it runs an export) and stored by the ``.pt``'s sha256, so every worker host fetches the same
export with the model instead of making its own. The version's ``export`` says how it went.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.db import session as uow
from nesydet.db.repositories import assets as repo
from nesydet.pipeline.backends import open_detector
from nesydet.pipeline.errors import PipelineError
from nesydet.pipeline.onnx_export import export_onnx, export_path, sha256_of
from nesydet.pipeline.probes import compare_detections, probe_detections, probe_images
from nesydet.services.processing.io_loop import IoLoop
from nesydet.services.registry.files import AssetFetchError, AssetFiles
from nesydet.services.registry.resolve import version_ref
from nesydet.storage import Storage, StorageFailure

log = logging.getLogger(__name__)


def export_key(pt_sha256: str) -> str:
    """Return where the export of a .pt is stored."""
    return f"registry/model/onnx/{pt_sha256}.onnx"


def make_export(pt: Path, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Return the export of `pt` and what its probe check found.

    Raises:
        PipelineError: The export cannot be made or does not give the .pt's detections.
    """
    onnx = export_onnx(pt, out_dir / f"{pt.stem}.onnx")
    probes = probe_images()
    reference = open_detector(pt, "cpu", False)
    candidate = open_detector(onnx, "cpu", False, threads=1, arena=False)
    match = compare_detections(
        probe_detections(reference, probes), probe_detections(candidate, probes)
    )
    if match.mismatch is not None:
        raise PipelineError("the export differs from the .pt on the probe", match.mismatch)
    return onnx, {"probe_boxes": match.boxes, "max_score_diff": match.max_score_diff}


def export_version(
    *,
    version_id: int,
    sessionmaker: async_sessionmaker[AsyncSession],
    io: IoLoop,
    storage: Storage,
    files: AssetFiles,
) -> str:
    """Export a registered .pt once; return its export's status ("ready", "failed" or
    "skipped" for a version gone, not a .pt, or exported already)."""
    row = io.run(_load(sessionmaker, version_id))
    if row is None or row.format != "pt" or (row.export or {}).get("status") == "ready":
        return "skipped"
    try:
        local = files.folder("model") / files.fetch("model", version_ref(row))
        with tempfile.TemporaryDirectory(prefix="nesydet-export-") as tmp:
            onnx, probe = make_export(local, Path(tmp))
            sha, size = sha256_of(onnx), onnx.stat().st_size
            cached = export_path(local, files.onnx_cache_dir)  # this host needs no fetch
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(onnx.read_bytes())
            storage.put_file(export_key(row.sha256), onnx)
        export = {
            "status": "ready",
            "storage_key": export_key(row.sha256),
            "sha256": sha,
            "size_bytes": size,
            **probe,
        }
    except (PipelineError, AssetFetchError, StorageFailure, OSError) as exc:
        log.warning("ONNX export failed", extra={"version_id": version_id, "error": str(exc)})
        export = {"status": "failed", "error": str(exc)[:500]}
    io.run(_save(sessionmaker, version_id, export))
    log.info("ONNX export", extra={"version_id": version_id, "status": export["status"]})
    return str(export["status"])


async def _load(sessionmaker: async_sessionmaker[AsyncSession], version_id: int) -> Any:
    async with sessionmaker() as session:
        return await repo.get_version_by_id(session=session, version_id=version_id)


async def _save(
    sessionmaker: async_sessionmaker[AsyncSession], version_id: int, export: dict[str, Any]
) -> None:
    async with sessionmaker() as session:
        row = await repo.get_version_by_id(session=session, version_id=version_id)
        if row is not None:
            row.export = export
            await uow.commit(session)
