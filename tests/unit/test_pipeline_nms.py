"""Cross-slice NMS on rotated boxes and the slice-border merge."""

from __future__ import annotations

import math

import numpy as np

from nesydet.pipeline.nms import greedy_nms, merge_slices, witnessed_pairs
from nesydet.pipeline.types import RawDetections
from tests.pipeline_fixtures import doubled_obbs


def obb_dets(rows: list[tuple[float, float, float, float, float, float, int]]) -> RawDetections:
    """Rows of (cx, cy, w, h, angle, score, cls)."""
    a = np.asarray(rows, dtype=np.float64)
    from nesydet.pipeline import geometry as geo

    polys = geo.obb_to_polygons(a[:, :5])
    return RawDetections(geo.polygon_envelopes(polys), a[:, 5], a[:, 6].astype(np.int64), a[:, :5])


def test_greedy_nms_sparse_pairs() -> None:
    scores = np.array([0.5, 0.9, 0.8, 0.7])
    # 1 overlaps 2; 2 overlaps 3; 0 alone -> keep 1, then 3 (its suppressor 2 was removed), then 0
    i, j = np.array([1, 2]), np.array([2, 3])
    keep = greedy_nms(scores, i, j, np.array([True, True]))
    assert keep.tolist() == [1, 3, 0]


def test_same_object_in_two_slices_reported_once() -> None:
    dets = obb_dets(
        [
            (100, 100, 40, 12, 0.5, 0.90, 1),
            (100.8, 99.5, 39, 12.5, 0.52, 0.85, 1),  # the duplicate from the neighbouring slice
            (300, 300, 40, 12, 0.5, 0.80, 1),
        ]
    )
    keep = merge_slices(dets, iou_threshold=0.45)
    assert keep.tolist() == [0, 2]


def test_class_aware_and_agnostic() -> None:
    dets = obb_dets([(100, 100, 40, 12, 0.5, 0.9, 1), (100, 100, 40, 12, 0.5, 0.6, 4)])
    assert sorted(merge_slices(dets, iou_threshold=0.45).tolist()) == [0, 1]
    assert merge_slices(dets, iou_threshold=0.45, class_agnostic=True).tolist() == [0]


def test_rotated_iou_keeps_crossing_objects_apart() -> None:
    # Two thin ships crossing at right angles: envelopes identical, rotated IoU ~0.05.
    dets = obb_dets([(0, 0, 100, 10, math.pi / 4, 0.9, 1), (0, 0, 100, 10, -math.pi / 4, 0.8, 1)])
    assert sorted(merge_slices(dets, iou_threshold=0.45).tolist()) == [0, 1]


def test_border_merge_removes_truncated_part_even_with_higher_score() -> None:
    full = (200, 100, 60, 20, 0.0, 0.80, 0)
    part = (185, 100, 30, 20, 0.0, 0.95, 0)  # left half of the same object, cut by a slice edge
    dets = obb_dets([full, part])
    truncated = np.array([False, True])
    # IoU is 0.5 -> plain NMS at 0.6 keeps both, and would prefer the cut box at 0.45
    assert sorted(merge_slices(dets, iou_threshold=0.6, border_ios=None).tolist()) == [0, 1]
    assert merge_slices(dets, iou_threshold=0.6, truncated=truncated).tolist() == [0]
    assert merge_slices(dets, iou_threshold=0.45, truncated=truncated).tolist() == [0]


def test_border_merge_needs_same_class_and_containment() -> None:
    dets = obb_dets(
        [
            (200, 100, 60, 20, 0.0, 0.8, 0),
            (185, 100, 30, 20, 0.0, 0.9, 1),
            (240, 100, 30, 20, 0.0, 0.9, 0),
        ]
    )
    truncated = np.array([False, True, True])
    # other class untouched; the third box barely overlaps the full one (IoS 1/6)
    assert sorted(merge_slices(dets, iou_threshold=0.6, truncated=truncated).tolist()) == [0, 1, 2]


def test_axis_aligned_detections() -> None:
    boxes = np.array([[0.0, 0, 10, 10], [1.0, 1, 11, 11], [50.0, 50, 60, 60]])
    dets = RawDetections(boxes, np.array([0.7, 0.9, 0.5]), np.zeros(3, dtype=np.int64))
    assert merge_slices(dets, iou_threshold=0.45).tolist() == [1, 2]


def test_empty() -> None:
    assert merge_slices(RawDetections.empty(True), iou_threshold=0.5).tolist() == []


