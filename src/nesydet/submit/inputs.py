"""What ``nesydet submit`` sends: the images named on its command line, the job's config, and
the multipart bodies that carry them, streamed from disk with their length known up front."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zipstream import ZIP_STORED, ZipStream

from nesydet.submit.errors import usage

# What the server takes (it checks the bytes, not the name). Files of a directory with other
# suffixes are left out and counted; a file named on the command line is always sent.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})
# What the batch endpoint would skip anyway (hidden files are skipped by name as well).
SKIPPED_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
READ_CHUNK = 256 * 1024
_MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


@dataclass(frozen=True, slots=True)
class Image:
    """One image to send: where it is, and its name on the server (a relative path)."""

    path: Path
    name: str
    size: int


@dataclass(slots=True)
class Selection:
    """The images found, sorted by name, and how many other files were left out."""

    images: list[Image]
    left_out: int = 0


def collect(inputs: Iterable[Path]) -> Selection:
    """Return the images of ``inputs``: files as given (named by their file name), and the
    images anywhere under a directory (named by their path inside it).

    Raises:
        SubmitError: an input does not exist, two images would get the same name (ignoring
            case, as the server compares them), or there is no image at all.
    """
    selection = Selection(images=[])
    for path in inputs:
        if path.is_dir():
            _walk(path, selection)
        elif path.is_file():
            selection.images.append(Image(path, path.name, path.stat().st_size))
        else:
            raise usage("FILE_ERROR", f"no such file or directory: {path}")
    seen: dict[str, Image] = {}
    for image in selection.images:
        other = seen.setdefault(image.name.casefold(), image)
        if other is not image:
            raise usage(
                "DUPLICATE_FILE",
                f"{other.path} and {image.path} would both be named {image.name!r} on the "
                "server: submit them separately",
            )
    if not selection.images:
        names = ", ".join(str(p) for p in inputs)
        raise usage("NO_FILES", f"no JPEG, PNG or TIFF images in {names}")
    selection.images.sort(key=lambda image: image.name)
    return selection


def _walk(root: Path, selection: Selection) -> None:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped(d))
        for name in files:
            path = Path(folder) / name
            if _skipped(name) or not path.is_file():
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                selection.left_out += 1
                continue
            relative = path.relative_to(root).as_posix()
            selection.images.append(Image(path, relative, path.stat().st_size))


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.casefold() in SKIPPED_NAMES


def parse_config(text: str | None) -> dict[str, Any]:
    """Return ``--config`` (JSON text, or ``@file`` holding it) as the predict body's config.

    Raises:
        SubmitError: the file cannot be read, or it is not a JSON object (``INVALID_CONFIG``,
            as the server would answer).
    """
    if text is None:
        return {}
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise usage("FILE_ERROR", f"--config: cannot read {text[1:]}: {exc.strerror}") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise usage("INVALID_CONFIG", f"--config is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise usage("INVALID_CONFIG", "--config must be a JSON object, like the predict config")
    return value


# A part's content: bytes, a file, or (length, chunks) made while they are sent.
Source = bytes | Path | tuple[int, Iterable[bytes]]


@dataclass(frozen=True, slots=True)
class Part:
    """One field of a multipart form."""

    field: str
    source: Source
    filename: str | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Body:
    """A multipart body: its Content-Type, its exact length and its bytes, made on demand."""

    content_type: str
    length: int
    chunks: Callable[[], Iterator[bytes]]


def multipart(parts: list[Part], on_sent: Callable[[int], None]) -> Body:
    """Return a ``multipart/form-data`` body of ``parts``; ``on_sent`` hears each chunk's size
    as it goes out (the upload's progress)."""
    boundary = f"nesydet-{secrets.token_hex(16)}"
    heads = [_head(boundary, part) for part in parts]
    tail = f"--{boundary}--\r\n".encode()
    length = len(tail) + sum(
        len(h) + _length(p.source) + 2 for h, p in zip(heads, parts, strict=True)
    )

    def chunks() -> Iterator[bytes]:
        for head, part in zip(heads, parts, strict=True):
            yield head
            on_sent(len(head))
            for chunk in _content(part.source):
                yield chunk
                on_sent(len(chunk))
            yield b"\r\n"
            on_sent(2)
        yield tail
        on_sent(len(tail))

    return Body(f"multipart/form-data; boundary={boundary}", length, chunks)


def _head(boundary: str, part: Part) -> bytes:
    disposition = f'form-data; name="{part.field}"'
    if part.filename is not None:
        quoted = part.filename.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D")
        disposition += f'; filename="{quoted.replace(chr(10), "%0A")}"'
    lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
    if part.content_type is not None:
        lines.append(f"Content-Type: {part.content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _length(source: Source) -> int:
    if isinstance(source, bytes):
        return len(source)
    if isinstance(source, Path):
        return source.stat().st_size
    return source[0]


def _content(source: Source) -> Iterator[bytes]:
    if isinstance(source, bytes):
        yield source
    elif isinstance(source, Path):
        with source.open("rb") as fp:
            while chunk := fp.read(READ_CHUNK):
                yield chunk
    else:
        yield from source[1]


def archive(images: list[Image]) -> tuple[int, Iterable[bytes]]:
    """Return a ZIP archive of ``images`` under their names: its exact size, and its bytes,
    generated as they are read (stored, not compressed: images are compressed already)."""
    stream = ZipStream(compress_type=ZIP_STORED, sized=True)
    for image in images:
        stream.add_path(str(image.path), arcname=image.name)
    return len(stream), stream


def image_part(image: Image) -> Part:
    """Return the upload endpoint's ``files`` part for one image."""
    mime = _MIME.get(image.path.suffix.lower(), "image/tiff")
    return Part("files", image.path, filename=image.name, content_type=mime)


def chunks_of(images: list[Image], size: int) -> list[list[Image]]:
    """Return ``images`` in consecutive lists of at most ``size``."""
    return [images[i : i + size] for i in range(0, len(images), size)]
