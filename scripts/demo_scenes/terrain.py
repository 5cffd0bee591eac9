"""Ground, water and road layers of a synthetic scene (no labelled objects except bridges)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

from demo_scenes.shapes import RGB, Painter, Points, jitter

FloatImage = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


def fbm(
    h: int, w: int, rng: np.random.Generator, cells: tuple[int, ...] = (256, 64, 16)
) -> FloatImage:
    """Returns smooth fractal noise in [0, 1] of shape (h, w) built from bicubic value noise."""
    out = np.zeros((h, w), dtype=np.float32)
    total = 0.0
    for k, cell in enumerate(cells):
        gh, gw = h // cell + 3, w // cell + 3
        grid = rng.random((gh, gw)).astype(np.float32)
        up = Image.fromarray(grid, mode="F").resize(
            (gw * cell, gh * cell), Image.Resampling.BICUBIC
        )
        weight = 0.5**k
        out += weight * np.asarray(up, dtype=np.float32)[:h, :w]
        total += weight
    out /= total
    lo, hi = float(out.min()), float(out.max())
    norm: FloatImage = (out - lo) / max(hi - lo, 1e-6)
    return norm


@dataclass
class Road:
    """A straight road on land, stored as the drawn pieces between water crossings."""

    pieces: list[tuple[Points, Points]]
    width: float
    angle: float


def paint_ground(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """Returns a textured land image: base tone, fractal variation and field patches."""
    palette: list[RGB] = [
        (98, 112, 72),
        (122, 116, 88),
        (140, 128, 102),
        (84, 100, 70),
        (110, 118, 95),
    ]
    base = np.array(palette[int(rng.integers(len(palette)))], dtype=np.float32)
    tex = fbm(h, w, rng)
    fine = rng.normal(0.0, 5.0, (h, w, 3)).astype(np.float32)
    img = base[None, None, :] * (0.78 + 0.44 * tex)[:, :, None] + fine
    image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image, "RGBA")
    n_fields = int(w * h / 90_000) + 1
    for _ in range(n_fields):  # agricultural parcels with a slightly different tone
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        fw, fh, a = rng.uniform(60, 260), rng.uniform(40, 200), rng.uniform(0, math.pi)
        pts = Painter.place(
            np.array([[-fw / 2, -fh / 2], [fw / 2, -fh / 2], [fw / 2, fh / 2], [-fw / 2, fh / 2]]),
            cx,
            cy,
            a,
        )
        c = jitter(rng, (int(base[0]), int(base[1]), int(base[2])), 25)
        draw.polygon([(float(x), float(y)) for x, y in pts], fill=(*c, 70))
    return image


def make_water(w: int, h: int, rng: np.random.Generator, kind: str) -> Mask:
    """Returns a boolean water mask for a coast, river, lake or no water."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wobble = (fbm(h, w, rng, (192, 48)) - 0.5) * 2.0
    if kind == "coast":
        a = rng.uniform(0, 2 * math.pi)
        nx, ny = math.cos(a), math.sin(a)
        s = (xx - w / 2) * nx + (yy - h / 2) * ny
        extent = abs(w / 2 * nx) + abs(h / 2 * ny)
        d = rng.uniform(0.1, 0.55) * extent
        mask: Mask = s + 60.0 * wobble > d
        return mask
    if kind == "river":
        a = rng.uniform(0, math.pi)
        nx, ny = -math.sin(a), math.cos(a)
        tx, ty = math.cos(a), math.sin(a)
        px, py = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        along = (xx - px) * tx + (yy - py) * ty
        perp = (xx - px) * nx + (yy - py) * ny
        amp, lam = rng.uniform(20, 90), rng.uniform(500, 1200)
        width = rng.uniform(50, 140)
        centre = amp * np.sin(2 * math.pi * along / lam + rng.uniform(0, 6.3))
        river: Mask = np.abs(perp - centre - 15.0 * wobble) < width / 2
        return river
    if kind == "lake":
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        r = rng.uniform(0.15, 0.3) * min(w, h) + 60
        dist = np.hypot(xx - cx, (yy - cy) * rng.uniform(0.7, 1.3))
        lake: Mask = dist + 70.0 * wobble < r
        return lake
    return np.zeros((h, w), dtype=np.bool_)


def paint_water(image: Image.Image, water: Mask, rng: np.random.Generator) -> Image.Image:
    """Returns image with water painted in, plus a sandy shoreline."""
    if not water.any():
        return image
    h, w = water.shape
    arr = np.asarray(image, dtype=np.float32).copy()
    m = Image.fromarray(water.astype(np.uint8) * 255, "L")
    shore = np.asarray(m.filter(ImageFilter.MaxFilter(7)), dtype=np.uint8) > 0
    sand = jitter(rng, (170, 160, 130), 15)
    arr[shore & ~water] = 0.6 * arr[shore & ~water] + 0.4 * np.array(sand, dtype=np.float32)
    base = np.array(jitter(rng, (36, 66, 86), 10), dtype=np.float32)
    tex = fbm(h, w, rng, (64, 8))
    water_px = base[None, :] * (0.85 + 0.3 * tex[water])[:, None] + rng.normal(
        0, 2.5, (int(water.sum()), 3)
    )
    arr[water] = water_px
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def water_runs(water: Mask, p0: Points, p1: Points) -> list[tuple[int, int]]:
    """Returns (start, end) sample indices of water stretches along p0->p1 (1 px steps)."""
    n = int(np.hypot(*(p1 - p0))) + 1
    t = np.linspace(0.0, 1.0, n)
    pts = p0[None, :] + t[:, None] * (p1 - p0)[None, :]
    h, w = water.shape
    xi = np.clip(pts[:, 0].astype(int), 0, w - 1)
    yi = np.clip(pts[:, 1].astype(int), 0, h - 1)
    wet = water[yi, xi]
    runs: list[tuple[int, int]] = []
    start = -1
    for i, v in enumerate(wet):
        if v and start < 0:
            start = i
        elif not v and start >= 0:
            runs.append((start, i))
            start = -1
    if start >= 0:
        runs.append((start, n))
    return runs
