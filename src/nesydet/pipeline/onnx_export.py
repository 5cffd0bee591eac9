"""ONNX exports of ``.pt`` models, cached by the ``.pt``'s sha256, made offline and at most once.

The export of a YOLO ``.pt`` keeps the training input size in its metadata and has dynamic
axes (batch, height, width), so SAHI slices of any size and batches of them run on it. An
export is named after the source's content, not its name or mtime: a replaced ``.pt`` gets a
new export, and a copy of the same weights anywhere reuses the cached one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nesydet.pipeline.errors import ModelLoadError

CACHE_SUBDIR = ".onnx"  # next to the .pt when no cache directory is set
SHA_CHARS = 16


class ExportError(ModelLoadError):
    """The ONNX export of a model could not be made (missing package, unwritable cache, ...)."""


def sha256_of(path: Path) -> str:
    """Returns the hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_path(pt: Path, cache_dir: Path | None = None) -> Path:
    """Returns where the ONNX export of `pt` is cached: ``<cache>/<stem>-<sha256[:16]>.onnx``.

    Without `cache_dir` the cache is the folder ``.onnx`` next to the ``.pt``.
    """
    folder = cache_dir if cache_dir is not None else pt.parent / CACHE_SUBDIR
    return folder / f"{pt.stem}-{sha256_of(pt)[:SHA_CHARS]}.onnx"


def cached_export(pt: Path, cache_dir: Path | None = None) -> Path | None:
    """Returns the cached export of `pt` when it exists, else None."""
    path = export_path(pt, cache_dir)
    return path if path.is_file() and path.stat().st_size > 0 else None


def ensure_export(pt: Path, cache_dir: Path | None = None) -> Path:
    """Returns the export of `pt`, exporting it first when the cache has none.

    Processes that start together (a worker's pool) wait on a lock file: one exports, the
    others then find its file. The file appears by an atomic rename, whole or not at all.

    Raises:
        ExportError: When the cache folder cannot be written or the export fails.
    """
    out = export_path(pt, cache_dir)
    if out.is_file() and out.stat().st_size > 0:
        return out
    try:
        _make_cache_dir(out.parent)
        with _locked(out.with_suffix(".lock")):
            if not (out.is_file() and out.stat().st_size > 0):
                export_onnx(pt, out)
    except OSError as exc:
        raise ExportError("cannot write the ONNX export", f"{out}: {exc}") from exc
    return out


def export_onnx(pt: Path, out: Path) -> Path:
    """Returns `out` after exporting `pt` to it (ultralytics, dynamic axes, simplified).

    Runs offline: ultralytics must not install anything, so ``onnx`` (and ``onnxslim`` for
    the graph simplification) have to be installed already.

    Raises:
        ExportError: When a package is missing or ultralytics cannot export the file.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    if importlib.util.find_spec("onnx") is None:
        raise ExportError("cannot export to ONNX", "the package onnx is not installed")
    simplify = importlib.util.find_spec("onnxslim") is not None
    from ultralytics import YOLO  # type: ignore[attr-defined]

    with tempfile.TemporaryDirectory(prefix="nesydet-export-") as tmp:
        # ultralytics writes the export next to its source: work on a copy, keep models/ clean
        src = Path(tmp) / pt.name
        shutil.copy(pt, src)
        try:
            yolo = YOLO(str(src))
            imgsz = yolo.overrides.get("imgsz") or 640
            imgsz = int(max(imgsz) if isinstance(imgsz, list | tuple) else imgsz)
            made = Path(
                yolo.export(
                    format="onnx", dynamic=True, simplify=simplify, imgsz=imgsz, device="cpu"
                )
            )
        except Exception as exc:  # ultralytics/torch/onnx raise many unrelated types
            raise ExportError(
                "cannot export to ONNX", f"{pt.name}: {type(exc).__name__}: {exc}"
            ) from exc
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.{os.getpid()}.part")
        shutil.copy(made, partial)
        partial.replace(out)
    return out


def _make_cache_dir(folder: Path) -> None:
    if folder.is_dir():
        return
    folder.mkdir(parents=True, exist_ok=True)
    # Exports are build output: keep them out of git wherever the cache is (models/.onnx too).
    (folder / ".gitignore").write_text("*\n")


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
