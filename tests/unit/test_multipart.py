"""Streaming multipart reception: limits enforced while bytes arrive, never after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nesydet.errors import InvalidRequest, RequestTooLarge
from nesydet.services.multipart import ReceivedFile, receive_files, sanitize_filename

BOUNDARY = "testboundary42"
CT = f"multipart/form-data; boundary={BOUNDARY}"


def part(name: str, filename: str | None, data: bytes) -> bytes:
    disp = f'form-data; name="{name}"' + (
        f'; filename="{filename}"' if filename is not None else ""
    )
    return f"--{BOUNDARY}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def receive(data: bytes, staging: Path, **kw: int) -> tuple[list[ReceivedFile], int]:
    limits = {"max_file_size": 1000, "max_files": 3, "max_body_size": 10**9} | kw
    seen: list[ReceivedFile] = []
    result = await receive_files(
        chunks(data, 97),
        content_type=CT,
        field_name="files",
        staging=staging,
        on_file=seen.append,
        **limits,
    )
    assert [p.index for p in seen] == [p.index for p in result.files]
    return result.files, result.file_count


async def test_parts_are_streamed_to_files(tmp_path: Path) -> None:
    files, count = await receive(
        body(part("files", "a.png", b"A" * 500), part("files", "b.png", b"B" * 10)), tmp_path
    )
    assert count == 2
    assert [(f.filename, f.size, f.path.read_bytes()) for f in files] == [
        ("a.png", 500, b"A" * 500),
        ("b.png", 10, b"B" * 10),
    ]
    assert files[0].head == b"A" * 8


async def test_oversize_part_stops_being_written_and_the_next_still_arrives(tmp_path: Path) -> None:
    files, _ = await receive(
        body(part("files", "big.png", b"X" * 5000), part("files", "ok.png", b"Y" * 20)), tmp_path
    )
    big, ok = files
    assert big.too_large
    assert not big.path.exists()
    # Counting stops within one network chunk (97 bytes here) of the limit: the rest of the
    # part is neither counted nor written.
    assert 1000 < big.size <= 1000 + 97
    assert ok.path.read_bytes() == b"Y" * 20
    assert not ok.too_large


async def test_part_at_exactly_the_limit_is_kept(tmp_path: Path) -> None:
    [f], _ = await receive(body(part("files", "edge.png", b"Z" * 1000)), tmp_path)
    assert not f.too_large
    assert f.size == 1000


async def test_files_beyond_the_count_are_counted_not_stored(tmp_path: Path) -> None:
    files, count = await receive(
        body(*[part("files", f"{i}.png", b"P" * 10) for i in range(5)]), tmp_path
    )
    assert count == 5
    assert len(files) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-0000", "part-0001", "part-0002"]


async def test_other_fields_are_ignored(tmp_path: Path) -> None:
    files, count = await receive(
        body(part("note", None, b"hello"), part("files", "a.png", b"A")), tmp_path
    )
    assert count == 1
    assert files[0].filename == "a.png"


async def test_body_over_the_cap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RequestTooLarge):
        await receive(body(part("files", "a.png", b"A" * 900)), tmp_path, max_body_size=500)


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "multipart/form-data", "text/plain; boundary=x"]
)
async def test_wrong_content_type(tmp_path: Path, content_type: str | None) -> None:
    with pytest.raises(InvalidRequest):
        await receive_files(
            chunks(b""), content_type=content_type, field_name="files", staging=tmp_path,
            max_file_size=10, max_files=1, max_body_size=10,
        )  # fmt: skip


async def test_body_ending_inside_a_part(tmp_path: Path) -> None:
    truncated = part("files", "a.png", b"A" * 100)[:-10]
    with pytest.raises(InvalidRequest):
        await receive(truncated, tmp_path)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd.png", "passwd.png"),
        ("C:\\Users\\me\\pic.jpg", "pic.jpg"),
        (".hidden.png", "hidden.png"),
        ("a<b>c:d|e?f*.tif", "abcdef.tif"),
        ("tab\there.png", "tabhere.png"),
        (None, "fallback"),
        ("   ", "fallback"),
        ("é" * 200 + ".png", "é" * 125 + ".png"),
    ],
)
def test_sanitize_filename(raw: str | None, expected: str) -> None:
    clean = sanitize_filename(raw, "fallback")
    assert clean == expected
    assert len(clean.encode()) <= 255
    assert "/" not in clean
    assert "\\" not in clean
