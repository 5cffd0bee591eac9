"""The numpy OBB NMS against ultralytics' own, on hand-built head outputs."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from nesydet.pipeline import rotated_nms

NC = 3


def head_output(seed: int, clusters: int = 25, per_cluster: int = 12) -> npt.NDArray[np.float32]:
    """Returns a (2, 4 + NC + 1, anchors) OBB head output: clusters of jittered rotated boxes
    (as a model gives around each object), some of two classes, plus far-off stragglers."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(2):
        centre = np.repeat(rng.uniform(0, 640, (clusters, 2)), per_cluster, axis=0)
        size = np.repeat(rng.uniform(4, 90, (clusters, 2)), per_cluster, axis=0)
        angle = np.repeat(rng.uniform(0, np.pi, clusters), per_cluster)
        n = len(centre)
        xy = centre + rng.normal(0, 0.15, (n, 2)) * size
        wh = size * rng.uniform(0.7, 1.3, (n, 2))
        theta = angle + rng.normal(0, 0.2, n)
        scores = rng.uniform(0, 1, (n, NC)) ** 3
        scores[np.arange(n), rng.integers(0, NC, n)] += rng.uniform(0, 0.7, n)
        images.append(np.column_stack([xy, wh, np.clip(scores, 0, 1), theta]).T)
    return np.stack(images).astype(np.float32)


def ultralytics_nms(out: npt.NDArray[np.float32], conf: float, iou: float) -> list[Any]:
    import torch

    nms: Any = importlib.import_module("ultralytics.utils.nms")
    preds = nms.non_max_suppression(
        torch.from_numpy(out), conf, iou, None, False, max_det=300, nc=NC, rotated=True
    )
    return [p.numpy() for p in preds]


@pytest.mark.parametrize(("conf", "iou"), [(0.25, 0.45), (0.05, 0.45), (0.25, 0.7), (0.1, 0.1)])
def test_same_rows_as_ultralytics(conf: float, iou: float) -> None:
    for seed in range(3):
        out = head_output(seed)
        ours = rotated_nms.non_max_suppression(out, conf, iou, nc=NC, max_det=300)
        theirs = ultralytics_nms(out, conf, iou)
        assert len(ours) == len(theirs) == 2
        for a, b in zip(ours, theirs, strict=True):
            assert a.dtype == np.float32
            assert np.array_equal(a, b)
        assert 0 < len(ours[0]) < (head_output(seed)[0, 4 : 4 + NC].max(0) > conf).sum()


def test_no_candidates_gives_empty_rows() -> None:
    out = head_output(0)
    out[:, 4 : 4 + NC] = 0.0
    rows = rotated_nms.non_max_suppression(out, 0.25, 0.45, nc=NC, max_det=300)
    assert [r.shape for r in rows] == [(0, 7), (0, 7)]


def test_max_det_keeps_the_best() -> None:
    out = head_output(1)
    full = rotated_nms.non_max_suppression(out, 0.05, 0.45, nc=NC, max_det=300)[0]
    few = rotated_nms.non_max_suppression(out, 0.05, 0.45, nc=NC, max_det=5)[0]
    assert np.array_equal(few, full[:5])


def dense_probiou(boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    n = len(boxes)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return rotated_nms.probiou(boxes[i.ravel()], boxes[j.ravel()]).reshape(n, n)


@pytest.mark.parametrize("iou", [0.05, 0.45, 0.9, 0.999])
def test_near_pairs_hold_every_pair_over_the_threshold(iou: float) -> None:
    rng = np.random.default_rng(7)
    n = 300
    boxes = np.column_stack(
        [
            rng.uniform(0, 300, (n, 2)),
            rng.uniform(1, 60, (n, 2)),
            rng.uniform(0, np.pi, n),
        ]
    ).astype(np.float32)
    boxes[1::2] = boxes[::2] + rng.normal(0, 0.5, (n // 2, 5)).astype(np.float32)
    boxes[:, 2:4] = np.abs(boxes[:, 2:4]) + 1
    boxes[-10:] = boxes[:10]  # exact twins: probiou just under 1
    over = np.argwhere(np.triu(dense_probiou(boxes) > iou, k=1))
    i, j = rotated_nms.near_pairs(boxes.astype(np.float64), iou)
    assert np.all(i < j)
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    assert len(over) >= 10
    assert {(int(a), int(b)) for a, b in over} <= found
    if iou >= 0.45:
        assert len(found) < n * (n - 1) // 20  # far pairs are skipped


def test_tiny_boxes_pair_with_everything() -> None:
    boxes = np.array([[0, 0, 0.5, 0.5, 0], [500, 500, 10, 10, 0], [900, 0, 3, 3, 1]], float)
    i, j = rotated_nms.near_pairs(boxes, 0.45)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2)]


def test_probiou_is_one_for_a_box_and_itself_and_symmetric() -> None:
    boxes = np.array([[10, 10, 20, 8, 0.3], [14, 12, 18, 9, 1.0]], np.float32)
    same = rotated_nms.probiou(boxes, boxes)
    assert np.allclose(same, 1.0, atol=1e-3)
    there = rotated_nms.probiou(boxes[:1], boxes[1:])
    back = rotated_nms.probiou(boxes[1:], boxes[:1])
    assert np.allclose(there, back)
    assert 0 < float(there[0]) < 1


def test_ties_are_ranked_as_torch_ranks_them() -> None:
    import torch

    scores = np.array([0.5, 0.9, 0.5, 1.0, 0.9, 0.5, 1.0, 0.2] * 8, dtype=np.float32)
    expected = torch.argsort(torch.from_numpy(scores), descending=True).numpy()
    assert np.array_equal(rotated_nms._ranking(scores), expected)
    distinct = np.random.default_rng(0).random(50).astype(np.float32)
    assert np.array_equal(rotated_nms._ranking(distinct), np.argsort(-distinct))


def test_equal_scores_keep_ultralytics_choice() -> None:
    out = head_output(2)
    out[:, 4 : 4 + NC] = np.round(out[:, 4 : 4 + NC], 1)  # many exact ties
    ours = rotated_nms.non_max_suppression(out, 0.25, 0.45, nc=NC, max_det=300)
    for a, b in zip(ours, ultralytics_nms(out, 0.25, 0.45), strict=True):
        assert np.array_equal(a, b)
