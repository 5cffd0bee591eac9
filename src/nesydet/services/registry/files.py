"""Registered files on a worker host: fetched from storage once, kept by content.

A job records its model's and rules' storage key and sha256; the worker copies the file into
``NESYDET_ASSET_CACHE_DIR`` (checking the sha256) and runs it from there, so every host of a
deployment runs the same bytes whatever storage it shares.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from nesydet.pipeline.onnx_export import export_path
from nesydet.storage import Storage, StorageFailure


def kind_dir(root: Path, kind: str) -> Path:
    """Return the folder of a kind's fetched files under a host's cache (the pipeline
    resolves names in it too)."""
    return Path(root) / kind


class AssetFetchError(Exception):
    """A registered file cannot be fetched from storage, or its content is not its sha256."""


class AssetFiles:
    """Local copies of registered files under ``root/<kind>/``.

    Args:
        storage: Where the registry keeps the files.
        root: The host's cache folder.
        onnx_cache_dir: The pipeline's ONNX export cache: a stored export of a .pt is placed
            where the pipeline looks for it (None: next to the .pt).
    """

    def __init__(self, storage: Storage, root: Path, onnx_cache_dir: Path | None = None) -> None:
        self.storage = storage
        self.root = Path(root)
        self.onnx_cache_dir = onnx_cache_dir
        self._lock = threading.Lock()

    def folder(self, kind: str) -> Path:
        """Return the folder of a kind's fetched files (the pipeline resolves names in it)."""
        return kind_dir(self.root, kind)

    @staticmethod
    def local_name(ref: dict[str, Any]) -> str:
        """Return the file name a ref is kept under: its sha256, task (ultralytics reads
        "obb" in a file name as a hint) and format."""
        task = f"-{ref['task']}" if ref.get("task") else ""
        return f"{ref['sha256']}{task}.{ref['format']}"

    def fetch(self, kind: str, ref: dict[str, Any]) -> str:
        """Return the local file name of a registered file, fetching it (and a stored ONNX
        export of a .pt) first when this host has none.

        Raises:
            AssetFetchError: Storage fails, or the bytes are not the recorded sha256.
        """
        name = self.local_name(ref)
        path = self.folder(kind) / name
        with self._lock:
            if not path.is_file():
                self._copy(ref["storage_key"], ref["sha256"], path)
            export = ref.get("export")
            if kind == "model" and export:
                target = export_path(path, self.onnx_cache_dir)
                if not target.is_file():
                    self._copy(export["storage_key"], export["sha256"], target)
        return name

    def _copy(self, key: str, sha256: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        digest = hashlib.sha256()
        try:
            with partial.open("wb") as out:
                for chunk in self.storage.iter_chunks(key):
                    digest.update(chunk)
                    out.write(chunk)
        except (StorageFailure, OSError) as exc:
            partial.unlink(missing_ok=True)
            raise AssetFetchError(f"cannot fetch {key}: {exc}") from exc
        if digest.hexdigest() != sha256:
            partial.unlink(missing_ok=True)
            raise AssetFetchError(f"{key}: content is not sha256 {sha256}")
        partial.replace(path)


def pipeline_dict(
    config: dict[str, Any],
    model_ref: dict[str, Any] | None,
    rules_ref: dict[str, Any] | None,
    files: AssetFiles,
) -> dict[str, Any]:
    """Return a job's config as the pipeline takes it: registered model and rules fetched
    and named by their local files, the registry's own keys left out.

    Raises:
        AssetFetchError: A registered file cannot be fetched.
    """
    out = without_registry_keys(config)
    reasoning = dict(out.get("symbolic_reasoning") or {})
    if model_ref and model_ref.get("storage_key"):
        out["model_path"] = files.fetch("model", model_ref)
    if rules_ref and rules_ref.get("storage_key") and reasoning.get("enabled", True):
        reasoning["rules_file"] = files.fetch("rules", rules_ref)
    if "symbolic_reasoning" in out:
        out["symbolic_reasoning"] = reasoning
    return out


def without_registry_keys(config: dict[str, Any]) -> dict[str, Any]:
    """Return a job config without ``model`` and ``symbolic_reasoning.rules``: names the
    service resolves to files (``model_path``, ``rules_file``) before the pipeline runs."""
    out = {k: v for k, v in config.items() if k != "model"}
    if isinstance(out.get("symbolic_reasoning"), dict):
        out["symbolic_reasoning"] = {
            k: v for k, v in out["symbolic_reasoning"].items() if k != "rules"
        }
    return out
