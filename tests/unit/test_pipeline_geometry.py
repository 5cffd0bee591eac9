"""Geometry: slice windows, oriented boxes, candidate pairs and exact rotated IoU."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nesydet.pipeline import geometry as geo


@pytest.mark.parametrize(
    ("w", "h", "sw", "sh", "ov", "per_row"),
    [
        (2048, 1536, 640, 640, 0.2, 4),
        (640, 640, 640, 640, 0.2, 1),
        (300, 200, 640, 640, 0.2, 1),
        (3000, 2000, 512, 256, 0.5, 11),
        (1000, 1000, 256, 256, 0.0, 4),
    ],
)
def test_slice_windows_cover_image_with_requested_overlap(
    w: int, h: int, sw: int, sh: int, ov: float, per_row: int
) -> None:
    wins = geo.slice_windows(w, h, sw, sh, ov)
    covered = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in wins:
        assert 0 <= x0 < x1 <= w
        assert 0 <= y0 < y1 <= h
        assert x1 - x0 == min(sw, w)
        assert y1 - y0 == min(sh, h)
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert len(set(wins)) == len(wins)
    # neighbouring windows in a row overlap by int(ratio * size), except the last one, which
    # is shifted to end at the image's edge
    row = sorted({x0 for x0, y0, _, _ in wins if y0 == 0})
    assert len(row) == per_row
    steps = [b - a for a, b in itertools.pairwise(row[:-1])]
    assert steps == [sw - int(ov * sw)] * max(0, per_row - 2)
    assert row[-1] == max(0, w - sw)


def test_slice_windows_match_sahi() -> None:
    from sahi.slicing import get_slice_bboxes

    expected = get_slice_bboxes(1500, 2500, 640, 640, False, 0.2, 0.2)
    assert geo.slice_windows(2500, 1500, 640, 640, 0.2) == [tuple(b) for b in expected]


def test_obb_polygon_round_trip() -> None:
    rng = np.random.default_rng(1)
    obb = np.column_stack(
        [
            rng.uniform(0, 500, 20),
            rng.uniform(0, 500, 20),
            rng.uniform(5, 50, 20),
            rng.uniform(5, 50, 20),
            rng.uniform(0, math.pi, 20),
        ]
    )
    polys = geo.obb_to_polygons(obb)
    assert polys.shape == (20, 4, 2)
    np.testing.assert_allclose(geo.polygon_areas(polys), obb[:, 2] * obb[:, 3], rtol=1e-9)
    back = geo.polygons_to_obb(polys)
    np.testing.assert_allclose(back[:, :4], obb[:, :4], atol=1e-9)
    np.testing.assert_allclose(np.mod(back[:, 4], math.pi), np.mod(obb[:, 4], math.pi), atol=1e-9)


def test_axis_aligned_obb_matches_box() -> None:
    poly = geo.obb_to_polygons(np.array([[50.0, 40.0, 20.0, 10.0, 0.0]]))
    np.testing.assert_allclose(geo.polygon_envelopes(poly), [[40, 35, 60, 45]])


def test_rotated_iou_hand_built() -> None:
    square = geo.obb_to_polygons(np.array([[0.0, 0.0, 2.0, 2.0, 0.0]]))[0]
    shifted = geo.obb_to_polygons(np.array([[1.0, 1.0, 2.0, 2.0, 0.0]]))[0]
    diamond = geo.obb_to_polygons(np.array([[0.0, 0.0, 2.0, 2.0, math.pi / 4]]))[0]
    far = geo.obb_to_polygons(np.array([[10.0, 10.0, 2.0, 2.0, 0.3]]))[0]
    assert geo.polygon_iou(square, square) == pytest.approx(1.0)
    assert geo.polygon_iou(square, shifted) == pytest.approx(1 / 7)
    # square vs the same square turned 45 degrees: regular octagon of area 8(sqrt2 - 1)
    octagon = 8 * (math.sqrt(2) - 1)
    assert geo.polygon_iou(square, diamond) == pytest.approx(octagon / (8 - octagon))
    assert geo.polygon_iou(square, far) == 0.0


def test_crossed_thin_boxes_have_low_rotated_iou_but_high_envelope_iou() -> None:
    a = geo.obb_to_polygons(np.array([[0.0, 0.0, 100.0, 10.0, math.pi / 4]]))
    b = geo.obb_to_polygons(np.array([[0.0, 0.0, 100.0, 10.0, -math.pi / 4]]))
    ea, eb = geo.polygon_envelopes(a), geo.polygon_envelopes(b)
    np.testing.assert_allclose(ea, eb)  # identical envelopes: axis-aligned IoU would be 1
    assert geo.polygon_iou(a[0], b[0]) == pytest.approx(100 / (2000 - 100))


def test_iou_matrix_matches_pairwise() -> None:
    rng = np.random.default_rng(2)
    obb = np.column_stack(
        [
            rng.uniform(0, 100, 15),
            rng.uniform(0, 100, 15),
            rng.uniform(10, 40, 15),
            rng.uniform(10, 40, 15),
            rng.uniform(0, 3, 15),
        ]
    )
    polys = geo.obb_to_polygons(obb)
    m = geo.iou_matrix(polys[:7], polys[7:])
    for i in range(7):
        for j in range(8):
            assert m[i, j] == pytest.approx(geo.polygon_iou(polys[i], polys[7 + j]), abs=1e-9)


def test_candidate_pairs_equal_brute_force() -> None:
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 1000, (400, 2))
    wh = rng.uniform(1, 60, (400, 2))
    boxes = np.column_stack([xy, xy + wh])
    classes = rng.integers(0, 3, 400)
    i, j = geo.candidate_pairs(boxes, classes)
    got = {(min(a, b), max(a, b)) for a, b in zip(i.tolist(), j.tolist(), strict=True)}
    want = set()
    for a in range(400):
        for b in range(a + 1, 400):
            ba, bb = boxes[a], boxes[b]
            if (
                classes[a] == classes[b]
                and ba[0] < bb[2]
                and bb[0] < ba[2]
                and ba[1] < bb[3]
                and bb[1] < ba[3]
            ):
                want.add((a, b))
    assert got == want
    assert len(got) == len(i)  # each pair once


def test_candidate_pairs_small_inputs() -> None:
    assert len(geo.candidate_pairs(np.zeros((0, 4)))[0]) == 0
    assert len(geo.candidate_pairs(np.array([[0.0, 0, 1, 1]]))[0]) == 0
    touching = np.array([[0.0, 0, 1, 1], [1.0, 0, 2, 1]])
    assert len(geo.candidate_pairs(touching)[0]) == 0  # zero-area contact is not overlap


def test_pair_overlaps_axis_and_rotated_agree_for_unrotated_boxes() -> None:
    boxes = np.array([[0.0, 0, 10, 10], [5.0, 5, 15, 15], [20.0, 20, 30, 25]])
    polys = geo.xyxy_to_polygons(boxes)
    i, j = np.array([0, 0, 1]), np.array([1, 2, 2])
    a = geo.pair_overlaps(boxes, None, i, j)
    b = geo.pair_overlaps(boxes, polys, i, j)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y)
    np.testing.assert_allclose(a[0], [25, 0, 0])
    np.testing.assert_allclose(geo.ios_from_parts(*a), [0.25, 0, 0])


def test_edge_truncated_ignores_image_border() -> None:
    win = (512, 0, 1152, 640)  # an inner window in x, touching the top image border
    boxes = np.array(
        [
            [513.0, 100, 540, 130],  # cut by the left window edge -> truncated
            [700.0, 0, 740, 30],  # touches the top edge, which is the image border -> not truncated
            [1100.0, 300, 1151, 330],  # touches the right window edge -> truncated
            [800.0, 300, 830, 330],  # inside
            [800.0, 620, 830, 640],  # bottom edge of window, inside the image -> truncated
        ]
    )
    assert geo.edge_truncated(boxes, win, 2048, 2048).tolist() == [True, False, True, False, True]


def test_intersections_match_geos() -> None:
    import shapely

    rng = np.random.default_rng(0)
    n = 4000
    obb = np.column_stack(
        [
            rng.uniform(0, 60, n),
            rng.uniform(0, 60, n),
            rng.uniform(2, 30, n),
            rng.uniform(2, 30, n),
            rng.uniform(-math.pi, math.pi, n),
        ]
    )
    polys = geo.obb_to_polygons(obb)
    a, b = polys[: n // 2], polys[n // 2 :]
    ref = shapely.area(shapely.intersection(shapely.polygons(a), shapely.polygons(b)))
    apart = geo.separated(a, b)
    assert 0.2 < apart.mean() < 0.9  # both cases are exercised
    assert np.all(ref[apart] == 0.0)  # a separating axis never hides an overlap
    np.testing.assert_allclose(geo.polygon_intersections(a, b), ref, atol=1e-9)
    # either winding, of either polygon
    np.testing.assert_allclose(geo.polygon_intersections(a[:, ::-1], b), ref, atol=1e-9)
    np.testing.assert_allclose(geo.polygon_intersections(a, b[:, ::-1]), ref, atol=1e-9)
    np.testing.assert_allclose(geo.clipped_areas(a, b), ref, atol=1e-9)  # no shortcut
    flat = b.copy()
    flat[:, 2:] = flat[:, 1::-1]  # a box folded onto one edge has no area to meet
    assert not np.any(geo.polygon_intersections(a, flat))  # parted by the axis test
    assert not np.any(geo.clipped_areas(a, flat))  # and by the clipping on its own


def test_touching_squares_are_separated() -> None:
    a = np.array([[[0, 0], [1, 0], [1, 1], [0, 1]]], dtype=np.float64)
    beside, across = a + np.array([1.0, 0.0]), a + np.array([0.5, 0.5])
    assert geo.separated(a, beside).tolist() == [True]
    assert geo.separated(a, across).tolist() == [False]
    assert geo.polygon_intersections(a, across).tolist() == [0.25]
