"""Object drawers: each paints one top-down object and returns its oriented box corners.

Local coordinates put the object's long axis on +x (nose/bow first); `Painter.place` rotates
and translates them into the image. Sizes are in pixels at roughly 0.5 m ground sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

Points = npt.NDArray[np.float64]
RGB = tuple[int, int, int]


def rect(length: float, width: float, x0: float = 0.0, y0: float = 0.0) -> Points:
    """Returns the 4 corners of a length x width rectangle centred on (x0, y0)."""
    hx, hy = length / 2.0, width / 2.0
    return np.array(
        [[x0 - hx, y0 - hy], [x0 + hx, y0 - hy], [x0 + hx, y0 + hy], [x0 - hx, y0 + hy]],
        dtype=np.float64,
    )


def ellipse(a: float, b: float, n: int = 20, x0: float = 0.0, y0: float = 0.0) -> Points:
    """Returns n points on an ellipse with semi-axes a (x) and b (y)."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([x0 + a * np.cos(t), y0 + b * np.sin(t)], axis=1)


def stadium(length: float, width: float, n: int = 12) -> Points:
    """Returns the outline of a running-track shape (two half circles joined by straights)."""
    r = width / 2.0
    cx = length / 2.0 - r
    right = [
        (cx + r * math.cos(t), r * math.sin(t)) for t in np.linspace(-math.pi / 2, math.pi / 2, n)
    ]
    left = [
        (-cx + r * math.cos(t), r * math.sin(t))
        for t in np.linspace(math.pi / 2, 3 * math.pi / 2, n)
    ]
    return np.array(right + left, dtype=np.float64)


def jitter(rng: np.random.Generator, color: RGB, amount: int = 12) -> RGB:
    """Returns color with each channel moved by up to +-amount."""
    c = np.clip(np.array(color) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def pick(rng: np.random.Generator, colors: list[RGB]) -> RGB:
    """Returns one of colors, chosen by rng."""
    return colors[int(rng.integers(len(colors)))]


@dataclass
class Painter:
    """Draws onto one RGB image and collects oriented-box labels."""

    image: Image.Image
    rng: np.random.Generator
    sun: tuple[float, float] = (2.0, 2.0)
    labels: list[tuple[int, Points]] = field(default_factory=list)
    draw: ImageDraw.ImageDraw = field(init=False)

    def __post_init__(self) -> None:
        # RGBA mode blends translucent fills (shadows, wakes) into the RGB image.
        self.draw = ImageDraw.Draw(self.image, "RGBA")

    @staticmethod
    def place(pts: Points, cx: float, cy: float, angle: float) -> Points:
        """Returns local points rotated by angle and moved to (cx, cy)."""
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -s], [s, c]])
        out: Points = pts @ rot.T + np.array([cx, cy])
        return out

    def poly(self, pts: Points, fill: RGB | tuple[int, int, int, int]) -> None:
        """Fills a polygon given in image coordinates."""
        self.draw.polygon([(float(x), float(y)) for x, y in pts], fill=fill)

    def line(self, pts: Points, fill: RGB | tuple[int, int, int, int], width: float) -> None:
        """Draws a polyline given in image coordinates."""
        self.draw.line(
            [(float(x), float(y)) for x, y in pts], fill=fill, width=max(1, round(width))
        )

    def shadow(self, pts: Points, height: float, alpha: int = 90) -> None:
        """Casts a soft translucent shadow of an outline, offset away from the sun."""
        off = np.array(self.sun) * height
        self.poly(pts + off, (0, 0, 0, alpha))

    def label(self, cls: int, corners: Points) -> None:
        """Records one oriented box label (4 corners in image pixels)."""
        self.labels.append((cls, corners.copy()))


