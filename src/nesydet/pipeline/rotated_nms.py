"""Ultralytics' per-slice NMS for OBB output, with the probabilistic IoU of near pairs only.

``ultralytics.utils.nms.non_max_suppression(rotated=True)`` runs Fast-NMS on the dense
N x N matrix of ``batch_probiou`` (about 20 tensor ops over N^2 elements). On a 640 px
aerial slice N is a few hundred candidates, and that matrix cost as much as a quarter of
onnxruntime's forward pass on 2 cores. Two boxes far apart relative to their size cannot
reach the threshold (see `_reach`), so this module scores only the pairs close enough and
keeps the boxes that Fast-NMS keeps: a box goes when a higher-scoring box (kept or not)
overlaps it by more than the threshold. The per-pair score is ultralytics' ``probiou``,
term by term.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from nesydet.pipeline.geometry import candidate_pairs

MAX_NMS = 30000  # as ultralytics: boxes beyond the best MAX_NMS are ignored
MAX_WH = 7680  # as ultralytics: per-class offset that keeps classes apart
EPS = 1e-7  # as ultralytics' probiou
# A skipped pair's Bhattacharyya distance must clear the threshold's by this factor and
# slack, so that float32 rounding in probiou (about 1e-6 absolute) cannot bring it back.
SAFETY = 2.0
SLACK = 1e-4
MIN_AREA = 1.0  # px^2; below it the bound in `_reach` no longer holds: score every pair


F32 = npt.NDArray[np.float32]


def non_max_suppression(
    prediction: F32, conf: float, iou: float, *, nc: int, max_det: int
) -> list[F32]:
    """Returns per image the kept (k, 7) rows (x, y, w, h, score, class, angle), best first.

    The same rows as ``ultralytics.utils.nms.non_max_suppression(prediction, conf, iou,
    None, False, max_det=max_det, nc=nc, rotated=True)`` for a (batch, 4 + nc + 1, anchors)
    OBB head output, computed in numpy: torch's thread pool made each of the few dozen
    small tensor ops per slice cost 0.1 ms or more on 2 busy cores.
    """
    out = []
    for p in prediction:
        scores = p[4 : 4 + nc]
        best = scores.max(0)
        keep = np.nonzero(best > conf)[0]
        label = scores[:, keep].argmax(0).astype(np.float32)
        x = np.column_stack([p[:4, keep].T, best[keep], label, p[4 + nc, keep]])
        if len(x) > MAX_NMS:
            x = x[_ranking(x[:, 4])[:MAX_NMS]]
        boxes = x[:, [0, 1, 2, 3, 6]]
        boxes[:, :2] += x[:, 5:6] * np.float32(MAX_WH)
        out.append(x[fast_nms(boxes, x[:, 4], iou)[:max_det]])
    return out


def fast_nms(boxes: F32, scores: F32, iou: float) -> npt.NDArray[np.int64]:
    """Returns the indices of the (N, 5) xywhr boxes that Fast-NMS keeps, best score first.

    As ``TorchNMS.fast_nms(boxes, scores, iou, iou_func=batch_probiou)``.
    """
    order = _ranking(scores)
    ranked = boxes[order]
    i, j = near_pairs(ranked.astype(np.float64), iou)
    suppressed = np.zeros(len(ranked), dtype=bool)
    suppressed[j[probiou(ranked[i], ranked[j]) > iou]] = True
    out: npt.NDArray[np.int64] = order[~suppressed]
    return out


def _ranking(scores: F32) -> npt.NDArray[np.int64]:
    """Returns the indices by descending score, ties in torch's order (as ultralytics).

    Without ties every sort gives the same order, so numpy's is used; torch is asked only
    when two scores are equal.
    """
    order: npt.NDArray[np.int64] = np.argsort(-scores, kind="stable").astype(np.int64)
    ranked = scores[order]
    if not np.any(ranked[1:] == ranked[:-1]):
        return order
    import torch

    order = (
        torch.argsort(torch.from_numpy(np.ascontiguousarray(scores)), descending=True)
        .numpy()
        .astype(np.int64)
    )
    return order


def _covariance(boxes: F32) -> tuple[F32, F32, F32]:
    """Returns the covariance terms (a, b, c) of xywhr boxes, as ultralytics computes them."""
    a, b = boxes[:, 2] ** 2 / np.float32(12), boxes[:, 3] ** 2 / np.float32(12)
    cos, sin = np.cos(boxes[:, 4]), np.sin(boxes[:, 4])
    cos2, sin2 = cos**2, sin**2
    return a * cos2 + b * sin2, a * sin2 + b * cos2, (a - b) * cos * sin


def probiou(first: F32, second: F32, eps: float = EPS) -> F32:
    """Returns the probabilistic IoU of paired xywhr boxes, term by term as ultralytics'
    ``probiou`` (float32)."""
    x1, y1, x2, y2 = first[:, 0], first[:, 1], second[:, 0], second[:, 1]
    a1, b1, c1 = _covariance(first)
    a2, b2, c2 = _covariance(second)
    e = np.float32(eps)
    det = (a1 + a2) * (b1 + b2) - (c1 + c2) ** 2
    t1 = (((a1 + a2) * (y1 - y2) ** 2 + (b1 + b2) * (x1 - x2) ** 2) / (det + e)) * np.float32(0.25)
    t2 = (((c1 + c2) * (x2 - x1) * (y1 - y2)) / (det + e)) * np.float32(0.5)
    own = np.clip(a1 * b1 - c1**2, 0, None) * np.clip(a2 * b2 - c2**2, 0, None)
    t3 = np.log(det / (4 * np.sqrt(own) + e) + e) * np.float32(0.5)
    bd = np.clip(t1 + t2 + t3, e, np.float32(100.0))
    out: F32 = np.float32(1) - np.sqrt(np.float32(1) - np.exp(-bd) + e)
    return out


def near_pairs(
    boxes: npt.NDArray[np.float64], iou: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Returns index pairs (i, j), i < j, of the xywhr boxes whose probiou may exceed `iou`.

    Every pair of boxes is returned when some box is smaller than MIN_AREA.
    """
    n = len(boxes)
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    r = _reach(boxes, iou)
    if float(np.min(boxes[:, 2] * boxes[:, 3])) < MIN_AREA or not np.isfinite(r).all():
        i, j = np.triu_indices(n, k=1)
        return i.astype(np.int64), j.astype(np.int64)
    squares = np.column_stack([boxes[:, :2] - r[:, None], boxes[:, :2] + r[:, None]])
    a, b = candidate_pairs(squares)
    return np.minimum(a, b), np.maximum(a, b)


def _reach(boxes: npt.NDArray[np.float64], iou: float) -> npt.NDArray[np.float64]:
    """Returns per box a radius r such that boxes whose centres lie r_i + r_j or further
    apart have a probiou of at most `iou`.

    probiou = 1 - sqrt(1 - exp(-bd) + eps), so probiou > iou needs bd < bd_max. The
    Bhattacharyya distance bd is d^T S^-1 d / 4 (d the centre offset, S the sum of the two
    covariances) plus a log-determinant term that is never negative, and S^-1 is at least
    1 / trace(S), with trace(S) = T_i + T_j and T = (w^2 + h^2) / 12. So bd < bd_max needs
    |d|^2 < 4 bd_max (T_i + T_j) <= (r_i + r_j)^2 with r = sqrt(4 bd_max T).
    """
    floor = 1.0 + EPS - (1.0 - iou) ** 2
    bd_max = -math.log(floor) if floor > 0 else math.inf
    bd_max = SAFETY * max(bd_max, 0.0) + SLACK
    spread = (boxes[:, 2] ** 2 + boxes[:, 3] ** 2) / 12.0
    out: npt.NDArray[np.float64] = np.sqrt(4.0 * bd_max * spread)
    return out
