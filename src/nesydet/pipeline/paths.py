"""Confinement of user-chosen file names (models, rules) to their directory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path, PurePosixPath


class UnsafePathError(ValueError):
    """A file name escapes its base directory, is malformed or does not name a usable file."""


def resolve_in_dir(base: Path, name: str, suffixes: Collection[str]) -> Path:
    """Returns the real path of file `name` inside `base`, refusing anything that escapes it.

    Loading a ``.pt`` file unpickles it (code execution) and a rules file runs as code, so
    names are relative paths without ``..``, and the fully resolved path (symlinks
    followed) must still lie inside the resolved base directory.

    Raises:
        UnsafePathError: For absolute paths, ``..``, NUL bytes, backslashes, a wrong
            suffix, a path leaving `base`, or a missing / non-regular file.
    """
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        raise UnsafePathError(f"invalid file name {name!r}")
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts) or name.startswith("~"):
        raise UnsafePathError(f"file name must be relative to its directory: {name!r}")
    if pure.suffix.lower() not in {s.lower() for s in suffixes}:
        raise UnsafePathError(f"{name!r}: expected one of {sorted(suffixes)}")
    root = base.resolve()
    try:
        real = (root / pure).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise UnsafePathError(f"{name!r} not found") from exc
    if not real.is_relative_to(root):
        raise UnsafePathError(f"{name!r} resolves outside its directory")
    if not real.is_file():
        raise UnsafePathError(f"{name!r} is not a regular file")
    return real


def resolve_in_dirs(bases: Path | Sequence[Path], name: str, suffixes: Collection[str]) -> Path:
    """Returns `resolve_in_dir` in the first of `bases` that has the file.

    Raises:
        UnsafePathError: As `resolve_in_dir` for the first base, when no base has it.
    """
    folders = [bases] if isinstance(bases, Path) else list(bases)
    first: UnsafePathError | None = None
    for base in folders:
        try:
            return resolve_in_dir(base, name, suffixes)
        except UnsafePathError as exc:
            first = first or exc
    raise first or UnsafePathError(f"{name!r}: no directory to look in")
