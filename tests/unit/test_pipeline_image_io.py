"""Image decoding: formats, bit depths, modes, pages, EXIF orientation, broken files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from nesydet.pipeline import ImageLoadError, load_image
from nesydet.pipeline.image_io import as_rgb_array, scale_to_uint8


def gradient(h: int = 40, w: int = 60) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.float64)
    rgb = np.stack([np.tile(x, (h, 1)), np.tile(x[::-1], (h, 1)), np.full((h, w), 128.0)], axis=2)
    return rgb.astype(np.uint8)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".bmp", ".webp"])
def test_rgb_formats(tmp_path: Path, suffix: str) -> None:
    arr = gradient()
    path = tmp_path / f"img{suffix}"
    table: dict[str, dict[str, Any]] = {".jpg": {"quality": 98}, ".webp": {"lossless": True}}
    options = table.get(suffix, {})
    Image.fromarray(arr).save(path, **options)
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.size == (60, 40)
    assert np.abs(np.asarray(img, dtype=int) - arr).max() <= (6 if suffix == ".jpg" else 0)


def test_sixteen_bit_grey_scaled_not_clipped(tmp_path: Path) -> None:
    g8 = gradient()[:, :, 0]
    path = tmp_path / "g16.tif"
    Image.fromarray(g8.astype(np.uint16) * 257).save(path)  # full 16-bit range
    out = np.asarray(load_image(path))
    assert out.shape == (40, 60, 3)
    assert np.abs(out[:, :, 0].astype(int) - g8).max() <= 1
    assert out[:, :, 0].max() == 255  # not clipped to white, not left dark


def test_twelve_bit_in_sixteen_bit_container(tmp_path: Path) -> None:
    g8 = gradient()[:, :, 0]
    data = (g8.astype(np.float64) / 255 * 4095).round().astype(np.uint16)  # 12-bit sensor
    path = tmp_path / "g12.png"
    cv2.imwrite(str(path), data)
    out = np.asarray(load_image(path))[:, :, 0]
    assert np.abs(out.astype(int) - g8).max() <= 1


def test_sixteen_bit_colour_tiff_and_png(tmp_path: Path) -> None:
    arr = gradient()
    data16 = arr.astype(np.uint16) * 257
    for name in ("c16.tif", "c16.png"):
        path = tmp_path / name
        cv2.imwrite(str(path), np.ascontiguousarray(data16[:, :, ::-1]))  # cv2 writes BGR
        out = np.asarray(load_image(path))
        assert out.shape == (40, 60, 3)
        assert np.abs(out.astype(int) - arr).max() <= 1, name


@pytest.mark.parametrize("mode", ["L", "1", "CMYK", "RGBA", "LA", "P", "I", "F"])
def test_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    base = Image.fromarray(gradient())
    if mode in {"I", "F"}:
        img = base.convert("L").convert(mode)
    else:
        img = base.convert(mode)
    path = tmp_path / ("x.tif" if mode in {"CMYK", "I", "F", "LA"} else "x.png")
    img.save(path)
    out = load_image(path)
    assert out.mode == "RGB"
    assert out.size == (60, 40)


def test_alpha_is_dropped_not_composited(tmp_path: Path) -> None:
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    assert tuple(np.asarray(load_image(path))[0, 0]) == (200, 0, 0)


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (8, 8), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.info["transparency"] = 0
    path = tmp_path / "p.png"
    img.save(path, transparency=0)
    assert tuple(np.asarray(load_image(path))[0, 0]) == (10, 200, 30)


def test_multipage_tiff_first_page(tmp_path: Path) -> None:
    pages = [Image.new("RGB", (20, 10), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "multi.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    out = load_image(path)
    assert out.size == (20, 10)
    assert tuple(np.asarray(out)[0, 0]) == (255, 0, 0)


def test_exif_orientation_not_applied(tmp_path: Path) -> None:
    img = Image.fromarray(gradient(20, 50))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW" on display
    path = tmp_path / "o.jpg"
    img.save(path, exif=exif.tobytes())
    assert load_image(path).size == (50, 20)  # stored pixel grid, labels refer to it


@pytest.mark.parametrize(
    "content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"]
)
def test_broken_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError):
        load_image(path)
    with pytest.raises(ImageLoadError):
        load_image(tmp_path / "missing.png")


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "t.jpg"
    Image.fromarray(gradient(200, 200)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageLoadError):
        load_image(path)


def test_scale_to_uint8_float_and_depths() -> None:
    assert scale_to_uint8(np.array([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]
    assert scale_to_uint8(np.array([0, 1023], dtype=np.uint16)).tolist() == [0, 255]
    assert scale_to_uint8(np.array([0, 200], dtype=np.uint16)).tolist() == [0, 200]


def test_as_rgb_array() -> None:
    arr = gradient()
    assert as_rgb_array(arr) is arr or np.array_equal(as_rgb_array(arr), arr)
    assert as_rgb_array(Image.fromarray(arr).convert("L")).shape == (40, 60, 3)
    with pytest.raises(ValueError, match="HxWx3"):
        as_rgb_array(arr[:, :, 0])
    with pytest.raises(ValueError, match="HxWx3"):
        as_rgb_array(arr.astype(np.float32))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_loaded_image_outlives_its_file(tmp_path: Path, suffix: str) -> None:
    arr = gradient()
    path = tmp_path / f"img{suffix}"
    Image.fromarray(arr).save(path)
    img = load_image(path)
    path.unlink()
    assert getattr(img, "fp", None) is None  # the file is closed
    assert np.array_equal(np.asarray(img), arr)
    assert np.array_equal(np.asarray(img.copy()), arr)
