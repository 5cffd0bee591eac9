"""Look-alikes: unlabelled background objects shaped like a class but out of its context.

The mistakes a detector really makes from above: a boat-shaped roof or a boat on a trailer far
from any water, a plane-shaped mark on the water, a car-sized box on a roof, a tank-like
roundel alone in a field. Each is drawn with the same painter as the real class, so only the
context tells it apart. None is a labelled object (they count as background), the demo
detector never saw them in training, and they are listed apart so the quality bench can say
which false detections they caused.

They are painted after the scene is composed, with their own random generator, so a scene
with look-alikes is the same scene as without them, plus the look-alikes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from demo_scenes import shapes as S
from demo_scenes.classes import CLASS_IDS as C
from demo_scenes.world import WorldBase

KINDS = ("boat_on_land", "plane_on_water", "car_on_roof", "tank_in_field")
DENSITY_PX = 300.0  # one look-alike per DENSITY_PX^2 pixels of scene (about 11 per megapixel)
DRY_MARGIN = 60  # boats on land stay this far from water: a boat at the shore may be real


@dataclass(frozen=True)
class Lookalike:
    """One look-alike: its kind, the class it resembles, and its oriented box corners."""

    kind: str
    imitates: int
    corners: S.Points


class _Placer:
    def __init__(self, world: WorldBase, rng: np.random.Generator) -> None:
        self.world, self.rng = world, rng
        self.painter = S.Painter(world.p.image, rng, sun=world.p.sun)
        self.out: list[Lookalike] = []

    def _keep(self, kind: str, cls: int) -> None:
        _cls, corners = self.painter.labels.pop()
        self.out.append(Lookalike(kind, cls, corners))

    def _spot(
        self, sw: float, sh: float, *, on_water: bool = False, dry: int = 0
    ) -> tuple[float, float, float] | None:
        """Returns a free spot; with `dry`, one with no water within that many pixels.

        Draws from the look-alikes' own generator (the world's `find_spot` would shift the
        world's random stream, and with it the scene's noise).
        """
        w, rng = self.world, self.rng
        for _ in range(40):
            x, y, a = rng.uniform(0, w.w), rng.uniform(0, w.h), rng.uniform(0, math.pi)
            if not w.free(S.Painter.place(S.rect(sw, sh), x, y, a), on_water=on_water):
                continue
            xi, yi = int(x), int(y)
            near = w.water[max(0, yi - dry) : yi + dry + 1, max(0, xi - dry) : xi + dry + 1]
            if not dry or not near.any():
                return x, y, a
        return None

    def boat_on_land(self) -> None:
        L = self.rng.uniform(22, 50)
        spot = self._spot(L, L * 0.3, dry=DRY_MARGIN)
        if spot is None:
            return
        x, y, a = spot
        S.draw_ship(self.painter, -1, x, y, L, a)
        self.world.reserve(S.Painter.place(S.rect(L, L * 0.3), x, y, a), 0.3)
        self._keep("boat_on_land", C["ship"])

    def plane_on_water(self) -> None:
        L = self.rng.uniform(28, 46)
        spot = self._spot(L * 1.1, L * 1.1, on_water=True)
        if spot is None:
            return
        x, y, a = spot
        S.draw_plane(self.painter, -1, x, y, L, a)
        self.world.reserve(S.Painter.place(S.rect(L, L), x, y, a), 0.2)
        self._keep("plane_on_water", C["plane"])

    def car_on_roof(self) -> None:
        roofs = [r for r in self.world.roofs if _sides(r).min() >= 18]
        if not roofs:
            return
        roof = roofs[int(self.rng.integers(len(roofs)))]
        e1, e2 = roof[1] - roof[0], roof[3] - roof[0]
        u, v = self.rng.uniform(0.3, 0.7, 2)
        x, y = roof[0] + u * e1 + v * e2
        L = self.rng.uniform(13, 17)
        a = math.atan2(e1[1], e1[0]) + self.rng.choice([0.0, math.pi / 2])
        S.draw_small_vehicle(self.painter, -1, float(x), float(y), L, float(a))
        self._keep("car_on_roof", C["small_vehicle"])

    def tank_in_field(self) -> None:
        D = self.rng.uniform(14, 30)
        spot = self._spot(D + 8, D + 8)
        if spot is None:
            return
        x, y, _a = spot
        S.draw_storage_tank(self.painter, -1, x, y, D)
        self.world.reserve(S.rect(D, D, x, y), 0.2)
        self._keep("tank_in_field", C["storage_tank"])


def _sides(pts: S.Points) -> S.Points:
    return np.hypot(*(np.roll(pts, -1, axis=0) - pts).T)


def add_lookalikes(world: WorldBase, rng: np.random.Generator) -> list[Lookalike]:
    """Paints look-alikes into the world's image; returns them (never labelled)."""
    placer = _Placer(world, rng)
    draw: dict[str, Callable[[], None]] = {kind: getattr(placer, kind) for kind in KINDS}
    n = int(rng.poisson(world.w * world.h / DENSITY_PX**2))
    for kind in rng.choice(KINDS, size=n):
        draw[str(kind)]()
    return placer.out
