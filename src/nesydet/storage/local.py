"""Storage on the local filesystem under one root directory."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from nesydet.storage.base import StorageFailure, StoredObject, validate_key

_DIR_MODE = 0o750
_FILE_MODE = 0o640


class LocalStorage:
    """Objects are files under ``root``; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key escapes the root: {key!r}")
        return path

    def _parent(self, key: str) -> Path:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
        except OSError as exc:
            raise StorageFailure(f"could not create the folder of {key}: {exc}") from exc
        return path

    def put_file(self, key: str, source: Path) -> None:
        """Move ``source`` to ``key`` (a rename on the same filesystem)."""
        target = self._parent(key)
        try:
            os.chmod(source, _FILE_MODE)
            try:
                os.replace(source, target)
            except OSError:
                # Another filesystem: copy beside the target, then rename, so readers never
                # see half a file.
                tmp = target.with_name(f".{target.name}.tmp")
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
                source.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageFailure(f"could not store {key}: {exc.strerror or exc}") from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` to ``key`` atomically."""
        target = self._parent(key)
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.chmod(tmp, _FILE_MODE)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise StorageFailure(f"could not store {key}: {exc.strerror or exc}") from exc

    def get_bytes(self, key: str) -> bytes:
        """Return the file's content."""
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StorageFailure(f"could not read {key}: {exc.strerror or exc}") from exc

    def iter_chunks(self, key: str, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """Yield the file in chunks."""
        try:
            with self._path(key).open("rb") as handle:
                while chunk := handle.read(chunk_size):
                    yield chunk
        except OSError as exc:
            raise StorageFailure(f"could not read {key}: {exc.strerror or exc}") from exc

    def stat(self, key: str) -> StoredObject | None:
        """Return size, mtime and an etag from (size, mtime, inode), or None."""
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageFailure(f"could not stat {key}: {exc.strerror or exc}") from exc
        tag = hashlib.blake2b(
            f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode(), digest_size=12
        ).hexdigest()
        return StoredObject(key=key, size=st.st_size, etag=tag, modified=st.st_mtime)

    def local_path(self, key: str) -> Path | None:
        """Return the file's path."""
        return self._path(key)

    def delete(self, key: str) -> None:
        """Remove one file if present."""
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def delete_prefix(self, prefix: str) -> tuple[int, int]:
        """Remove a whole directory of objects; return how many files and bytes it held."""
        path = self._path(prefix)
        if not path.is_dir():
            return 0, 0
        objects = size = 0
        for item in path.rglob("*"):
            with contextlib.suppress(OSError):
                if item.is_file():
                    objects += 1
                    size += item.stat().st_size
        try:
            shutil.rmtree(path)
        except OSError as exc:
            raise StorageFailure(f"could not delete {prefix}/: {exc.strerror or exc}") from exc
        return objects, size

    def check(self) -> None:
        """Write, read back and delete a probe file under the root."""
        probe = f"_health/probe-{os.getpid()}-{uuid.uuid4().hex}"  # one per check: never shared
        try:
            self.put_bytes(probe, b"ok")
            if self.get_bytes(probe) != b"ok":
                raise StorageFailure("storage probe read back different bytes")
        finally:
            self.delete(probe)
