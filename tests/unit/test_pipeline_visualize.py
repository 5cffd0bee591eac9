"""Annotated images and thumbnails."""

from __future__ import annotations

import numpy as np
from PIL import Image

from nesydet.pipeline.visualize import annotate, class_color, style_for, thumbnail
from tests.pipeline_fixtures import det


def test_class_colour_is_stable_and_order_independent() -> None:
    names = ["plane", "ship", "storage_tank", "small_vehicle"]
    first = [class_color(n) for n in names]
    assert [class_color(n) for n in reversed(names)] == first[::-1]
    assert len(set(first)) == len(first)
    assert class_color("plane") == class_color("plane")


def test_annotate_draws_axis_and_rotated_boxes_with_labels() -> None:
    img = Image.new("RGB", (400, 300), (40, 40, 40))
    dets = [
        det("plane", 0.9, (50, 60, 150, 120)),
        det("ship", 0.7, (0, 0, 0, 0), obb=(280.0, 200.0, 80.0, 20.0, 0.6)),
    ]
    out = annotate(img, dets)
    assert out.size == img.size
    assert img.getpixel((50, 90)) == (40, 40, 40)  # input untouched
    arr = np.asarray(out)
    assert tuple(arr[90, 50]) == class_color("plane")  # left edge of the plane box
    assert (arr != 40).any(axis=2).sum() > 500
    bare = np.asarray(annotate(img, dets, show_labels=False, confidence_display=False))
    # without text only the outlines are drawn
    assert (bare != 40).any(axis=2).sum() < (arr != 40).any(axis=2).sum()


def test_style_scales_with_image_size() -> None:
    small_line, small_font = style_for(640, 480)
    big_line, big_font = style_for(8192, 8192)
    assert small_line >= 2
    assert small_font >= 11
    assert big_line >= 8
    assert big_font >= 40


def test_large_image_label_is_legible() -> None:
    img = Image.new("RGB", (8192, 4096), (0, 0, 0))
    out = annotate(img, [det("storage_tank", 0.88, (4000, 2000, 4040, 2040))])
    arr = np.asarray(out)
    rows = np.nonzero((arr[:1999, 3990:4600] != 0).any(axis=(1, 2)))[0]
    assert rows.size
    assert rows.max() - rows.min() >= 40  # label box at least ~40 px tall


def test_thumbnail_longest_side_256() -> None:
    assert thumbnail(Image.new("RGB", (4000, 1000))).size == (256, 64)
    assert thumbnail(Image.new("RGB", (100, 300))).size == (85, 256)
    assert thumbnail(Image.new("RGB", (256, 256))).size == (256, 256)


def test_label_text_is_what_pillow_draws_at_the_rounded_position() -> None:
    from PIL import ImageDraw

    from nesydet.pipeline.visualize import _draw_text, _font

    rng = np.random.default_rng(0)
    background = Image.fromarray(rng.integers(0, 255, (60, 220, 3), dtype=np.uint8))
    for text, size, xy in [("car 0.87", 18, (10.4, 12.6)), ("storage_tank 0.31", 11, (-3.0, 50.5))]:
        for ink in [(0, 0, 0), (255, 255, 255)]:
            ours, pillow = background.copy(), background.copy()
            _draw_text(ours, xy, text, size, ink)
            rounded = (round(xy[0]), round(xy[1]))
            ImageDraw.Draw(pillow).text(rounded, text, fill=ink, font=_font(size))
            assert np.array_equal(np.asarray(ours), np.asarray(pillow))
            assert not np.array_equal(np.asarray(ours), np.asarray(background))
