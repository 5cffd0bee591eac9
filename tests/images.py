"""Image files made by the tests: every format and oddity the upload endpoint must handle."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _noise(width: int, height: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width, channels) if channels > 1 else (height, width)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    """Return the image encoded in ``fmt``."""
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def jpeg(width: int = 320, height: int = 240, mode: str = "RGB") -> bytes:
    """Return a JPEG (RGB, L or CMYK)."""
    image = Image.fromarray(_noise(width, height)).convert(mode)
    return encode(image, "JPEG", quality=90)


def png(width: int = 320, height: int = 200, mode: str = "RGB") -> bytes:
    """Return a PNG (RGB, RGBA, L, P)."""
    image = Image.fromarray(_noise(width, height, 4)[..., :3]).convert(mode)
    if mode == "RGBA":
        alpha = Image.fromarray(_noise(width, height, 1, seed=1))
        image.putalpha(alpha)
    return encode(image, "PNG")


def tiff(
    width: int = 256, height: int = 192, mode: str = "RGB", compression: str | None = None
) -> bytes:
    """Return a TIFF: RGB, RGBA, L, CMYK or I;16 (16-bit grayscale)."""
    if mode == "I;16":
        arr = np.arange(width * height, dtype=np.uint32).reshape(height, width) * 7 % 65536
        image = Image.fromarray(arr.astype(np.uint16))
        assert image.mode == "I;16"
    else:
        image = Image.fromarray(_noise(width, height, 4)[..., :3]).convert(mode)
        if mode == "RGBA":
            image.putalpha(128)
    params: dict[str, object] = {}
    if compression:
        params["compression"] = compression
    return encode(image, "TIFF", **params)


def tiff_rgb16(width: int = 128, height: int = 96) -> bytes:
    """Return a 16-bit-per-channel RGB TIFF, written by hand (Pillow cannot write one)."""
    pixels = (np.arange(width * height * 3, dtype=np.uint32) * 97 % 65536).astype("<u2")
    data = pixels.tobytes()
    entries = [
        (256, 3, 1, width),  # ImageWidth
        (257, 3, 1, height),  # ImageLength
        (258, 3, 3, None),  # BitsPerSample -> offset to (16, 16, 16)
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 2),  # Photometric: RGB
        (273, 4, 1, None),  # StripOffsets -> data
        (277, 3, 1, 3),  # SamplesPerPixel
        (278, 3, 1, height),  # RowsPerStrip
        (279, 4, 1, len(data)),  # StripByteCounts
        (284, 3, 1, 1),  # PlanarConfig: contiguous
    ]
    ifd_offset = 8
    ifd_size = 2 + len(entries) * 12 + 4
    bps_offset = ifd_offset + ifd_size
    data_offset = bps_offset + 6
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset))
    out += struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if tag == 258:
            value = bps_offset
        elif tag == 273:
            value = data_offset
        assert value is not None
        if typ == 3 and count == 1:
            out += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            out += struct.pack("<HHII", tag, typ, count, value)
    out += struct.pack("<I", 0)
    out += struct.pack("<HHH", 16, 16, 16)
    out += data
    return bytes(out)


def multipage_tiff(pages: int = 3, width: int = 128, height: int = 128) -> bytes:
    """Return a TIFF with several pages."""
    frames = [Image.fromarray(_noise(width, height, seed=i)) for i in range(pages)]
    return encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])


def truncated_png() -> bytes:
    """Return a PNG cut off in the middle of its image data."""
    data = png(400, 300)
    return data[: len(data) // 2]


def pdf() -> bytes:
    """Return a minimal PDF document."""
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
        b"trailer << /Root 1 0 R >>\n%%EOF\n"
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb(side: int = 50_000) -> bytes:
    """Return a tiny PNG that claims ``side`` x ``side`` pixels of one-bit black (2.5 Gpx)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def big_padded(size: int) -> bytes:
    """Return ``size`` bytes that start like a PNG (the size check must come first)."""
    head = png(64, 64)
    return head + b"\x00" * (size - len(head))
