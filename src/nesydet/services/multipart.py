"""Streams a multipart/form-data body to files on disk, one part at a time.

The body is never held whole in memory: each chunk goes through python-multipart's push parser in
a worker thread and straight into a staging file. A part that grows past the size limit stops
being written at once (its remaining bytes are dropped) so a client still gets a verdict for every
file of the request.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header

from nesydet.errors import InvalidRequest, RequestTooLarge
from nesydet.services.image_inspect import MAGIC_BYTES

if TYPE_CHECKING:  # the callbacks' TypedDict exists for type checkers only
    from python_multipart.multipart import MultipartCallbacks

_MAX_FILENAME_BYTES = 255
_FORBIDDEN_CHARS = set('<>:"|?*')
# Bounds on what a request may send besides its files, checked as the body streams in: a
# body of 10,000 tiny fields or a part with megabytes of headers is refused at once.
MAX_OTHER_FIELDS = 16
_MAX_HEADER_BYTES = 16 * 1024
_MAX_FIELD_NAME_CHARS = 64


def sanitize_filename(raw: str | None, fallback: str) -> str:
    """Return a display-safe base name: no directories, no control characters, at most 255 bytes."""
    name = unicodedata.normalize("NFC", raw or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in _FORBIDDEN_CHARS)
    name = name.strip().lstrip(".").strip()
    if not name:
        return fallback
    encoded = name.encode()
    if len(encoded) > _MAX_FILENAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        suffix = (dot + ext) if dot and len(ext.encode()) <= 16 else ""
        budget = _MAX_FILENAME_BYTES - len(suffix.encode())
        name = (stem if suffix else name).encode()[:budget].decode(errors="ignore") + suffix
    return name


@dataclass(slots=True)
class ReceivedFile:
    """One file part as it was received: where it is staged, and what streaming learned."""

    index: int
    filename: str
    path: Path
    size: int = 0
    head: bytes = b""
    too_large: bool = False
    sha256: str = ""
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)
    _handle: IO[bytes] | None = field(default=None, repr=False)


@dataclass(slots=True)
class ReceiveResult:
    """Every file part of the request; ``file_count`` includes the parts beyond the limit."""

    files: list[ReceivedFile]
    file_count: int
    other_fields: list[str]


class _PartCollector:
    """Callbacks for the push parser; runs in one worker thread at a time."""

    def __init__(
        self, *, field_name: str, staging: Path, max_file_size: int, max_files: int
    ) -> None:
        self.field_name = field_name
        self.staging = staging
        self.max_file_size = max_file_size
        self.max_files = max_files
        self.files: list[ReceivedFile] = []
        self.completed: list[ReceivedFile] = []
        self.file_count = 0
        self.other_fields: list[str] = []
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._current: ReceivedFile | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._header_bytes = 0
        self._current = None

    def _other_field(self, name: str) -> None:
        """Note a part that is not a file of ``field_name``; refuse a body of too many."""
        if len(self.other_fields) >= MAX_OTHER_FIELDS:
            raise InvalidRequest(
                "Too many form fields",
                details=f"at most {MAX_OTHER_FIELDS} fields besides '{self.field_name}'",
            )
        shown = "".join(ch for ch in name if ch.isprintable())[:_MAX_FIELD_NAME_CHARS]
        self.other_fields.append(shown or "(no name)")

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]
        self._check_header_size()

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._check_header_size()

    def _check_header_size(self) -> None:
        size = len(self._header_field) + len(self._header_value) + self._header_bytes
        if size > _MAX_HEADER_BYTES:
            raise InvalidRequest(
                "Malformed multipart body",
                details=f"a part's headers exceed {_MAX_HEADER_BYTES // 1024} KiB",
            )

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_bytes += len(self._header_field) + len(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if disposition != b"form-data" or name != self.field_name:
            self._other_field(name)
            return
        self.file_count += 1
        if self.file_count > self.max_files:
            return  # counted, never stored: the whole request will be refused
        index = len(self.files)
        raw_name = options.get(b"filename")
        filename = sanitize_filename(
            raw_name.decode("utf-8", "replace") if raw_name is not None else None,
            fallback=f"file-{index + 1}",
        )
        path = self.staging / f"part-{index:04d}"
        part = ReceivedFile(index=index, filename=filename, path=path)
        part._handle = open(path, "wb")  # closed in _part_end / close_all
        self.files.append(part)
        self._current = part

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._current
        if part is None or part.too_large:
            return
        chunk = data[start:end]
        part.size += len(chunk)
        if part.size > self.max_file_size:
            part.too_large = True
            self._close(part)
            part.path.unlink(missing_ok=True)
            return
        if len(part.head) < MAGIC_BYTES:
            part.head += chunk[: MAGIC_BYTES - len(part.head)]
        part._hash.update(chunk)
        if part._handle is not None:
            part._handle.write(chunk)

    def _part_end(self) -> None:
        part = self._current
        if part is not None:
            self._close(part)
            part.sha256 = part._hash.hexdigest()
            self.completed.append(part)
        self._current = None

    @staticmethod
    def _close(part: ReceivedFile) -> None:
        if part._handle is not None:
            part._handle.close()
            part._handle = None

    def close_all(self) -> None:
        for part in self.files:
            self._close(part)


async def receive_files(
    body: AsyncIterator[bytes],
    *,
    content_type: str | None,
    field_name: str,
    staging: Path,
    max_file_size: int,
    max_files: int,
    max_body_size: int,
    on_file: Callable[[ReceivedFile], None] | None = None,
) -> ReceiveResult:
    """Stream the body's file parts named ``field_name`` into ``staging``.

    ``on_file`` is called on the event loop as soon as each part is complete, so that checking it
    can overlap with receiving the next one.
    """
    collector = _PartCollector(
        field_name=field_name, staging=staging, max_file_size=max_file_size, max_files=max_files
    )

    def after_chunk() -> None:
        if on_file is not None:
            done, collector.completed = collector.completed, []
            for part in done:
                on_file(part)

    await feed_body(
        body,
        content_type,
        collector,
        staging=staging,
        max_body_size=max_body_size,
        after_chunk=after_chunk,
    )
    if on_file is not None:
        for part in collector.completed:
            on_file(part)
    unfinished = [part for part in collector.files if not part.sha256 and not part.too_large]
    if unfinished:
        raise InvalidRequest("Malformed multipart body", details="the body ended inside a part")
    return ReceiveResult(
        files=collector.files, file_count=collector.file_count, other_fields=collector.other_fields
    )


async def feed_body(
    body: AsyncIterator[bytes],
    content_type: str | None,
    collector: _PartCollector,
    *,
    staging: Path,
    max_body_size: int,
    after_chunk: Callable[[], None] | None = None,
) -> None:
    """Push the whole body through a multipart parser into ``collector``, refusing a body over
    ``max_body_size`` and a malformed one (InvalidRequest); the collector's open files are
    closed whatever happens. ``after_chunk`` runs on the event loop after each chunk."""
    parser = _parser(content_type, collector)
    await anyio.to_thread.run_sync(lambda: staging.mkdir(parents=True, exist_ok=True))
    received = 0
    try:
        async for chunk in body:
            if not chunk:
                continue
            received += len(chunk)
            if received > max_body_size:
                raise RequestTooLarge(
                    "Request body too large",
                    details=f"a request may carry at most {max_body_size} bytes",
                )
            await anyio.to_thread.run_sync(parser.write, chunk)
            if after_chunk is not None:
                after_chunk()
        await anyio.to_thread.run_sync(parser.finalize)
    except (InvalidRequest, RequestTooLarge):
        raise
    except ValueError as exc:  # python-multipart's parse errors are ValueErrors
        raise InvalidRequest("Malformed multipart body", details=str(exc)[:200]) from exc
    finally:
        collector.close_all()


def _parser(content_type: str | None, collector: _PartCollector) -> MultipartParser:
    """Return a push parser for the body, or raise InvalidRequest for a non-multipart one."""
    mime, params = parse_options_header(content_type)
    if mime != b"multipart/form-data":
        raise InvalidRequest(
            "Content-Type must be multipart/form-data",
            details=f"got {mime.decode('latin-1')[:100] or 'no content type'}",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequest("Malformed multipart body", details="no boundary in Content-Type")
    try:
        return MultipartParser(boundary, collector.callbacks())
    except ValueError as exc:
        raise InvalidRequest("Malformed multipart body", details=str(exc)[:200]) from exc


def remove_tree(path: Path) -> None:
    """Delete a staging directory and everything in it, quietly."""
    if not path.exists():
        return
    for child in path.iterdir():
        child.unlink(missing_ok=True)
    os.rmdir(path)