def test_many_boxes_each_reported_about_once() -> None:
    # 3,000 objects, each seen twice a fraction of a pixel apart (how fast: bench/pipeline_speed).
    n = 3000
    obb, scores, classes = doubled_obbs(n)
    dets = obb_dets([(*o, s, c) for o, s, c in zip(obb, scores, classes, strict=True)])
    keep = merge_slices(dets, iou_threshold=0.45)
    assert n * 0.95 < len(keep) <= n * 1.05
    kept = set(keep.tolist())
    assert len(kept) == len(keep)
    assert all(i in kept or i + n in kept for i in range(n)), "an object was lost"


def test_cross_slice_pairs_merge_on_intersection_over_smaller() -> None:
    # One thin car seen by two slices, localised 3 px apart across its width: IoU ~0.33.
    dets = obb_dets([(100, 100, 14, 6, 0.0, 0.8, 4), (100, 103, 14, 6, 0.0, 0.7, 4)])
    assert sorted(merge_slices(dets, iou_threshold=0.45).tolist()) == [0, 1]
    same_slice = np.array([0, 0])
    two_slices = np.array([0, 1])
    # within one slice the model's own NMS already decided: keep both
    assert sorted(
        merge_slices(dets, iou_threshold=0.45, sources=same_slice, border_ios=0.5).tolist()
    ) == [0, 1]
    assert merge_slices(dets, iou_threshold=0.45, sources=two_slices, border_ios=0.5).tolist() == [
        0
    ]
    assert sorted(
        merge_slices(dets, iou_threshold=0.45, sources=two_slices, border_ios=None).tolist()
    ) == [0, 1]


def test_double_box_of_one_slice_merges_where_another_slice_saw_one_object() -> None:
    # Slice 0 put two boxes on one car (IoU 0.33, IoS 0.5); slice 1 saw one car there.
    dets = obb_dets(
        [
            (100, 100, 14, 6, 0.0, 0.8, 10),
            (100, 103, 14, 6, 0.0, 0.5, 10),
            (100, 101.5, 14, 7, 0.0, 0.7, 10),
        ]
    )
    keep = merge_slices(dets, iou_threshold=0.45, sources=np.array([0, 0, 1]))
    assert keep.tolist() == [0]
    # without the other slice's view, the model's own two boxes stand
    alone = merge_slices(dets.take(np.array([0, 1])), iou_threshold=0.45, sources=np.array([0, 0]))
    assert sorted(alone.tolist()) == [0, 1]


def test_neighbours_seen_twice_by_both_slices_stay_two() -> None:
    # Two cars whose boxes overlap (IoS 0.5), each slice finds both: no slice saw one object.
    dets = obb_dets(
        [
            (100, 100, 14, 6, 0.0, 0.8, 10),
            (100, 103, 14, 6, 0.0, 0.5, 10),
            (100, 100.5, 14, 6, 0.0, 0.7, 10),
            (100, 103.5, 14, 6, 0.0, 0.6, 10),
        ]
    )
    keep = merge_slices(dets, iou_threshold=0.45, sources=np.array([0, 0, 1, 1]))
    assert sorted(keep.tolist()) == [0, 1]


def test_parked_cars_side_by_side_across_a_slice_edge_stay_two() -> None:
    # Slice 0 ends at x = 640: car A (626-634) whole, car B (636-644) cut to 636-640.
    # Slice 1 sees both whole.
    dets = obb_dets(
        [
            (630, 200, 8, 16, 0.0, 0.80, 10),
            (638, 200, 4, 16, 0.0, 0.90, 10),
            (630.5, 200, 8, 16, 0.0, 0.75, 10),
            (640, 200, 8, 16, 0.0, 0.70, 10),
        ]
    )
    truncated = np.array([False, True, False, False])
    sources = np.array([0, 0, 1, 1])
    keep = merge_slices(dets, iou_threshold=0.45, truncated=truncated, sources=sources)
    assert sorted(keep.tolist()) == [0, 3]


def test_witnessed_pairs_needs_the_only_match_of_the_other_slice() -> None:
    # Boxes 0, 1 of slice 0; box 2 of slice 1 matches both; box 3 of slice 2 matches 0 and 1
    # too, but so does box 4 of slice 2.
    sources = np.array([0, 0, 1, 2, 2])
    i = np.array([0, 0, 1, 0, 1, 0, 1])
    j = np.array([1, 2, 2, 3, 3, 4, 4])
    linked = np.array([False, True, True, False, False, False, False])
    candidate = np.array([True, False, False, False, False, False, False])
    assert witnessed_pairs(i, j, linked, candidate, sources).tolist() == [True] + [False] * 6
    linked[3:] = True
    linked[1:3] = False
    assert not witnessed_pairs(i, j, linked, candidate, sources).any()
    assert not witnessed_pairs(i, j, np.zeros(7, dtype=bool), candidate, sources).any()
