"""Streams a batch request's multipart body: one archive to a staging file, small text fields
kept in memory.

The upload's streaming receiver (:mod:`nesydet.services.multipart`) with one addition: the
values of a few named fields (the batch's ``config``) are kept, each bounded in size, instead
of only being counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from python_multipart.multipart import parse_options_header

from nesydet.errors import InvalidRequest
from nesydet.services.multipart import ReceivedFile, _PartCollector, feed_body

MAX_VALUE_BYTES = 64 * 1024


@dataclass(slots=True)
class ReceivedForm:
    """The file parts of ``field_name`` (counted past the limit) and the kept text fields."""

    files: list[ReceivedFile]
    file_count: int
    other_fields: list[str]
    values: dict[str, str]


class _FormCollector(_PartCollector):
    """The upload's part collector, keeping the values of ``value_names`` as well."""

    def __init__(
        self,
        *,
        field_name: str,
        staging: Path,
        max_file_size: int,
        max_files: int,
        value_names: frozenset[str],
    ) -> None:
        super().__init__(
            field_name=field_name, staging=staging, max_file_size=max_file_size, max_files=max_files
        )
        self.value_names = value_names
        self.values: dict[str, bytearray] = {}
        self._value: bytearray | None = None

    def _part_begin(self) -> None:
        self._value = None
        super()._part_begin()

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if disposition == b"form-data" and name in self.value_names:
            if name in self.values:
                raise InvalidRequest(
                    f"The form field '{name}' was sent twice", details="send it once"
                )
            self._value = self.values[name] = bytearray()
            return
        super()._headers_finished()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._value is None:
            super()._part_data(data, start, end)
            return
        if len(self._value) + end - start > MAX_VALUE_BYTES:
            raise InvalidRequest(
                "A form field is too large",
                details=f"each of {', '.join(sorted(self.value_names))} may have at most "
                f"{MAX_VALUE_BYTES // 1024} KiB",
            )
        self._value += data[start:end]

    def _part_end(self) -> None:
        if self._value is not None:
            self._value = None
            return
        super()._part_end()


async def receive_form(
    body: AsyncIterator[bytes],
    *,
    content_type: str | None,
    field_name: str,
    staging: Path,
    max_file_size: int,
    max_body_size: int,
    value_names: frozenset[str],
) -> ReceivedForm:
    """Stream the body: the first file part of ``field_name`` into ``staging``, the fields
    named in ``value_names`` into memory (UTF-8 text), the rest counted only."""
    collector = _FormCollector(
        field_name=field_name,
        staging=staging,
        max_file_size=max_file_size,
        max_files=1,
        value_names=value_names,
    )
    await feed_body(body, content_type, collector, staging=staging, max_body_size=max_body_size)
    unfinished = [part for part in collector.files if not part.sha256 and not part.too_large]
    if unfinished or collector._value is not None:
        raise InvalidRequest("Malformed multipart body", details="the body ended inside a part")
    values: dict[str, str] = {}
    for name, raw in collector.values.items():
        try:
            values[name] = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(
                f"The form field '{name}' is not UTF-8 text", details=str(exc)[:200]
            ) from exc
    return ReceivedForm(
        files=collector.files,
        file_count=collector.file_count,
        other_fields=collector.other_fields,
        values=values,
    )
