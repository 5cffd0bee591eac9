"""Scene canvas shared by the composers: terrain, painter, occupancy and placement helpers."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from demo_scenes import shapes as S
from demo_scenes import surface
from demo_scenes.terrain import Mask, Road, make_water, paint_ground, paint_water


class WorldBase:
    def __init__(self, w: int, h: int, rng: np.random.Generator) -> None:
        self.w, self.h, self.rng = w, h, rng
        kind = str(rng.choice(["none", "coast", "river", "lake"], p=[0.2, 0.35, 0.3, 0.15]))
        self.water: Mask = make_water(w, h, rng, kind)
        image = paint_water(paint_ground(w, h, rng), self.water, rng)
        a = rng.uniform(0, 2 * math.pi)
        self.p = S.Painter(image, rng, sun=(math.cos(a) * 1.5, math.sin(a) * 1.5))
        self.occ = Image.new("L", (w, h), 0)
        self.occ_draw = ImageDraw.Draw(self.occ)
        self.asphalt = S.jitter(rng, (82, 84, 88), 8)
        self.roads: list[Road] = []
        # What each pixel is (surface.LAND, ROAD, ...): the context map's ground truth.
        self.layer = Image.new("L", (w, h), surface.LAND)
        self.layer_draw = ImageDraw.Draw(self.layer)
        self.roofs: list[S.Points] = []

    # ---- occupancy -------------------------------------------------------------------------
    def free(self, pts: S.Points, *, on_water: bool = False, margin: float = 4.0) -> bool:
        """True when the polygon lies inside the image, on land (or water) and unoccupied."""
        x0, y0 = pts.min(axis=0) - margin
        x1, y1 = pts.max(axis=0) + margin
        if x0 < 0 or y0 < 0 or x1 >= self.w or y1 >= self.h:
            return False
        box = (int(x0), int(y0), int(x1) + 1, int(y1) + 1)
        local = Image.new("L", (box[2] - box[0], box[3] - box[1]), 0)
        ImageDraw.Draw(local).polygon(
            [(float(x - box[0]), float(y - box[1])) for x, y in pts], fill=1
        )
        inside = np.asarray(local, dtype=bool)
        wet = self.water[box[1] : box[3], box[0] : box[2]]
        if on_water and not wet[inside].all():
            return False
        if not on_water and wet[inside].any():
            return False
        return not np.asarray(self.occ.crop(box), dtype=bool)[inside].any()

    def mark(self, pts: S.Points, kind: int) -> None:
        """Records the surface under a polygon (see `surface`); roofs are also listed."""
        self.layer_draw.polygon([(float(x), float(y)) for x, y in pts], fill=kind)
        if kind == surface.ROOF:
            self.roofs.append(pts.copy())

    def mark_line(self, pts: S.Points, kind: int, width: float) -> None:
        """Records the surface under a drawn line of the given width."""
        self.layer_draw.line(
            [(float(x), float(y)) for x, y in pts], fill=kind, width=max(1, round(width))
        )

    def reserve(self, pts: S.Points, grow: float = 0.0) -> None:
        """Marks a polygon (optionally grown around its centre) as occupied."""
        c = pts.mean(axis=0)
        grown = c + (pts - c) * (1.0 + grow)
        self.occ_draw.polygon([(float(x), float(y)) for x, y in grown], fill=1)

    def find_spot(
        self,
        sw: float,
        sh: float,
        angle: float | None = None,
        tries: int = 40,
        on_water: bool = False,
    ) -> tuple[float, float, float] | None:
        """Returns (cx, cy, angle) of a free sw x sh footprint, or None."""
        for _ in range(tries):
            a = self.rng.uniform(0, math.pi) if angle is None else angle
            cx, cy = self.rng.uniform(0, self.w), self.rng.uniform(0, self.h)
            pts = S.Painter.place(S.rect(sw, sh), cx, cy, a)
            if self.free(pts, on_water=on_water):
                return cx, cy, a
        return None

    def in_water(self, x: float, y: float) -> bool:
        xi, yi = int(x), int(y)
        return 0 <= xi < self.w and 0 <= yi < self.h and bool(self.water[yi, xi])

    # ---- roads -----------------------------------------------------------------------------

    def _pad(
        self, sw: float, sh: float, color: S.RGB, kind: int = surface.PAVED
    ) -> tuple[float, float, float] | None:
        spot = self.find_spot(sw, sh)
        if spot is None:
            return None
        cx, cy, a = spot
        pts = S.Painter.place(S.rect(sw, sh), cx, cy, a)
        self.p.poly(pts, S.jitter(self.rng, color, 8))
        self.mark(pts, kind)
        self.reserve(pts, 0.05)
        return spot

    @staticmethod
    def _at(spot: tuple[float, float, float], u: float, v: float) -> tuple[float, float]:
        cx, cy, a = spot
        q = S.Painter.place(np.array([[u, v]]), cx, cy, a)[0]
        return float(q[0]), float(q[1])

    def _inside(self, pts: S.Points, margin: float) -> bool:
        return bool(
            (pts.min(axis=0) > margin).all()
            and (pts[:, 0].max() < self.w - margin)
            and (pts[:, 1].max() < self.h - margin)
        )
