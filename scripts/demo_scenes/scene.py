"""Scene composition: terrain, roads, sites (airport, tank farm, parking, sports...), harbour.

Objects are placed with the co-occurrence structure of real aerial imagery: planes in rows on
aprons, tanks in clusters, cars in parking lots and in traffic, ships docked at piers or in
groups on the water, pools behind houses. Distractors (containers, buildings, rooftop units,
sheds, trees, buoys) are scattered as hard negatives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter
from shapely.geometry import Polygon, box

from demo_scenes import shapes as S
from demo_scenes import surface
from demo_scenes.classes import CLASS_IDS as C
from demo_scenes.lookalikes import Lookalike, add_lookalikes
from demo_scenes.sites import Sites
from demo_scenes.terrain import Road, water_runs


@dataclass(frozen=True)
class SceneObject:
    """One labelled object: class id and its oriented box corners (4x2, pixels)."""

    cls: int
    corners: S.Points


@dataclass(frozen=True)
class Scene:
    """A rendered scene, its ground truth, the surface under each pixel and any look-alikes."""

    image: Image.Image
    objects: list[SceneObject]
    surface: npt.NDArray[np.uint8] = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    lookalikes: list[Lookalike] = field(default_factory=list)


class _World(Sites):
    def add_roads(self) -> None:
        rng, p = self.rng, self.p
        n = int(rng.poisson(self.w * self.h / 700**2 * 1.2)) + 1
        diag = math.hypot(self.w, self.h)
        for _ in range(n):
            a = (
                rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.15)
                if rng.random() < 0.6
                else rng.uniform(0, math.pi)
            )
            cx, cy = rng.uniform(0.1, 0.9) * self.w, rng.uniform(0.1, 0.9) * self.h
            d = np.array([math.cos(a), math.sin(a)])
            p0, p1 = np.array([cx, cy]) - d * diag, np.array([cx, cy]) + d * diag
            width = rng.uniform(12, 18)
            runs = water_runs(self.water, p0, p1)
            n_samples = int(np.hypot(*(p1 - p0))) + 1
            cuts = [0]
            for s0, s1 in runs:
                pa = p0 + (p1 - p0) * s0 / n_samples
                pb = p0 + (p1 - p0) * s1 / n_samples
                inside = all(0 < q[0] < self.w and 0 < q[1] < self.h for q in (pa, pb))
                if inside and 25 < s1 - s0 < 240:  # bridge the crossing
                    mid = (pa + pb) / 2
                    S.draw_bridge(
                        p, C["bridge"], float(mid[0]), float(mid[1]), s1 - s0 + 18, width + 4, a
                    )
                    self.reserve(
                        S.Painter.place(
                            S.rect(s1 - s0 + 18, width + 4), float(mid[0]), float(mid[1]), a
                        )
                    )
                else:
                    cuts.extend([s0, s1])
            cuts.append(n_samples)
            pieces = []
            for k in range(0, len(cuts), 2):
                qa = p0 + (p1 - p0) * cuts[k] / n_samples
                qb = p0 + (p1 - p0) * cuts[k + 1] / n_samples
                if np.hypot(*(qb - qa)) > 20:
                    pieces.append((qa, qb))
                    p.line(np.stack([qa, qb]), self.asphalt, width)
                    self.mark_line(np.stack([qa, qb]), surface.ROAD, width)
                    self.occ_draw.line([tuple(qa), tuple(qb)], fill=1, width=int(width + 6))
                    if width > 12:
                        p.line(np.stack([qa, qb]), (200, 200, 190, 120), 1)
            self.roads.append(Road(pieces, width, a))
        self.add_roundabouts()

    def add_roundabouts(self) -> None:
        for i, r1 in enumerate(self.roads):
            for r2 in self.roads[i + 1 :]:
                for a0, a1 in r1.pieces:
                    for b0, b1 in r2.pieces:
                        hit = _intersect(a0, a1, b0, b1)
                        if hit is None or self.rng.random() > 0.7:
                            continue
                        x, y = hit
                        r = self.rng.uniform(18, 30)
                        if not (r + 5 < x < self.w - r - 5 and r + 5 < y < self.h - r - 5):
                            continue
                        if self.water[
                            max(0, int(y - r)) : int(y + r), max(0, int(x - r)) : int(x + r)
                        ].any():
                            continue
                        S.draw_roundabout(self.p, C["roundabout"], x, y, r, self.asphalt)
                        self.mark(S.ellipse(r, r, 40, x, y), surface.ROAD)

    # ---- traffic ---------------------------------------------------------------------------
    def add_traffic(self) -> None:
        rng = self.rng
        for road in self.roads:
            for qa, qb in road.pieces:
                length = float(np.hypot(*(qb - qa)))
                d = (qb - qa) / max(length, 1e-6)
                normal = np.array([-d[1], d[0]])
                taken: dict[int, list[tuple[float, float]]] = {1: [], -1: []}
                for _ in range(int(rng.poisson(length / 420))):
                    t = rng.uniform(0, length)
                    lane = 1 if rng.random() < 0.5 else -1
                    heading = road.angle if lane > 0 else road.angle + math.pi
                    for _k in range(int(rng.integers(2, 8))):
                        large = rng.random() < 0.18
                        L = rng.uniform(26, 40) if large else rng.uniform(13, 18)
                        t += L / 2
                        pos = qa + d * t + normal * lane * road.width / 4
                        if t > length or self.in_water(*pos):
                            break
                        span = (t - L / 2 - 2, t + L / 2 + 2)
                        if any(a < span[1] and span[0] < b for a, b in taken[lane]):
                            break  # another queue already occupies this stretch of the lane
                        taken[lane].append(span)
                        fn = S.draw_large_vehicle if large else S.draw_small_vehicle
                        fn(
                            self.p,
                            C["large_vehicle" if large else "small_vehicle"],
                            float(pos[0]),
                            float(pos[1]),
                            L,
                            heading + rng.normal(0, 0.03),
                        )
                        t += L / 2 + rng.uniform(3, 18)

    # ---- sites -----------------------------------------------------------------------------
    def add_harbors(self) -> None:
        rng = self.rng
        if self.water.sum() < 0.05 * self.w * self.h:
            return
        m = Image.fromarray(self.water.astype(np.uint8) * 255, "L")
        soft = np.asarray(m.filter(ImageFilter.GaussianBlur(10)), dtype=np.float32)
        grad = np.gradient(soft)
        gy, gx = np.asarray(grad[0], dtype=np.float64), np.asarray(grad[1], dtype=np.float64)
        shore = (np.asarray(m.filter(ImageFilter.MaxFilter(3)), dtype=bool)) & ~self.water
        ys, xs = np.nonzero(shore)
        if len(xs) == 0:
            return
        for _ in range(int(rng.poisson(self.w * self.h / 1100**2)) + 1):
            i = int(rng.integers(len(xs)))
            sx, sy = float(xs[i]), float(ys[i])
            g = np.array([float(gx[ys[i], xs[i]]), float(gy[ys[i], xs[i]])])
            if np.hypot(*g) < 1e-3:
                continue
            nvec = g / np.hypot(*g)
            tvec = np.array([-nvec[1], nvec[0]])
            a = math.atan2(nvec[1], nvec[0])
            for k in range(int(rng.integers(1, 5))):
                L, pw = rng.uniform(60, 140), rng.uniform(7, 13)
                base = np.array([sx, sy]) + tvec * k * rng.uniform(45, 70)
                c = base + nvec * (L / 2 - 5)
                if not (
                    self.in_water(*(base + nvec * L)) and self.in_water(*(base + nvec * L * 0.5))
                ):
                    continue
                pier = S.Painter.place(S.rect(L, pw), float(c[0]), float(c[1]), a)
                on_road = (
                    np.asarray(self.occ, dtype=bool)[int(base[1]), int(base[0])]
                    if self._inside(pier, 2)
                    else True
                )
                if on_road:
                    continue
                S.draw_harbor_pier(self.p, C["harbor"], float(c[0]), float(c[1]), L, pw, a)
                self.reserve(pier, 0.05)
                for side in (-1, 1):
                    for j in range(int(rng.integers(0, 3))):
                        sl = rng.uniform(22, min(55, L * 0.85))
                        off = pw / 2 + sl * 0.14 + 2.5
                        pos = base + nvec * (L * (0.3 + 0.45 * j) + 5) + tvec * side * off
                        pos2 = pos + tvec * side * sl * 0.14
                        if self.in_water(*pos2) and self.in_water(*(pos + nvec * sl / 2)):
                            S.draw_ship(
                                self.p,
                                C["ship"],
                                float(pos[0]),
                                float(pos[1]),
                                sl,
                                a + rng.normal(0, 0.03),
                            )
                            self.reserve(
                                S.Painter.place(
                                    S.rect(sl, sl * 0.28), float(pos[0]), float(pos[1]), a
                                )
                            )

    def add_ships(self) -> None:
        rng = self.rng
        area = float(self.water.sum())
        if area < 0.03 * self.w * self.h:
            return
        for _ in range(int(rng.poisson(area / 450**2)) + 1):
            spot = self.find_spot(60, 60, on_water=True)
            if spot is None:
                continue
            gx, gy, _a = spot
            heading = rng.uniform(0, 2 * math.pi)
            for _k in range(int(rng.integers(1, 6))):
                L = rng.uniform(20, 55)
                x, y = gx + rng.normal(0, 35), gy + rng.normal(0, 35)
                h = heading + rng.normal(0, 0.4)
                hull = S.Painter.place(S.rect(L, L * 0.27), x, y, h)
                if not self.free(hull, on_water=True, margin=2):
                    continue
                S.draw_ship(self.p, C["ship"], x, y, L, h, wake=rng.random() < 0.3)
                self.reserve(hull, 0.3)
        for _ in range(int(area / 60_000)):  # buoys and floating debris: hard negatives
            x, y = rng.uniform(0, self.w), rng.uniform(0, self.h)
            if self.in_water(x, y):
                r = rng.uniform(1.0, 2.5)
                self.p.poly(S.ellipse(r * 1.6, r, 8, x, y), S.jitter(rng, (215, 210, 200), 20))

    # ---- clutter ---------------------------------------------------------------------------
    def add_clutter(self) -> None:
        rng = self.rng
        for _ in range(int(self.w * self.h / 25_000)):  # tree clumps
            cx, cy = rng.uniform(0, self.w), rng.uniform(0, self.h)
            for _k in range(int(rng.integers(1, 9))):
                x, y, r = cx + rng.normal(0, 12), cy + rng.normal(0, 12), rng.uniform(3, 8)
                blob = S.ellipse(r, r, 10, x, y)
                if self.free(blob, margin=0):
                    self.p.shadow(blob, r * 0.3, 70)
                    self.p.poly(blob, S.jitter(rng, (45, 75, 40), 12))
        for _ in range(int(self.w * self.h / 60_000)):  # lone sheds: vehicle-sized negatives
            x, y = rng.uniform(0, self.w), rng.uniform(0, self.h)
            shed = S.Painter.place(
                S.rect(rng.uniform(8, 22), rng.uniform(6, 10)), x, y, rng.uniform(0, math.pi)
            )
            if self.free(shed, margin=1):
                self.p.shadow(shed, 1.5, 80)
                self.mark(shed, surface.ROOF)
                self.p.poly(
                    shed,
                    S.jitter(
                        rng, S.pick(rng, [(190, 190, 185), (120, 110, 100), (160, 70, 60)]), 15
                    ),
                )


def _intersect(
    a0: S.Points, a1: S.Points, b0: S.Points, b1: S.Points
) -> tuple[float, float] | None:
    d1, d2 = a1 - a0, b1 - b0
    den = d1[0] * d2[1] - d1[1] * d2[0]
    if abs(den) < 1e-6:
        return None
    t = ((b0[0] - a0[0]) * d2[1] - (b0[1] - a0[1]) * d2[0]) / den
    u = ((b0[0] - a0[0]) * d1[1] - (b0[1] - a0[1]) * d1[0]) / den
    if 0 < t < 1 and 0 < u < 1:
        q = a0 + t * d1
        return float(q[0]), float(q[1])
    return None


MIN_VISIBLE = 0.55


def clip_objects(
    objects: list[SceneObject], x0: float, y0: float, w: float, h: float
) -> list[SceneObject]:
    """Returns the objects visible in a frame, in frame coordinates.

    Truncated objects keep the minimum rotated rectangle of their visible part, the way DOTA's
    image splitter does; objects less than MIN_VISIBLE visible are dropped (roads run past
    the image border, so traffic is also placed outside it).
    """
    frame = box(x0, y0, x0 + w, y0 + h)
    out: list[SceneObject] = []
    for obj in objects:
        poly = Polygon(obj.corners)
        if not poly.is_valid or poly.area <= 0 or not poly.intersects(frame):
            continue
        inter = poly.intersection(frame)
        frac = inter.area / poly.area
        if frac < MIN_VISIBLE:
            continue
        if frac > 0.98:
            corners = obj.corners
        else:
            rect = inter.minimum_rotated_rectangle
            corners = np.asarray(rect.exterior.coords, dtype=np.float64)[:4]
        out.append(SceneObject(obj.cls, corners - np.array([x0, y0])))
    return out


def generate_scene(
    width: int,
    height: int,
    seed: int | tuple[int, ...],
    *,
    lookalikes: bool = False,
    layout: str = "mixed",
) -> Scene:
    """Returns a rendered scene of width x height pixels, fully determined by seed.

    Args:
        width: Scene width in pixels.
        height: Scene height in pixels.
        seed: Seed of everything drawn.
        lookalikes: Also paint unlabelled look-alikes (see `lookalikes`); the rest of the
            scene is pixel for pixel the one rendered without them.
        layout: "mixed" (every kind of site) or "car_park" (parking lots and truck depots
            packed together: the densest scene, several hundred vehicles per megapixel).
    """
    rng = np.random.default_rng(seed)
    world = _World(width, height, rng)
    world.add_roads()
    if layout == "car_park":
        for k in range(int(width * height / 40_000)):
            world.site_depot() if k % 8 == 7 else world.site_parking()
    else:
        world.add_harbors()
        world.add_ships()
        world.add_sites()
    world.add_traffic()
    world.add_clutter()
    extra: list[Lookalike] = []
    if lookalikes:
        base = (seed,) if isinstance(seed, int) else tuple(seed)
        extra = add_lookalikes(world, np.random.default_rng((*base, 99)))
    image = world.p.image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.8)))
    arr = np.asarray(image, dtype=np.float64)
    gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-12, 12)
    noisy = arr * gain + bias + rng.normal(0, rng.uniform(1.5, 4.0), arr.shape)
    out = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    labelled = [SceneObject(cls, corners) for cls, corners in world.p.labels]
    objects = clip_objects(labelled, 0, 0, width, height)
    layer = surface.finish(np.asarray(world.layer, dtype=np.uint8), world.water)
    return Scene(out, objects, layer, extra)