def draw_plane(p: Painter, cls: int, cx: float, cy: float, length: float, angle: float) -> None:
    """Paints an airliner seen from above: fuselage, swept wings, tailplane."""
    rng = p.rng
    L = length
    span = L * rng.uniform(0.85, 1.0)
    body = ellipse(L / 2, L * 0.06, 18)
    wing = np.array(
        [
            [0.12 * L, 0.04 * L],
            [-0.12 * L, span / 2],
            [-0.22 * L, span / 2],
            [-0.1 * L, 0.04 * L],
        ]
    )
    tail = np.array(
        [[-0.36 * L, 0.03 * L], [-0.47 * L, 0.18 * L], [-0.5 * L, 0.18 * L], [-0.47 * L, 0]]
    )
    parts = [body, wing, wing * [1, -1], tail, tail * [1, -1]]
    for part in parts:
        p.shadow(p.place(part, cx, cy, angle), 1.5, 70)
    color = jitter(rng, (232, 232, 236), 10)
    for part in parts:
        p.poly(p.place(part, cx, cy, angle), color)
    if rng.random() < 0.5:  # coloured tail fin of the airline livery
        fin = rect(0.12 * L, 0.04 * L, -0.44 * L, 0)
        p.poly(p.place(fin, cx, cy, angle), jitter(rng, (40, 70, 160), 60))
    p.label(cls, p.place(rect(L, span), cx, cy, angle))


def draw_helicopter(
    p: Painter, cls: int, cx: float, cy: float, length: float, angle: float
) -> None:
    """Paints a helicopter: cabin, tail boom and a two-blade rotor."""
    rng = p.rng
    L = length
    body = ellipse(0.22 * L, 0.12 * L, 14, x0=0.12 * L)
    boom = rect(0.5 * L, 0.05 * L, -0.22 * L, 0)
    color = jitter(rng, pick(rng, [(70, 80, 60), (210, 210, 210), (40, 40, 45)]), 12)
    for part in (body, boom):
        p.shadow(p.place(part, cx, cy, angle), 1.2, 80)
        p.poly(p.place(part, cx, cy, angle), color)
    blade_angle = rng.uniform(0, math.pi)
    for k in range(2):
        blade = rect(0.95 * L, 0.035 * L)
        p.poly(
            p.place(
                blade,
                cx + 0.1 * L * math.cos(angle),
                cy + 0.1 * L * math.sin(angle),
                angle + blade_angle + k * math.pi / 2,
            ),
            (25, 25, 25, 200),
        )
    p.label(cls, p.place(rect(L, 0.8 * L), cx, cy, angle))


def draw_ship(
    p: Painter, cls: int, cx: float, cy: float, length: float, angle: float, wake: bool = False
) -> None:
    """Paints a ship hull with a pointed bow, deck house and an optional wake."""
    rng = p.rng
    L = length
    W = L * rng.uniform(0.2, 0.28)
    hull = np.array(
        [[-L / 2, -W / 2], [0.25 * L, -W / 2], [L / 2, 0], [0.25 * L, W / 2], [-L / 2, W / 2]]
    )
    if wake:
        v = np.array([[-L / 2, -W / 3], [-1.4 * L, -0.3 * L], [-1.4 * L, 0.3 * L], [-L / 2, W / 3]])
        p.poly(p.place(v, cx, cy, angle), (225, 235, 240, 28))
    p.shadow(p.place(hull, cx, cy, angle), 1.0, 60)
    hull_color = jitter(
        rng, pick(rng, [(225, 225, 225), (170, 60, 50), (200, 190, 160), (150, 150, 155)]), 15
    )
    p.poly(p.place(hull, cx, cy, angle), hull_color)
    deck = rect(0.18 * L, 0.7 * W, -0.28 * L, 0)
    p.poly(p.place(deck, cx, cy, angle), jitter(rng, (245, 245, 240), 10))
    if L > 30 and rng.random() < 0.6:  # cargo hatches
        for k in range(3):
            hatch = rect(0.1 * L, 0.6 * W, (0.0 + 0.12 * k) * L, 0)
            p.poly(p.place(hatch, cx, cy, angle), jitter(rng, (120, 90, 60), 40))
    p.label(cls, p.place(rect(L, W), cx, cy, angle))


def draw_storage_tank(p: Painter, cls: int, cx: float, cy: float, diameter: float) -> None:
    """Paints a cylindrical tank from above: light roof, dark rim, shadow."""
    rng = p.rng
    r = diameter / 2
    p.shadow(ellipse(r, r, 24, cx, cy), r * 0.25, 90)
    p.poly(ellipse(r, r, 24, cx, cy), jitter(rng, (120, 120, 118), 10))
    tone = int(rng.integers(190, 240))
    roof = (tone, tone, tone - int(rng.integers(0, 8)))
    p.poly(ellipse(r * 0.86, r * 0.86, 24, cx, cy), roof)
    if rng.random() < 0.5:  # floating roof ring
        p.line(
            np.vstack([ellipse(r * 0.55, r * 0.55, 24, cx, cy), [[cx + r * 0.55, cy]]]),
            (150, 150, 150),
            max(1.0, r * 0.08),
        )
    p.label(cls, rect(diameter, diameter, cx, cy))


