"""Image validation that runs in a child process: header, dimensions and a full decode.

Decoding is done away from the API process so that a large or hostile image costs the server no
memory (the child has an address-space limit) and a decoder crash cannot take the API down.
This module imports only Pillow and the standard library: it is what the child loads.
"""

from __future__ import annotations

import math
import resource
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

FORMATS: dict[str, tuple[str, str]] = {
    # format -> (file extension, content type)
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "TIFF": ("tiff", "image/tiff"),
}
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
)
MAGIC_BYTES = max(len(magic) for magic, _ in _MAGIC)


def sniff_format(head: bytes) -> str | None:
    """Return JPEG, PNG or TIFF from a file's first bytes, or None for anything else."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the check learned of a valid image."""

    format: str
    width: int
    height: int
    mode: str
    page_count: int


@dataclass(frozen=True, slots=True)
class ImageProblem:
    """Why an image was refused: a spec error code, a message and details."""

    code: str
    message: str
    details: str


def limit_memory(max_bytes: int) -> None:
    """Cap this process's address space; used as the checker pool's initializer."""
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def noop() -> None:
    """Do nothing; used to start the checker's child processes ahead of time."""


def inspect_image(path: str, fmt: str, min_dim: int, max_dim: int) -> ImageInfo | ImageProblem:
    """Return the image's facts after a full decode, or the problem that stops it."""
    Image.MAX_IMAGE_PIXELS = max_dim * max_dim
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _inspect(Path(path), fmt, min_dim, max_dim)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            return ImageProblem(
                "INVALID_DIMENSIONS",
                f"Image dimensions out of range ({min_dim}x{min_dim} to {max_dim}x{max_dim})",
                f"decompression bomb guard: {exc}",
            )
        except MemoryError:
            return ImageProblem(
                "CORRUPTED_FILE", "Image could not be decoded", "decoding needs too much memory"
            )
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
                struct.error, IndexError, TypeError, ZeroDivisionError) as exc:  # fmt: skip
            # Pillow's decoders signal broken data with any of these.
            return ImageProblem(
                "CORRUPTED_FILE", "Image could not be decoded", f"{type(exc).__name__}: {exc}"
            )


def _inspect(path: Path, fmt: str, min_dim: int, max_dim: int) -> ImageInfo | ImageProblem:
    with Image.open(path, formats=[fmt]) as im:
        width, height = im.size
        mode = im.mode
        pages = int(getattr(im, "n_frames", 1))
    if not (min_dim <= width <= max_dim and min_dim <= height <= max_dim):
        return ImageProblem(
            "INVALID_DIMENSIONS",
            f"Image dimensions out of range ({min_dim}x{min_dim} to {max_dim}x{max_dim})",
            f"image is {width}x{height}",
        )
    if fmt == "PNG":
        # verify() checks every chunk's CRC and that the stream ends properly.
        with Image.open(path, formats=[fmt]) as im:
            im.verify()
    with Image.open(path, formats=[fmt]) as im:
        if fmt == "JPEG":
            # Entropy-decode everything but reconstruct at 1/8 scale: every byte of the scan is
            # checked at a fraction of the memory.
            im.draft(mode, (math.ceil(width / 8), math.ceil(height / 8)))
        im.load()
    return ImageInfo(format=fmt, width=width, height=height, mode=mode, page_count=pages)
