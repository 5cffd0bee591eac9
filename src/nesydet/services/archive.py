"""Reading a batch's ZIP archive safely: its shape is checked before a byte of it is expanded.

The archive lies in a staging file. Before :mod:`zipfile` parses it, the end record says how
many entries and how large a central directory it claims, so a forged directory cannot make
the parser allocate without bound. Then, still without expanding anything: the entry count,
what the entries claim to expand to (in total, and against the archive's own size: a zip
bomb's ratio), and entries whose data overlap (the "overlapping files" bomb, which this
Python's zipfile does not refuse by itself). Each entry's path is checked for traversal, and
links, special files, encrypted entries and duplicates are refused one by one, so a client
gets every bad entry listed. Entries are expanded one at a time into flat staging files named
by position, never by their path, and never past their declared size.

Everything here is blocking (the caller runs it in a worker thread) and uses the standard
library only.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from nesydet.errors import ArchiveTooLarge, InvalidArchive, SuspectedZipBomb, TooManyFiles
from nesydet.services.image_inspect import MAGIC_BYTES, ImageProblem
from nesydet.services.multipart import sanitize_filename

MiB = 1024 * 1024
# Below this total an archive's ratio is not judged: 64 MiB cost nothing even if forged.
RATIO_FLOOR_BYTES = 64 * MiB
# A central directory entry is 46 bytes plus its name, extra field and comment: real ones stay
# far below this, and it bounds what parsing a forged directory can allocate.
_DIRECTORY_BYTES_PER_ENTRY = 1024
_MAX_PATH_BYTES = 255
_CHUNK = 1024 * 1024

# Per-entry codes, besides the image codes of an upload (INVALID_FORMAT, FILE_TOO_LARGE, ...).
UNSAFE_PATH = "UNSAFE_PATH"
LINK_NOT_ALLOWED = "LINK_NOT_ALLOWED"
DUPLICATE_FILE = "DUPLICATE_FILE"
UNSUPPORTED_ENTRY = "UNSUPPORTED_ENTRY"

# What archivers add beside the files: skipped, never refused.
_SKIPPED_DIRS = frozenset({"__macosx"})
_SKIPPED_FILES = frozenset({"thumbs.db", "desktop.ini"})
_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_DRIVE = re.compile(r"^[A-Za-z]:")

_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIG = b"PK\x05\x06"
_LOCATOR64 = struct.Struct("<4sLQL")
_LOCATOR64_SIG = b"PK\x06\x07"
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_EOCD64_SIG = b"PK\x06\x06"
_LOCAL = struct.Struct("<4s5H3L2H")
_LOCAL_SIG = b"PK\x03\x04"


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """What one batch archive may hold."""

    max_entries: int
    max_total_bytes: int
    max_ratio: float
    max_file_size: int


@dataclass(slots=True)
class Entry:
    """One file entry of the archive: its relative path, and what is wrong with it if known."""

    index: int
    path: str
    info: zipfile.ZipInfo
    problem: ImageProblem | None = None


@dataclass(slots=True)
class Inspection:
    """The archive's file entries (sorted by path) and the entries skipped as archiver debris."""

    entries: list[Entry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Expanded:
    """What expanding one entry learned: its size, first bytes and digest."""

    size: int = 0
    head: bytes = b""
    sha256: str = ""
    too_large: bool = False


def is_zip(head: bytes) -> bool:
    """Return whether a file starts like a ZIP archive (an empty one included)."""
    return head.startswith((_LOCAL_SIG, _EOCD_SIG))


def open_archive(path: Path, limits: ArchiveLimits) -> zipfile.ZipFile:
    """Return the archive opened for reading, once its claims are within the limits.

    Raises:
        InvalidArchive: not a ZIP archive, or a broken one.
        TooManyFiles: more entries than ``limits.max_entries``.
        ArchiveTooLarge: the entries expand to more than ``limits.max_total_bytes``.
        SuspectedZipBomb: they expand far more than images do, or their data overlap.
    """
    size = path.stat().st_size
    with path.open("rb") as fp:
        entries, directory_bytes = _end_record(fp, size)
    _check_count(entries, limits)
    if directory_bytes > entries * _DIRECTORY_BYTES_PER_ENTRY + 64 * 1024:
        raise InvalidArchive(
            details=f"its central directory is {directory_bytes} bytes for {entries} entries"
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, ValueError, OSError, struct.error, EOFError) as exc:
        raise InvalidArchive(details=f"{type(exc).__name__}: {exc}"[:300]) from exc
    try:
        infos = archive.infolist()
        _check_count(len(infos), limits)
        _check_expansion(infos, size, limits)
        _check_overlaps(archive, infos)
    except BaseException:
        archive.close()
        raise
    return archive


def _end_record(fp: BinaryIO, size: int) -> tuple[int, int]:
    """Return the entry count and central directory size the archive's end record claims."""
    tail_size = min(size, _EOCD.size + 0xFFFF)
    fp.seek(size - tail_size)
    tail = fp.read(tail_size)
    at = tail.rfind(_EOCD_SIG)
    if at < 0 or at + _EOCD.size > len(tail):
        raise InvalidArchive(details="no ZIP end of central directory record")
    _, _, _, _, entries, directory_bytes, offset, _ = _EOCD.unpack_from(tail, at)
    if entries != 0xFFFF and directory_bytes != 0xFFFFFFFF and offset != 0xFFFFFFFF:
        return entries, directory_bytes
    locator = at - _LOCATOR64.size
    if locator < 0 or tail[locator : locator + 4] != _LOCATOR64_SIG:
        raise InvalidArchive(details="a ZIP64 archive without its ZIP64 end record locator")
    _, _, record_offset, _ = _LOCATOR64.unpack_from(tail, locator)
    fp.seek(record_offset)
    record = fp.read(_EOCD64.size)
    if len(record) != _EOCD64.size or record[:4] != _EOCD64_SIG:
        raise InvalidArchive(details="the ZIP64 end of central directory record is missing")
    fields = _EOCD64.unpack(record)
    return int(fields[7]), int(fields[8])


def _check_count(entries: int, limits: ArchiveLimits) -> None:
    if entries > limits.max_entries:
        raise TooManyFiles(
            f"Too many files: at most {limits.max_entries} entries per archive",
            details=f"the archive has {entries} entries",
        )


def _check_expansion(infos: list[zipfile.ZipInfo], size: int, limits: ArchiveLimits) -> None:
    total = sum(info.file_size for info in infos)
    if total > limits.max_total_bytes:
        raise ArchiveTooLarge(
            "The archive expands to more than the limit",
            details=f"its entries expand to {total} bytes; at most {limits.max_total_bytes}",
        )
    if total > RATIO_FLOOR_BYTES and total > limits.max_ratio * max(size, 1):
        raise SuspectedZipBomb(
            details=f"{size} bytes that expand to {total} (more than {limits.max_ratio:g}x)"
        )


def _check_overlaps(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse entries whose data overlap another's (one compressed kernel read many times)."""
    fp = archive.fp
    if fp is None:  # pragma: no cover - open for reading
        raise InvalidArchive(details="the archive is closed")
    directory = int(getattr(archive, "start_dir", 0)) or None
    spans: list[tuple[int, int, str]] = []
    for info in infos:
        fp.seek(info.header_offset)
        header = fp.read(_LOCAL.size)
        if len(header) != _LOCAL.size or header[:4] != _LOCAL_SIG:
            raise InvalidArchive(details=f"no local header for {_shown(info.filename)!r}")
        fields = _LOCAL.unpack(header)
        start = info.header_offset + _LOCAL.size + fields[9] + fields[10]
        spans.append((info.header_offset, start + info.compress_size, info.filename))
    spans.sort()
    for (_, end, name), (next_start, _, _) in itertools.pairwise(spans):
        if end > next_start:
            raise SuspectedZipBomb(details=f"the data of {_shown(name)!r} overlap the next entry")
    if spans and directory is not None and spans[-1][1] > directory:
        raise SuspectedZipBomb(details="an entry's data overlap the central directory")


def inspect(archive: zipfile.ZipFile, limits: ArchiveLimits) -> Inspection:
    """Return the archive's file entries, each with its structural problem if it has one."""
    out = Inspection()
    seen: set[str] = set()
    files: list[Entry] = []
    for index, info in enumerate(archive.infolist()):
        if info.is_dir():
            continue
        path, problem = _path(info.filename)
        if problem is None and _skipped(path):
            out.skipped.append(path)
            continue
        entry = Entry(index=index, path=path, info=info, problem=problem)
        entry.problem = entry.problem or _kind_problem(info) or _size_problem(info, limits)
        key = path.casefold()
        if entry.problem is None and key in seen:
            entry.problem = ImageProblem(
                DUPLICATE_FILE,
                "Duplicate file in the archive",
                "an earlier entry has the same path (names are compared ignoring case)",
            )
        seen.add(key)
        files.append(entry)
    out.entries = sorted(files, key=lambda e: (e.path, e.index))
    return out


def _shown(name: str) -> str:
    """Return an entry name fit for a message: printable, at most 255 characters."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in name)
    return clean[:_MAX_PATH_BYTES]


def _path(raw: str) -> tuple[str, ImageProblem | None]:
    """Return the entry's relative path, cleaned; with a problem when it may not be used."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        return _shown(raw), _unsafe("an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return _shown(raw), _unsafe("a path that climbs out of the archive with '..'")
    if not parts:
        return _shown(raw) or "(no name)", _unsafe("an empty path")
    if any(part.startswith(".") for part in parts) or parts[0].casefold() in _SKIPPED_DIRS:
        return "/".join(parts), None  # hidden: skipped by the caller
    clean = [sanitize_filename(part, fallback="") for part in parts]
    if not all(clean):
        return _shown(raw), _unsafe("a path component with no usable characters")
    path = "/".join(clean)
    if len(path.encode()) > _MAX_PATH_BYTES:
        return _shown(path), ImageProblem(
            UNSUPPORTED_ENTRY,
            "Path too long",
            f"paths in the archive may be at most {_MAX_PATH_BYTES} bytes",
        )
    return path, None


def _unsafe(what: str) -> ImageProblem:
    return ImageProblem(UNSAFE_PATH, "Unsafe path in the archive", f"the entry has {what}")


def _skipped(path: str) -> bool:
    parts = path.split("/")
    return (
        any(part.startswith(".") for part in parts)
        or parts[0].casefold() in _SKIPPED_DIRS
        or parts[-1].casefold() in _SKIPPED_FILES
    )


def _kind_problem(info: zipfile.ZipInfo) -> ImageProblem | None:
    """Return why an entry is not a plain file that can be read, or None."""
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode):
        if stat.S_ISLNK(mode):
            return ImageProblem(
                LINK_NOT_ALLOWED, "Links are not allowed in the archive", "a symbolic link"
            )
        if not stat.S_ISREG(mode):
            return ImageProblem(
                UNSUPPORTED_ENTRY, "Not a regular file", "a device, pipe or socket entry"
            )
    if info.flag_bits & 0x1:
        return ImageProblem(
            UNSUPPORTED_ENTRY, "Encrypted entry", "encrypted entries cannot be read"
        )
    if info.compress_type not in _METHODS:
        return ImageProblem(
            UNSUPPORTED_ENTRY,
            "Unsupported compression method",
            f"method {info.compress_type}; use stored or deflate",
        )
    return None


def _size_problem(info: zipfile.ZipInfo, limits: ArchiveLimits) -> ImageProblem | None:
    if info.file_size <= limits.max_file_size:
        return None
    mib = limits.max_file_size / MiB
    return ImageProblem(
        "FILE_TOO_LARGE",
        f"File exceeds the size limit of {mib:g} MB",
        f"the entry expands to {info.file_size} bytes; it was not expanded",
    )


def expand(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, max_bytes: int
) -> Expanded | ImageProblem:
    """Write one entry to ``dest``, stopping past ``max_bytes``; return what was learned.

    zipfile itself never returns more than the declared size and checks the CRC at the end.
    """
    out = Expanded()
    digest = hashlib.sha256()
    try:
        with archive.open(info) as source, dest.open("wb") as sink:
            while chunk := source.read(_CHUNK):
                out.size += len(chunk)
                if out.size > max_bytes:
                    out.too_large = True
                    break
                if len(out.head) < MAGIC_BYTES:
                    out.head += chunk[: MAGIC_BYTES - len(out.head)]
                digest.update(chunk)
                sink.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        # lzma and bz2 signal broken data as LZMAError (an OSError) and OSError.
        dest.unlink(missing_ok=True)
        return ImageProblem(
            "CORRUPTED_FILE",
            "The entry could not be read from the archive",
            f"{type(exc).__name__}: {exc}"[:300],
        )
    except (NotImplementedError, RuntimeError) as exc:  # a method or an encryption not handled
        dest.unlink(missing_ok=True)
        return ImageProblem(UNSUPPORTED_ENTRY, "Unsupported entry", str(exc)[:300])
    if out.too_large:
        dest.unlink(missing_ok=True)
    out.sha256 = digest.hexdigest()
    return out
