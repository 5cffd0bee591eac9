"""Image decoding to 8-bit RGB: JPEG, PNG, TIFF (16-bit, multi-page), grey, CMYK, palette, alpha."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from nesydet.pipeline.errors import ImageLoadError

_HIGH_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


def _depth_max(peak: float) -> float:
    """Returns the full-scale value of the smallest common sensor depth holding `peak`.

    12-bit sensors in 16-bit containers are common in remote sensing: dividing by 65535 would
    make them nearly black, dividing by the image's own max would change brightness per image.
    """
    for bits in (8, 10, 12, 14, 16):
        full = float(2**bits - 1)
        if peak <= full:
            return full
    return float(peak)


def scale_to_uint8(arr: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    """Returns high-bit-depth pixel data scaled linearly to 0..255 (never clipped).

    Integers are scaled by the full-scale value of the inferred sensor depth; floats in
    [0, 1] by 255, other floats by their maximum.
    """
    a = np.asarray(arr)
    if a.dtype == np.uint8:
        return a
    f = a.astype(np.float64)
    f = np.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)
    f -= min(0.0, float(f.min(initial=0.0)))
    peak = float(f.max(initial=0.0))
    if np.issubdtype(a.dtype, np.floating):
        full = 1.0 if peak <= 1.0 else peak
    else:
        full = _depth_max(peak)
    out: npt.NDArray[np.uint8] = np.clip(np.rint(f * (255.0 / max(full, 1e-12))), 0, 255).astype(
        np.uint8
    )
    return out


def to_rgb(img: Image.Image) -> Image.Image:
    """Returns `img` as 8-bit RGB: alpha dropped, palette/grey/CMYK converted, 16-bit scaled."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _HIGH_BIT_MODES:
        grey = scale_to_uint8(np.asarray(img))
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "P":
        # Palette images may carry transparency; go through RGBA so the palette is applied.
        return img.convert("RGBA").convert("RGB")
    if mode in {"RGBA", "RGBa", "LA", "La", "PA", "RGBX", "L", "1", "CMYK", "YCbCr", "HSV"}:
        return img.convert("RGB")
    if mode == "LAB":
        arr = np.asarray(img)[
            ..., 0
        ]  # keep lightness: a colour-managed transform needs LittleCMS profiles
        return Image.fromarray(arr, "L").convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageLoadError("unsupported image mode", mode) from exc


def _sixteen_bit_colour(path: Path, img: Image.Image) -> bool:
    """True when Pillow silently reduced a 16-bit colour image to 8 bits on open."""
    if img.mode != "RGB":
        return False
    if img.format == "TIFF":
        bits = getattr(img, "tag_v2", {}).get(258)
        return isinstance(bits, tuple) and any(int(b) > 8 for b in bits)
    if img.format == "PNG":
        with path.open("rb") as f:
            header = f.read(26)
        return len(header) == 26 and header[24] == 16
    return False


def _read_sixteen_bit_colour(path: Path) -> Image.Image:
    import cv2  # only for 16-bit colour, which Pillow cannot represent

    # IMREAD_UNCHANGED keeps the bit depth and ignores EXIF orientation, like Pillow here.
    data = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.ndim != 3 or data.shape[2] < 3:
        raise ImageLoadError("cannot decode 16-bit colour image", path.name)
    rgb = np.ascontiguousarray(data[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped
    return Image.fromarray(scale_to_uint8(rgb), "RGB")


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Returns the image at `path` decoded to 8-bit RGB, pixel grid exactly as stored.

    Handles JPEG, PNG and TIFF including 16-bit (scaled to 8-bit by the sensor's full
    scale, not clipped), grey, CMYK, palette and alpha (dropped). Multi-page TIFFs yield the
    first page. EXIF orientation is deliberately not applied: label coordinates refer to the
    stored pixel grid.

    Raises:
        ImageLoadError: When the file is missing or cannot be decoded.
    """
    p = Path(path)
    try:
        with Image.open(p) as img:
            img.seek(0)
            if _sixteen_bit_colour(p, img):
                return _read_sixteen_bit_colour(p)
            img.load()
            # An RGB image comes back as opened, not copied: its pixels are in memory after
            # load(), and leaving the with-block closes only the file (a copy cost about 30 ms
            # on a 7 MP scene).
            return to_rgb(img)
    except ImageLoadError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageLoadError("cannot decode image", f"{p.name}: {exc}") from exc
    except ImportError as exc:
        # Once ultralytics is imported, Image.open answers an unknown format by importing an
        # optional HEIF plugin, which this offline install does not have.
        raise ImageLoadError("cannot decode image", f"{p.name}: not a supported image") from exc


def as_rgb_array(image: Image.Image | npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Returns an HxWx3 uint8 RGB array for a PIL image (any mode) or an RGB array.

    Raises:
        ValueError: For arrays that are not HxWx3 uint8.
    """
    if isinstance(image, Image.Image):
        arr = np.asarray(to_rgb(image))
    else:
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ValueError(
                f"expected an HxWx3 uint8 RGB array, got shape {arr.shape} dtype {arr.dtype}"
            )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError("empty image")
    return arr