def draw_small_vehicle(
    p: Painter, cls: int, cx: float, cy: float, length: float, angle: float
) -> None:
    """Paints a car: coloured body with a dark windscreen band."""
    rng = p.rng
    W = length * rng.uniform(0.42, 0.5)
    colors = [
        (235, 235, 235),
        (25, 25, 28),
        (160, 30, 30),
        (40, 60, 140),
        (170, 170, 175),
        (200, 180, 60),
    ]
    body = rect(length, W)
    p.shadow(p.place(body, cx, cy, angle), 0.8, 80)
    color = jitter(rng, pick(rng, colors), 12)
    p.poly(p.place(body, cx, cy, angle), color)
    glass = rect(0.18 * length, 0.8 * W, 0.18 * length, 0)
    dark = sum(color) < 200
    # Dark cars show a sky reflection on glass and roof; light ones a dark windscreen.
    p.poly(p.place(glass, cx, cy, angle), (150, 160, 175, 220) if dark else (30, 35, 45, 200))
    if dark:
        roof = rect(0.3 * length, 0.6 * W, -0.08 * length, 0)
        p.poly(p.place(roof, cx, cy, angle), (95, 95, 100))
    p.label(cls, p.place(body, cx, cy, angle))


def draw_large_vehicle(
    p: Painter, cls: int, cx: float, cy: float, length: float, angle: float
) -> None:
    """Paints a truck: short coloured cab and a long trailer."""
    rng = p.rng
    W = rng.uniform(8.0, 11.0)
    cab_len = 0.2 * length
    cab = rect(cab_len, W * 0.9, length / 2 - cab_len / 2, 0)
    trailer = rect(0.76 * length, W, -0.12 * length, 0)
    for part in (cab, trailer):
        p.shadow(p.place(part, cx, cy, angle), 1.3, 90)
    p.poly(
        p.place(cab, cx, cy, angle),
        jitter(rng, pick(rng, [(180, 30, 30), (30, 60, 150), (230, 230, 230), (40, 40, 40)]), 15),
    )
    p.poly(
        p.place(trailer, cx, cy, angle),
        jitter(rng, pick(rng, [(225, 225, 225), (150, 150, 150), (190, 170, 120)]), 12),
    )
    p.line(
        p.place(np.array([[-0.5 * length, 0], [0.26 * length, 0]]), cx, cy, angle), (0, 0, 0, 40), 1
    )
    p.label(cls, p.place(rect(length, W), cx, cy, angle))


def draw_roundabout(
    p: Painter, cls: int, cx: float, cy: float, radius: float, asphalt: RGB
) -> None:
    """Paints a roundabout ring with a green central island."""
    r = radius
    ring_w = max(6.0, r * 0.36)
    p.poly(ellipse(r, r, 40, cx, cy), asphalt)
    p.poly(ellipse(r - ring_w, r - ring_w, 32, cx, cy), jitter(p.rng, (80, 120, 60), 12))
    p.line(
        np.vstack([ellipse(r - ring_w, r - ring_w, 32, cx, cy), [[cx + r - ring_w, cy]]]),
        (200, 200, 200),
        1,
    )
    p.label(cls, rect(2 * r, 2 * r, cx, cy))


def _lines(
    p: Painter, segs: list[Points], cx: float, cy: float, angle: float, width: float
) -> None:
    for seg in segs:
        p.line(p.place(seg, cx, cy, angle), (240, 240, 240), width)


def _outline(pts: Points) -> Points:
    return np.vstack([pts, pts[:1]])


