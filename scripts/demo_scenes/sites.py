"""Land-use sites: airport aprons, tank farms, parking lots, depots, housing, sports, offices."""

from __future__ import annotations

import math

import numpy as np

from demo_scenes import shapes as S
from demo_scenes import surface
from demo_scenes.classes import CLASS_IDS as C
from demo_scenes.world import WorldBase


class Sites(WorldBase):
    """Adds land-use sites, each with its objects laid out the way they occur in reality."""

    def add_sites(self) -> None:
        rng = self.rng
        kinds = ["apron", "tanks", "parking", "depot", "residential", "sports", "buildings"]
        weights = np.array([1.0, 1.0, 1.3, 0.8, 1.0, 1.3, 0.8])
        n = int(rng.poisson(self.w * self.h / 420**2)) + 1
        for _ in range(n):
            kind = str(rng.choice(kinds, p=weights / weights.sum()))
            getattr(self, f"site_{kind}")()

    def site_apron(self) -> None:
        rng = self.rng
        L = rng.uniform(28, 48)
        sw, sh = rng.uniform(5, 9) * L, rng.uniform(1.4, 2.6) * L
        spot = self._pad(sw, sh, (158, 158, 152), surface.RUNWAY)
        if spot is None:
            return
        a = spot[2]
        rows = 2 if sh > 2.3 * L else 1
        n = int(sw // (1.12 * L))
        heli = rng.random() < 0.35
        for r in range(rows):
            v = -sh / 2 + L * 0.55 + r * 1.1 * L
            for k in range(n):
                if rng.random() < 0.25:
                    continue
                u = -sw / 2 + (k + 0.5) * sw / n
                x, y = self._at(spot, u, v)
                if heli and k >= n - 2:
                    hl = rng.uniform(14, 22)
                    self.p.poly(S.ellipse(hl * 0.7, hl * 0.7, 20, x, y), (120, 120, 115))
                    S.draw_helicopter(
                        self.p, C["helicopter"], x, y, hl, a + rng.uniform(0, 2 * math.pi)
                    )
                else:
                    S.draw_plane(
                        self.p,
                        C["plane"],
                        x,
                        y,
                        L * rng.uniform(0.9, 1.05),
                        a + math.pi / 2 + rng.normal(0, 0.08),
                    )

    def site_tanks(self) -> None:
        rng = self.rng
        D = rng.uniform(14, 34)
        gap = D * rng.uniform(1.3, 1.8)
        nu, nv = int(rng.integers(2, 6)), int(rng.integers(2, 4))
        spot = self._pad(nu * gap + 10, nv * gap + 10, (150, 142, 125))
        if spot is None:
            return
        for i in range(nu):
            for j in range(nv):
                if rng.random() < 0.12:
                    continue
                x, y = self._at(spot, (i - (nu - 1) / 2) * gap, (j - (nv - 1) / 2) * gap)
                S.draw_storage_tank(self.p, C["storage_tank"], x, y, D * rng.uniform(0.9, 1.05))

    def site_parking(self) -> None:
        rng = self.rng
        L = rng.uniform(13, 18)
        stall = L * 0.62
        n_rows, per_row = int(rng.integers(1, 4)), int(rng.integers(5, 16))
        sw, sh = per_row * stall + 8, n_rows * 2.6 * L + 6
        spot = self._pad(sw, sh, (90, 92, 95), surface.ROAD)
        if spot is None:
            return
        a = spot[2]
        fill = rng.uniform(0.45, 0.95)
        for r in range(n_rows):
            v = -sh / 2 + 3 + (r + 0.5) * 2.6 * L
            for k in range(per_row):
                u = -sw / 2 + 4 + (k + 0.5) * stall
                x0, y0 = self._at(spot, u - stall / 2, v - L * 0.6)
                x1, y1 = self._at(spot, u - stall / 2, v + L * 0.6)
                self.p.line(np.array([[x0, y0], [x1, y1]]), (200, 200, 200, 150), 1)
                if rng.random() < fill:
                    x, y = self._at(spot, u, v)
                    heading = (
                        a
                        + math.pi / 2
                        + (math.pi if rng.random() < 0.5 else 0)
                        + rng.normal(0, 0.05)
                    )
                    S.draw_small_vehicle(
                        self.p, C["small_vehicle"], x, y, L * rng.uniform(0.92, 1.08), heading
                    )

    def site_depot(self) -> None:
        rng = self.rng
        L = rng.uniform(26, 40)
        n = int(rng.integers(3, 9))
        sw, sh = n * 14 + 70, L + 60
        spot = self._pad(sw, sh, (165, 160, 150))
        if spot is None:
            return
        a = spot[2]
        for k in range(n):
            if rng.random() < 0.2:
                continue
            x, y = self._at(spot, -sw / 2 + 10 + k * 14, -sh / 2 + L / 2 + 6)
            S.draw_large_vehicle(
                self.p, C["large_vehicle"], x, y, L * rng.uniform(0.92, 1.06), a + math.pi / 2
            )
        # container stacks: truck-sized coloured boxes, the classic large_vehicle confuser
        for i in range(int(rng.integers(2, 6))):
            for j in range(3):
                x, y = self._at(spot, sw / 2 - 30 - j * 21, sh / 2 - 8 - i * 9)
                box = S.Painter.place(S.rect(20, 8.5), x, y, a)
                self.p.poly(
                    box,
                    S.jitter(
                        rng,
                        S.pick(rng, [(160, 60, 40), (40, 90, 140), (170, 150, 60), (80, 120, 80)]),
                        15,
                    ),
                )

    def site_residential(self) -> None:
        rng = self.rng
        n = int(rng.integers(3, 9))
        lot = rng.uniform(26, 36)
        sw, sh = n * lot, 4.4 * lot
        spot = self._pad(sw, sh, (100, 125, 80), surface.LAND)
        if spot is None:
            return
        a = spot[2]
        x0, y0 = self._at(spot, -sw / 2, 0)
        x1, y1 = self._at(spot, sw / 2, 0)
        self.p.line(np.array([[x0, y0], [x1, y1]]), self.asphalt, 8)
        self.mark_line(np.array([[x0, y0], [x1, y1]]), surface.ROAD, 8)
        for side in (-1, 1):
            for k in range(n):
                u = -sw / 2 + (k + 0.5) * lot
                hx, hy = self._at(spot, u, side * 0.95 * lot)
                hw, hd = lot * rng.uniform(0.5, 0.75), lot * rng.uniform(0.5, 0.7)
                roof = S.Painter.place(S.rect(hw, hd), hx, hy, a)
                self.p.shadow(roof, 2.0, 90)
                self.mark(roof, surface.ROOF)
                self.p.poly(
                    roof,
                    S.jitter(
                        rng, S.pick(rng, [(150, 70, 55), (110, 105, 100), (170, 150, 120)]), 12
                    ),
                )
                ridge = S.Painter.place(np.array([[-hw / 2, 0.0], [hw / 2, 0.0]]), hx, hy, a)
                self.p.line(ridge, (60, 50, 45), 1)
                if rng.random() < 0.45:
                    px, py = self._at(spot, u + rng.uniform(-3, 3), side * 1.75 * lot)
                    S.draw_swimming_pool(
                        self.p,
                        C["swimming_pool"],
                        px,
                        py,
                        rng.uniform(10, 18),
                        a + rng.normal(0, 0.1),
                    )
                if rng.random() < 0.35:
                    cx, cy = self._at(spot, u + lot * 0.38, side * 0.3 * lot)
                    S.draw_small_vehicle(
                        self.p,
                        C["small_vehicle"],
                        cx,
                        cy,
                        rng.uniform(13, 17),
                        a + side * math.pi / 2,
                    )

    def site_sports(self) -> None:
        rng = self.rng
        big = str(rng.choice(["soccer", "track", "baseball", "none"], p=[0.3, 0.3, 0.25, 0.15]))
        big_len = {
            "soccer": rng.uniform(80, 120),
            "track": rng.uniform(110, 165),
            "baseball": rng.uniform(55, 85),
            "none": 0.0,
        }[big]
        tl = rng.uniform(40, 54)
        n_tennis = int(rng.integers(0, 5))
        n_bball = int(rng.integers(0, 3))
        sw = big_len + 10 + max(n_tennis * 0.56 * tl, n_bball * 0.6 * tl) + 20
        sh = max(big_len * 0.75 if big != "baseball" else big_len * 1.45, 2.3 * tl) + 12
        spot = self._pad(sw, sh, (95, 125, 78), surface.LAND)
        if spot is None:
            return
        a = spot[2]
        if big != "none":
            x, y = self._at(spot, -sw / 2 + 5 + big_len / 2, 0)
            if big == "soccer":
                S.draw_soccer_field(self.p, C["soccer_ball_field"], x, y, big_len, a)
            elif big == "track":
                S.draw_track_field(self.p, C["ground_track_field"], x, y, big_len, a)
            else:
                S.draw_baseball_diamond(
                    self.p, C["baseball_diamond"], x, y, big_len, a + rng.choice([0, math.pi])
                )
        u0 = -sw / 2 + big_len + 15
        for k in range(n_tennis):
            x, y = self._at(spot, u0 + (k + 0.5) * 0.56 * tl, -sh / 2 + 4 + tl / 2)
            S.draw_tennis_court(self.p, C["tennis_court"], x, y, tl, a + math.pi / 2)
        for k in range(n_bball):
            x, y = self._at(spot, u0 + (k + 0.5) * 0.62 * tl, sh / 2 - 4 - tl * 0.55)
            S.draw_basketball_court(
                self.p, C["basketball_court"], x, y, tl * rng.uniform(0.95, 1.1), a + math.pi / 2
            )

    def site_buildings(self) -> None:
        rng = self.rng
        spot = self._pad(rng.uniform(120, 240), rng.uniform(90, 180), (120, 120, 118))
        if spot is None:
            return
        a = spot[2]
        for _ in range(int(rng.integers(3, 8))):
            bw, bh = rng.uniform(20, 55), rng.uniform(16, 45)
            x, y = self._at(spot, rng.uniform(-50, 50), rng.uniform(-35, 35))
            roof = S.Painter.place(S.rect(bw, bh), x, y, a)
            self.p.shadow(roof, 3.0, 100)
            self.mark(roof, surface.ROOF)
            self.p.poly(
                roof,
                S.jitter(rng, S.pick(rng, [(200, 200, 195), (150, 150, 150), (185, 175, 150)]), 10),
            )
            for _k in range(int(rng.integers(0, 4))):  # rooftop units: car-sized boxes
                ux, uy = rng.uniform(-bw / 3, bw / 3), rng.uniform(-bh / 3, bh / 3)
                unit = S.Painter.place(
                    S.rect(rng.uniform(5, 10), rng.uniform(4, 7), ux, uy), x, y, a
                )
                self.p.poly(unit, S.jitter(rng, (110, 110, 115), 20))

    # ---- water -----------------------------------------------------------------------------
