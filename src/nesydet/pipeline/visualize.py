"""Annotated images and thumbnails with Pillow only (built-in FreeType font, no downloads)."""

from __future__ import annotations

import colorsys
import functools
import hashlib
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from nesydet.pipeline.types import Detection

THUMBNAIL_SIDE = 256
# Measures text for `_text_box`; Pillow's text box depends on the font, not on the canvas.
_SCRATCH = ImageDraw.Draw(Image.new("RGB", (1, 1)))


@functools.lru_cache(maxsize=1024)
def class_color(name: str) -> tuple[int, int, int]:
    """Returns a saturated RGB colour derived from the class name alone (stable across runs)."""
    digest = hashlib.blake2s(name.encode("utf-8"), digest_size=4).digest()
    hue = int.from_bytes(digest[:2], "big") / 65535.0
    value = 0.85 + 0.15 * (digest[2] / 255.0)
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def style_for(width: int, height: int) -> tuple[int, int]:
    """Returns (line_width, font_size) scaled so boxes and labels stay legible at any size."""
    side = max(width, height)
    line = max(2, round(side / 900))
    font = max(11, round(side / 180))
    return line, font


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow >= 10.1 embeds a scalable font used by load_default(size=...) with FreeType.
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=4096)
def _text_box(text: str, size: int) -> tuple[int, int, int, int]:
    """Returns the box of `text` drawn at (0, 0) in the font of `size` (Pillow's textbbox)."""
    box = _SCRATCH.textbbox((0, 0), text, font=_font(size))
    return int(box[0]), int(box[1]), int(box[2]), int(box[3])


@functools.lru_cache(maxsize=2048)  # some 30 MiB at most for 45 px labels
def _text_mask(text: str, size: int) -> Image.Image:
    """Returns `text` rendered once as an 8-bit coverage mask the size of its `_text_box`.

    A scene repeats the same few hundred labels ("car 0.87"); rendering each of them once
    instead of once per detection took most of the drawing time off large scenes.
    """
    x0, y0, x1, y1 = _text_box(text, size)
    mask = Image.new("L", (max(1, x1 - x0), max(1, y1 - y0)), 0)
    ImageDraw.Draw(mask).text((-x0, -y0), text, fill=255, font=_font(size))
    return mask


def _draw_text(
    image: Image.Image, xy: tuple[float, float], text: str, size: int, ink: tuple[int, int, int]
) -> None:
    """Draws `text` as ``ImageDraw.text`` would at `xy` rounded to whole pixels."""
    x0, y0, _, _ = _text_box(text, size)
    image.paste(ink, (round(xy[0]) + x0, round(xy[1]) + y0), _text_mask(text, size))


def _label(det: Detection, show_labels: bool, confidence_display: bool) -> str:
    parts = []
    if show_labels:
        parts.append(det.class_name)
    if confidence_display:
        parts.append(f"{det.confidence:.2f}")
    return " ".join(parts)


def annotate(
    image: Image.Image,
    detections: Sequence[Detection],
    *,
    show_labels: bool = True,
    confidence_display: bool = True,
) -> Image.Image:
    """Returns a copy of `image` with boxes (rotated when available) and optional labels.

    Colours come from `class_color`; line width and font size from `style_for`.
    """
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    draw = ImageDraw.Draw(out)
    line, size = style_for(*out.size)
    pad = max(1, size // 6)
    # Draw weaker detections first so the strongest end up on top.
    for det in sorted(detections, key=lambda d: d.confidence):
        color = class_color(det.class_name)
        if det.polygon is not None:
            pts = [(float(x), float(y)) for x, y in det.polygon]
            draw.line([*pts, pts[0]], fill=color, width=line, joint="curve")
        else:
            draw.rectangle(det.bbox, outline=color, width=line)
        text = _label(det, show_labels, confidence_display)
        if not text:
            continue
        x0, y0 = det.bbox[0], det.bbox[1]
        tb = _text_box(text, size)
        tw, th = tb[2] - tb[0] + 2 * pad, tb[3] - tb[1] + 2 * pad
        ty = y0 - th if y0 - th >= 0 else y0
        tx = min(max(0.0, x0), max(0.0, out.width - tw))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=color)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        _draw_text(out, (tx + pad - tb[0], ty + pad - tb[1]), text, size, ink)
    return out


def suppression_label(det: Detection) -> str:
    """Returns "class: rule" for a dropped detection: the rule that dropped it."""
    rule = det.dropping_rule()
    return f"{det.class_name}: {rule}" if rule else det.class_name


def _dashed(
    draw: ImageDraw.ImageDraw,
    pts: Sequence[tuple[float, float]],
    color: tuple[int, int, int],
    width: int,
    dash: float,
) -> None:
    """Draws a closed polygon with dashes `dash` px long and gaps as long."""
    for (x0, y0), (x1, y1) in zip(pts, [*pts[1:], pts[0]], strict=True):
        length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
        steps = max(1, int(length // dash))
        for k in range(0, steps, 2):
            a, b = k / steps, min(1.0, (k + 1) / steps)
            draw.line(
                [
                    (x0 + a * (x1 - x0), y0 + a * (y1 - y0)),
                    (x0 + b * (x1 - x0), y0 + b * (y1 - y0)),
                ],
                fill=color,
                width=width,
            )


def annotate_suppressed(image: Image.Image, dropped: Sequence[Detection]) -> Image.Image:
    """Returns `image` with dropped detections drawn dashed, each labelled with its rule.

    Draws on `image` itself (call it on the annotated copy); grey boxes and small labels so
    they never read as kept detections.
    """
    draw = ImageDraw.Draw(image)
    line, size = style_for(*image.size)
    font = _font(max(10, size * 3 // 4))
    color = (235, 235, 235)
    dash = max(4.0, 3.0 * line)
    for det in dropped:
        if det.polygon is not None:
            pts = [(float(x), float(y)) for x, y in det.polygon]
        else:
            x0, y0, x1, y1 = det.bbox
            pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        _dashed(draw, pts, (20, 20, 20), line + 2, dash)
        _dashed(draw, pts, color, line, dash)
        text = suppression_label(det)
        x, y = det.bbox[0], det.bbox[3] + 1
        tb = draw.textbbox((0, 0), text, font=font)
        y = min(y, image.height - (tb[3] - tb[1]) - 2)
        draw.text((x, y), text, fill=color, font=font, stroke_width=2, stroke_fill=(20, 20, 20))
    return image


def thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE) -> Image.Image:
    """Returns a copy scaled so its longest side is `side` px (aspect ratio kept)."""
    w, h = image.size
    scale = side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # reducing_gap decimates large images first: about as sharp, far faster on 8k images.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