def draw_tennis_court(
    p: Painter, cls: int, cx: float, cy: float, length: float, angle: float
) -> None:
    """Paints a tennis court: surround, playing surface, white lines and the net."""
    rng = p.rng
    L, W = length, length * 0.52
    schemes: list[tuple[RGB, RGB]] = [
        ((60, 120, 70), (40, 100, 150)),
        ((70, 130, 80), (60, 150, 80)),
        ((170, 90, 60), (190, 110, 70)),
        ((50, 90, 140), (40, 120, 170)),
    ]
    surround, inner = schemes[int(rng.integers(len(schemes)))]
    p.poly(p.place(rect(L, W), cx, cy, angle), jitter(rng, surround, 8))
    court = rect(0.78 * L, 0.66 * W)
    p.poly(p.place(court, cx, cy, angle), jitter(rng, inner, 8))
    segs = [
        _outline(court),
        np.array([[-0.2 * L, 0], [0.2 * L, 0]]),
        np.array([[-0.2 * L, -0.33 * W], [-0.2 * L, 0.33 * W]]),
        np.array([[0.2 * L, -0.33 * W], [0.2 * L, 0.33 * W]]),
    ]
    _lines(p, segs, cx, cy, angle, 1)
    p.line(p.place(np.array([[0.0, -0.4 * W], [0.0, 0.4 * W]]), cx, cy, angle), (20, 20, 20), 1)
    p.label(cls, p.place(rect(L, W), cx, cy, angle))


def draw_basketball_court(
    p: Painter, cls: int, cx: float, cy: float, length: float, angle: float
) -> None:
    """Paints a basketball court: coloured floor, keys, centre circle and three-point arcs."""
    rng = p.rng
    L, W = length, length * 0.56
    floor = jitter(rng, pick(rng, [(200, 140, 80), (190, 90, 60), (70, 110, 170)]), 12)
    p.poly(p.place(rect(L, W), cx, cy, angle), floor)
    key_color = jitter(rng, (150, 60, 50), 20)
    for sx in (-1, 1):
        key = rect(0.2 * L, 0.3 * W, sx * 0.4 * L, 0)
        p.poly(p.place(key, cx, cy, angle), key_color)
        arc = ellipse(0.25 * L, 0.42 * W, 24, sx * 0.5 * L, 0)
        arc = arc[(arc[:, 0] * sx) < 0.5 * L]
        _lines(p, [arc], cx, cy, angle, 1)
    segs = [
        _outline(rect(L * 0.98, W * 0.96)),
        np.array([[0, -W / 2], [0, W / 2]]),
        _outline(ellipse(0.08 * L, 0.08 * L, 16)),
    ]
    _lines(p, segs, cx, cy, angle, 1)
    p.label(cls, p.place(rect(L, W), cx, cy, angle))


def draw_soccer_field(
    p: Painter, cls: int, cx: float, cy: float, length: float, angle: float
) -> None:
    """Paints a football pitch with mowing stripes and standard markings."""
    rng = p.rng
    L, W = length, length * 0.64
    g = jitter(rng, (70, 140, 60), 10)
    for k in range(10):  # mowing stripes
        stripe = rect(L / 10, W, -L / 2 + L / 20 + k * L / 10, 0)
        shade = 12 if k % 2 else 0
        p.poly(p.place(stripe, cx, cy, angle), (g[0] + shade, g[1] + shade, g[2] + shade))
    segs = [
        _outline(rect(L * 0.94, W * 0.92)),
        np.array([[0, -0.46 * W], [0, 0.46 * W]]),
        _outline(ellipse(0.09 * L, 0.09 * L, 20)),
    ]
    for sx in (-1, 1):
        segs.append(_outline(rect(0.16 * L, 0.44 * W, sx * 0.39 * L, 0)))
        segs.append(_outline(rect(0.06 * L, 0.2 * W, sx * 0.44 * L, 0)))
    _lines(p, segs, cx, cy, angle, 1)
    p.label(cls, p.place(rect(L, W), cx, cy, angle))


