"""Model and rules files named by a job: resolved only inside their configured directory."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from nesydet.pipeline.paths import UnsafePathError, resolve_in_dir


def resolve_inside(root: Path, name: str, suffixes: Collection[str]) -> Path | None:
    """Return the file that ``name`` names inside ``root``, or None when it is not there.

    The pipeline's own rule applies (a relative name without ``..`` that stays inside
    ``root``, symbolic links followed); an absolute path is accepted too when it lies inside
    ``root``, as clients may send the full path of a model they see on the server.
    """
    candidate = Path(name) if name and "\x00" not in name else None
    if candidate is not None and candidate.is_absolute():
        base = root.resolve()
        if ".." in candidate.parts or not candidate.is_relative_to(base):
            return None
        name = candidate.relative_to(base).as_posix()
    try:
        return resolve_in_dir(root, name, suffixes)
    except UnsafePathError:
        return None


def available(root: Path, suffixes: Collection[str]) -> list[str]:
    """Return the names of the usable files in ``root`` (for error messages)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if resolve_inside(root, p.name, suffixes))
