"""The storage protocol. Keys are relative POSIX paths such as ``uploads/upl_x/img_y.png``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")


class StorageFailure(Exception):
    """A backend could not store, read or delete an object."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a backend knows of one stored object."""

    key: str
    size: int
    etag: str
    modified: float


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key; raise ValueError otherwise."""
    if not _KEY_RE.match(key) or ".." in key.split("/"):
        raise ValueError(f"unsafe storage key: {key!r}")
    return key


class Storage(Protocol):
    """Blocking file storage; async callers run these in a worker thread."""

    def put_file(self, key: str, source: Path) -> None:
        """Store the file at ``source`` under ``key``; the source is consumed (moved)."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically."""

    def get_bytes(self, key: str) -> bytes:
        """Return the whole object."""

    def iter_chunks(self, key: str, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """Yield the object in chunks without holding it whole."""

    def stat(self, key: str) -> StoredObject | None:
        """Return the object's size and etag, or None when it does not exist."""

    def local_path(self, key: str) -> Path | None:
        """Return a filesystem path for the object when the backend has one."""

    def delete(self, key: str) -> None:
        """Delete one object; a missing one is not an error."""

    def delete_prefix(self, prefix: str) -> tuple[int, int]:
        """Delete every object under ``prefix/``; return how many objects and bytes."""

    def check(self) -> None:
        """Raise StorageFailure unless the backend can be written and read now."""