def draw_track_field(
    p: Painter, cls: int, cx: float, cy: float, length: float, angle: float
) -> None:
    """Paints a ground track field: red oval track around a grass pitch."""
    rng = p.rng
    L, W = length, length * rng.uniform(0.5, 0.58)
    outer = stadium(L, W, 16)
    track_w = W * 0.13
    p.poly(p.place(outer, cx, cy, angle), jitter(rng, (180, 80, 60), 15))
    inner = stadium(L - 2 * track_w, W - 2 * track_w, 16)
    p.poly(p.place(inner, cx, cy, angle), jitter(rng, (80, 145, 65), 10))
    for k in (0.33, 0.66):  # lane lines
        lane = stadium(L - 2 * track_w * k, W - 2 * track_w * k, 16)
        p.line(p.place(_outline(lane), cx, cy, angle), (235, 220, 210, 160), 1)
    segs = [_outline(rect(0.5 * L, W - 2.6 * track_w)), np.array([[0, -0.3 * W], [0, 0.3 * W]])]
    _lines(p, segs, cx, cy, angle, 1)
    p.label(cls, p.place(rect(L, W), cx, cy, angle))


def draw_baseball_diamond(
    p: Painter, cls: int, cx: float, cy: float, radius: float, angle: float
) -> None:
    """Paints a baseball field: grass fan, dirt infield arc, diamond, white bases.

    (cx, cy) is the centre of the fan's oriented box; home plate sits on its back edge.
    """
    rng = p.rng
    R = radius
    hx, hy = cx - R / 2 * math.cos(angle), cy - R / 2 * math.sin(angle)  # home plate
    t = np.linspace(-math.pi / 4, math.pi / 4, 14)
    fan = np.vstack([[[0.0, 0.0]], np.stack([R * np.cos(t), R * np.sin(t)], axis=1)])
    p.poly(p.place(fan, hx, hy, angle), jitter(rng, (90, 150, 70), 10))
    infield = np.vstack(
        [[[0.0, 0.0]], np.stack([0.55 * R * np.cos(t), 0.55 * R * np.sin(t)], axis=1)]
    )
    p.poly(p.place(infield, hx, hy, angle), jitter(rng, (175, 130, 90), 12))
    s = 0.27 * R
    diamond = np.array([[0, 0], [s * 0.707, -s * 0.707], [s * 1.414, 0], [s * 0.707, s * 0.707]])
    p.poly(p.place(diamond, hx, hy, angle), jitter(rng, (95, 155, 75), 8))
    p.line(p.place(_outline(diamond), hx, hy, angle), (240, 240, 240), 1)
    p.label(cls, p.place(rect(R, 1.414 * R, R / 2, 0), hx, hy, angle))


def draw_swimming_pool(
    p: Painter, cls: int, cx: float, cy: float, length: float, angle: float
) -> None:
    """Paints a backyard pool: light deck rim around cyan water."""
    rng = p.rng
    W = length * rng.uniform(0.45, 0.65)
    p.poly(p.place(rect(length + 3, W + 3), cx, cy, angle), jitter(rng, (215, 210, 195), 10))
    p.poly(p.place(rect(length, W), cx, cy, angle), jitter(rng, (40, 170, 215), 18))
    p.label(cls, p.place(rect(length + 3, W + 3), cx, cy, angle))


def draw_harbor_pier(
    p: Painter, cls: int, cx: float, cy: float, length: float, width: float, angle: float
) -> None:
    """Paints a concrete pier / jetty sticking out into the water."""
    rng = p.rng
    pier = rect(length, width)
    p.shadow(p.place(pier, cx, cy, angle), 1.5, 80)
    p.poly(p.place(pier, cx, cy, angle), jitter(rng, (175, 172, 165), 12))
    for k in np.linspace(-0.45, 0.45, 6):  # bollards
        p.poly(p.place(rect(1.5, 1.5, k * length, width * 0.4), cx, cy, angle), (60, 60, 60))
    p.label(cls, p.place(pier, cx, cy, angle))


def draw_bridge(
    p: Painter, cls: int, cx: float, cy: float, length: float, width: float, angle: float
) -> None:
    """Paints a road bridge deck with railings and a shadow on the water."""
    deck = rect(length, width)
    p.shadow(p.place(deck, cx, cy, angle), 3.0, 110)
    p.poly(p.place(deck, cx, cy, angle), jitter(p.rng, (150, 150, 145), 8))
    for sy in (-1, 1):
        rail = np.array([[-length / 2, sy * width / 2], [length / 2, sy * width / 2]])
        p.line(p.place(rail, cx, cy, angle), (215, 215, 210), 2)
    p.label(cls, p.place(deck, cx, cy, angle))
