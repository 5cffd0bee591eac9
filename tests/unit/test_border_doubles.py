"""bench.border_doubles' variants on hand-built oriented boxes."""

from __future__ import annotations

import numpy as np
from bench.border_doubles import edge_distance_doubles, object_box_pairs, pairwise, straddling

from nesydet.pipeline import geometry as geo
from nesydet.pipeline.evaluate import ImageBoxes
from nesydet.pipeline.types import RawDetections


def _boxes(obb: list[list[float]], scores: list[float]) -> RawDetections:
    o = np.array(obb, dtype=np.float64)
    env = geo.polygon_envelopes(geo.obb_to_polygons(o))
    return RawDetections(env, np.array(scores), np.full(len(o), 10, dtype=np.int64), o)


def test_the_weaker_box_of_a_pair_goes_and_a_fused_pair_lies_between() -> None:
    # Two 16 x 8 cars, the second shifted 4 px sideways (IoU 1/3), given as the same box
    # turned a quarter (w and h swapped): the fused box must not average the two angles.
    r = _boxes([[100, 100, 16, 8, 0.0], [100, 104, 8, 16, np.pi / 2]], [0.8, 0.4])
    src = np.zeros(2, dtype=np.int64)
    kept, kept_src = pairwise(0.3, fuse=False)(r, src)
    assert kept.scores.tolist() == [0.8]
    assert kept_src.tolist() == [0]
    fused, _ = pairwise(0.3, fuse=True)(r, src)
    assert fused.obb is not None
    cx, cy, w, h, angle = fused.obb[0]
    assert np.allclose([cx, cy, w, h], [100, 100 + 4 / 3, 16, 8])
    assert abs(np.sin(angle)) < 1e-9
    # Below the threshold, or from two slices, both stay.
    assert len(pairwise(0.4, fuse=False)(r, src)[0]) == 2
    assert len(pairwise(0.3, fuse=False)(r, np.array([0, 1]))[0]) == 2


def test_a_box_straddling_two_surer_neighbours_goes() -> None:
    # Three cars side by side 8 px apart and a weaker box half-way between two of them.
    r = _boxes(
        [
            [100, 100, 16, 8, 0.0],
            [100, 108, 16, 8, 0.0],
            [100, 116, 16, 8, 0.0],
            [100, 104, 16, 8, 0.0],
        ],
        [0.9, 0.8, 0.7, 0.5],
    )
    kept, _ = straddling(0.7)(r, np.zeros(4, dtype=np.int64))
    assert sorted(kept.scores.tolist()) == [0.7, 0.8, 0.9]
    # The cars' own boxes touch without overlapping: none of them goes.
    kept, _ = straddling(0.7)(r.take(np.arange(3)), np.zeros(3, dtype=np.int64))
    assert len(kept) == 3


def test_doubles_are_binned_by_distance_to_the_slice_edge() -> None:
    # Slices [0, 640) and [512, 1152) side by side. Object A (x 600-616) lies whole in
    # slice 0, 24 px from its right edge, and is boxed twice there; object B (x 100-116)
    # lies 412 px from any inner edge and is boxed once; object C (x 630-650) is cut by
    # slice 0's edge and boxed by slice 0 only.
    w, h = 1152, 640
    windows = [(0, 0, 640, 640), (512, 0, 1152, 640)]

    def rect(x0: float, x1: float) -> list[list[float]]:
        return [[x0 / w, 300 / h], [x1 / w, 300 / h], [x1 / w, 308 / h], [x0 / w, 308 / h]]

    gt = ImageBoxes(np.array([rect(600, 616), rect(100, 116), rect(630, 650)]), np.full(3, 10))
    r = _boxes(
        [
            [608, 304, 16, 8, 0.0],
            [609, 304, 15, 8, 0.0],
            [108, 304, 16, 8, 0.0],
            [635, 304, 10, 8, 0.0],
        ],
        [0.9, 0.5, 0.9, 0.9],
    )
    cover = object_box_pairs(r, gt, w, h)
    counts = edge_distance_doubles(cover, np.zeros(4, dtype=np.int64), gt, windows, w, h)
    assert counts[("0-63 px", "found")] == 1
    assert counts[("0-63 px", "twice")] == 1
    assert counts[(">= 256 px", "found")] == 1
    assert counts[(">= 256 px", "twice")] == 0
    assert counts[("cut by it", "found")] == 1
