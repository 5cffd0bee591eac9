"""Comparing two runs on one image, with hand-built boxes."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from nesydet.pipeline.compare import compare_image, summarize
from nesydet.pipeline.compare_draw import (
    CLASS_CHANGE,
    MATCHED,
    ONLY_A,
    ONLY_B,
    draw_comparison,
)
from nesydet.pipeline.geometry import obb_to_polygons
from nesydet.pipeline.types import Detection


def box(name: str, conf: float, x0: float, y0: float, x1: float, y1: float) -> Detection:
    return Detection(0, name, conf, (x0, y0, x1, y1))


def rotated(
    name: str, conf: float, cx: float, cy: float, w: float, h: float, angle: float
) -> Detection:
    corners = obb_to_polygons([[cx, cy, w, h, angle]])[0]
    xs, ys = corners[:, 0], corners[:, 1]
    return Detection(
        0,
        name,
        conf,
        (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())),
        obb=(cx, cy, w, h, angle),
        polygon=[(float(x), float(y)) for x, y in corners],
    )


def test_matches_same_class_and_finds_class_changes_and_leftovers() -> None:
    a = [
        box("plane", 0.9, 0, 0, 10, 10),
        box("ship", 0.5, 100, 100, 120, 110),
        box("car", 0.4, 200, 200, 204, 204),
    ]
    b = [
        box("plane", 0.95, 1, 0, 11, 10),  # IoU 9/11
        box("harbor", 0.6, 100, 100, 120, 110),  # same place, another class
        box("car", 0.7, 300, 300, 304, 304),  # elsewhere
    ]
    result = compare_image(a, b, 0.5)
    assert [(p.a, p.b) for p in result.matched] == [(0, 0)]
    assert result.matched[0].iou == pytest.approx(9 / 11)
    assert [(p.a, p.b) for p in result.class_changes] == [(1, 1)]
    assert result.only_a == [2]
    assert result.only_b == [2]


def test_threshold_decides_what_counts_as_the_same_object() -> None:
    a = [box("plane", 0.9, 0, 0, 10, 10)]
    b = [box("plane", 0.9, 5, 0, 15, 10)]  # IoU 1/3
    assert compare_image(a, b, 0.3).matched
    loose = compare_image(a, b, 0.5)
    assert not loose.matched
    assert (loose.only_a, loose.only_b) == ([0], [0])


def test_rotated_iou_is_used_for_oriented_boxes() -> None:
    # Two thin boxes crossing at right angles: their envelopes coincide, the boxes barely meet.
    a = [rotated("bridge", 0.8, 50, 50, 100, 10, 0.0)]
    b = [rotated("bridge", 0.8, 50, 50, 100, 10, math.pi / 2)]
    result = compare_image(a, b, 0.5)
    assert not result.matched
    same = compare_image(a, [rotated("bridge", 0.7, 50, 50, 100, 10, 0.0)], 0.5)
    assert same.matched[0].iou == pytest.approx(1.0)


def test_each_detection_is_matched_once_best_overlap_first() -> None:
    a = [box("car", 0.9, 0, 0, 10, 10), box("car", 0.8, 2, 0, 12, 10)]
    b = [box("car", 0.9, 2, 0, 12, 10)]
    result = compare_image(a, b, 0.5)
    assert [(p.a, p.b) for p in result.matched] == [(1, 0)]
    assert result.only_a == [0]


def test_empty_runs() -> None:
    result = compare_image([], [box("car", 0.9, 0, 0, 10, 10)], 0.5)
    assert (result.matched, result.only_a, result.only_b) == ([], [], [0])
    assert compare_image([], [], 0.5).only_b == []


def test_summary_gives_bs_precision_and_recall_against_a() -> None:
    a = [
        box("plane", 0.9, 0, 0, 10, 10),
        box("plane", 0.8, 50, 50, 60, 60),
        box("ship", 0.5, 100, 100, 120, 110),
    ]
    b = [
        box("plane", 0.7, 0, 0, 10, 10),
        box("harbor", 0.6, 100, 100, 120, 110),
        box("plane", 0.6, 300, 0, 310, 10),
    ]
    rows = {r.class_name: r for r in summarize([(a, b, compare_image(a, b, 0.5))])}
    plane = rows["plane"]
    assert (plane.in_a, plane.in_b, plane.matched, plane.only_a, plane.only_b) == (2, 2, 1, 1, 1)
    assert plane.precision == pytest.approx(0.5)
    assert plane.recall == pytest.approx(0.5)
    assert plane.mean_confidence_delta == pytest.approx(-0.2)
    assert (rows["ship"].class_changed_from, rows["ship"].recall, rows["ship"].precision) == (
        1,
        0.0,
        None,
    )
    assert (rows["harbor"].class_changed_to, rows["harbor"].precision) == (1, 0.0)
    assert list(rows) == sorted(rows)


@pytest.mark.parametrize("layout", ["side_by_side", "overlay"])
def test_drawing_has_both_runs_and_a_legend(layout: str) -> None:
    a = [
        box("plane", 0.9, 10, 10, 40, 40),
        box("ship", 0.5, 60, 60, 90, 80),
        box("car", 0.4, 5, 70, 15, 80),
    ]
    b = [
        box("plane", 0.9, 11, 10, 41, 40),
        box("harbor", 0.6, 60, 60, 90, 80),
        box("car", 0.4, 70, 5, 80, 15),
    ]
    image = Image.new("RGB", (100, 100), (0, 0, 0))
    result = compare_image(a, b, 0.5)
    out = draw_comparison(image, a, b, result, layout=layout)  # type: ignore[arg-type]
    width = 100 if layout == "overlay" else 200 + 4
    assert out.width == width
    assert out.height > 100  # the legend below
    colours = {c for _, c in out.getcolors(maxcolors=1_000_000) or []}
    for colour in (MATCHED, CLASS_CHANGE, ONLY_A, ONLY_B):
        assert colour in colours


def test_large_images_are_scaled_down_per_panel() -> None:
    image = Image.new("RGB", (4096, 1024))
    a = [box("plane", 0.9, 100, 100, 400, 400)]
    out = draw_comparison(image, a, a, compare_image(a, a, 0.5))
    assert out.width <= 2 * 2048 + 16
