"""Drawing a comparison of two runs on one image: side by side, or overlaid, with a legend.

Colours say how a detection fared, not its class: matched in both runs, the same object
under another class, or found by one run only. In the overlay A's boxes are solid and B's
dashed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from PIL import Image, ImageDraw

from nesydet.pipeline.compare import ImageComparison
from nesydet.pipeline.types import Detection
from nesydet.pipeline.visualize import _dashed, _font, style_for

Layout = Literal["side_by_side", "overlay"]
Color = tuple[int, int, int]

MATCHED: Color = (46, 204, 64)
CLASS_CHANGE: Color = (255, 165, 0)
ONLY_A: Color = (230, 40, 40)
ONLY_B: Color = (40, 140, 255)
# A panel's longest side at most: two 8k images side by side would be a 16k-wide picture.
MAX_PANEL_SIDE = 2048


def _colours(n: int, comparison: ImageComparison, side: Literal["a", "b"]) -> list[Color]:
    """Return the colour of each of a run's ``n`` detections, by how it fared."""
    out = [ONLY_A if side == "a" else ONLY_B] * n
    for pairs, colour in ((comparison.matched, MATCHED), (comparison.class_changes, CLASS_CHANGE)):
        for pair in pairs:
            out[pair.a if side == "a" else pair.b] = colour
    return out


def _points(det: Detection, scale: float, dx: float = 0.0) -> list[tuple[float, float]]:
    if det.polygon is not None:
        pts = [(float(x), float(y)) for x, y in det.polygon]
    else:
        x0, y0, x1, y1 = det.bbox
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return [(x * scale + dx, y * scale) for x, y in pts]


def _draw(
    draw: ImageDraw.ImageDraw,
    dets: Sequence[Detection],
    colours: Sequence[Color],
    *,
    scale: float,
    dx: float,
    line: int,
    dashed: bool,
) -> None:
    for det, colour in zip(dets, colours, strict=True):
        pts = _points(det, scale, dx)
        if dashed:
            _dashed(draw, pts, colour, line, max(4.0, 3.0 * line))
        else:
            draw.line([*pts, pts[0]], fill=colour, width=line, joint="curve")


def _legend(
    width: int, entries: Sequence[tuple[Color, str]], title: str, font_size: int
) -> Image.Image:
    """Return a strip ``width`` px wide with the title and a colour swatch per entry."""
    font = _font(font_size)
    pad = max(4, font_size // 2)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_h = int(probe.textbbox((0, 0), "Ag", font=font)[3])
    rows: list[list[tuple[Color, str, int]]] = [[]]
    x = pad
    for colour, text in entries:
        item_w = text_h + pad + int(probe.textlength(text, font=font)) + 2 * pad
        if rows[-1] and x + item_w > width:
            rows.append([])
            x = pad
        rows[-1].append((colour, text, item_w))
        x += item_w
    height = pad + (len(rows) + 1) * (text_h + pad)
    strip = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(strip)
    draw.text((pad, pad), title, fill=(235, 235, 235), font=font)
    y = pad + text_h + pad
    for items in rows:
        x = pad
        for colour, text, item_w in items:
            draw.rectangle((x, y, x + text_h, y + text_h), fill=colour)
            draw.text((x + text_h + pad, y), text, fill=(235, 235, 235), font=font)
            x += item_w
        y += text_h + pad
    return strip


def draw_comparison(
    image: Image.Image,
    a: Sequence[Detection],
    b: Sequence[Detection],
    comparison: ImageComparison,
    *,
    layout: Layout = "side_by_side",
    label_a: str = "A",
    label_b: str = "B",
) -> Image.Image:
    """Return a picture of the comparison: A left and B right, or both on one image.

    Below it a legend gives each colour's meaning and count.
    """
    base = image.convert("RGB") if image.mode != "RGB" else image
    scale = min(1.0, MAX_PANEL_SIDE / max(base.size))
    panel = (
        base
        if scale == 1.0
        else base.resize(
            (max(1, round(base.width * scale)), max(1, round(base.height * scale))),
            Image.Resampling.LANCZOS,
        )
    )
    line, font_size = style_for(*panel.size)
    colours_a = _colours(len(a), comparison, "a")
    colours_b = _colours(len(b), comparison, "b")
    if layout == "overlay":
        canvas = panel.copy()
        draw = ImageDraw.Draw(canvas)
        _draw(draw, a, colours_a, scale=scale, dx=0, line=line + 1, dashed=False)
        _draw(draw, b, colours_b, scale=scale, dx=0, line=line, dashed=True)
        title = f"{label_a} solid, {label_b} dashed"
    else:
        gap = max(4, line * 2)
        canvas = Image.new("RGB", (panel.width * 2 + gap, panel.height), (24, 24, 24))
        canvas.paste(panel, (0, 0))
        canvas.paste(panel, (panel.width + gap, 0))
        draw = ImageDraw.Draw(canvas)
        _draw(draw, a, colours_a, scale=scale, dx=0, line=line, dashed=False)
        _draw(draw, b, colours_b, scale=scale, dx=panel.width + gap, line=line, dashed=False)
        title = f"left {label_a} ({len(a)}), right {label_b} ({len(b)})"
    legend = _legend(
        canvas.width,
        [
            (MATCHED, f"matched ({len(comparison.matched)})"),
            (CLASS_CHANGE, f"class changed ({len(comparison.class_changes)})"),
            (ONLY_A, f"only in {label_a} ({len(comparison.only_a)})"),
            (ONLY_B, f"only in {label_b} ({len(comparison.only_b)})"),
        ],
        title,
        max(font_size, round(canvas.width / 160)),  # legible when the picture is shown whole
    )
    out = Image.new("RGB", (canvas.width, canvas.height + legend.height))
    out.paste(canvas, (0, 0))
    out.paste(legend, (0, canvas.height))
    return out
