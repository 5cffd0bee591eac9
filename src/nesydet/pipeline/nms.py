"""Cross-slice duplicate removal: greedy NMS on exact (rotated) IoU, plus a border merge.

Each slice was already NMS-ed by the model; what remains are duplicates of objects lying in
the overlap between slices. Only boxes whose envelopes overlap are compared (sweep on x),
and for oriented boxes the overlap is the exact polygon intersection.
"""

from __future__ import annotations

import numpy as np

from nesydet.pipeline import geometry as geo
from nesydet.pipeline.types import BoolArray, FloatArray, IntArray, RawDetections

# Border merge threshold (intersection over the smaller box). 0.3 rather than 0.6: the same
# cut object seen from two slices overlaps only 0.3-0.6 of the smaller box when the cut piece
# sticks out of the whole one, and distinct objects of one class hardly overlap that much.
# On the held-out scenes (bench/quality.py (c)) it halved the duplicates at slice borders
# for 0.002 of recall.
BORDER_IOS = 0.3


def greedy_nms(scores: FloatArray, i: IntArray, j: IntArray, suppress: BoolArray) -> IntArray:
    """Returns kept indices, best first, of classic greedy NMS on a sparse pair list.

    Args:
        scores: (N,) confidences.
        i: First index of each candidate pair.
        j: Second index of each candidate pair.
        suppress: Whether the pair overlaps enough for the better one to suppress the other.
    """
    n = scores.shape[0]
    order = np.argsort(-scores, kind="stable")
    if n == 0:
        return order.astype(np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    a, b = i[suppress], j[suppress]
    # Orient each edge from the better-ranked box to the worse one, then group by the better.
    better = np.where(rank[a] < rank[b], a, b)
    worse = np.where(rank[a] < rank[b], b, a)
    by = np.argsort(better, kind="stable")
    better, worse = better[by], worse[by]
    starts = np.searchsorted(better, np.arange(n), side="left")
    ends = np.searchsorted(better, np.arange(n), side="right")
    removed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for idx in order.tolist():
        if removed[idx]:
            continue
        keep.append(idx)
        removed[worse[starts[idx] : ends[idx]]] = True
    return np.asarray(keep, dtype=np.int64)


def merge_slices(
    dets: RawDetections,
    *,
    iou_threshold: float,
    class_agnostic: bool = False,
    truncated: BoolArray | None = None,
    border_ios: float | None = BORDER_IOS,
    sources: IntArray | None = None,
) -> IntArray:
    """Returns the indices (best first) of detections kept after cross-slice merging.

    Args:
        dets: Detections of all slices in full-image coordinates.
        iou_threshold: Pairs with IoU above this are duplicates; the lower score goes.
        class_agnostic: Compare boxes across classes too.
        truncated: (N,) flags for boxes touching an inner slice edge (see
            `geometry.edge_truncated`). With `border_ios`, a truncated box that lies mostly
            inside a non-truncated box of the same class is removed first, whatever the
            scores: it is the same object cut by the slice border, where plain IoU is small.
        border_ios: Intersection over the truncated box's area needed for that merge, or
            None to disable it.
        sources: (N,) slice index of each box. With `border_ios`, two same-class boxes
            from different slices whose intersection covers `border_ios` of the smaller
            one are also duplicates even below the IoU threshold: distinct objects of one
            class hardly overlap, but two slices often localise a small, thin object (a
            12 px car) a pixel or two apart, which alone drops IoU under 0.45.
    """
    n = len(dets)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    polys = geo.obb_to_polygons(dets.obb) if dets.obb is not None else None
    boxes = geo.polygon_envelopes(polys) if polys is not None else dets.boxes
    i, j = geo.candidate_pairs(boxes, None if class_agnostic else dets.classes)
    inter, area_i, area_j = geo.pair_overlaps(boxes, polys, i, j)
    alive = np.ones(n, dtype=bool)
    if truncated is not None and border_ios is not None and len(i):
        ti, tj = truncated[i], truncated[j]
        # Truncated box i inside full box j, or the other way round.
        ios_i = np.divide(inter, area_i, out=np.zeros_like(inter), where=area_i > 0)
        ios_j = np.divide(inter, area_j, out=np.zeros_like(inter), where=area_j > 0)
        alive[i[ti & ~tj & (ios_i >= border_ios)]] = False
        alive[j[tj & ~ti & (ios_j >= border_ios)]] = False
    iou = geo.iou_from_parts(inter, area_i, area_j)
    duplicate = iou > iou_threshold
    if sources is not None and border_ios is not None and len(i):
        cross = sources[i] != sources[j]
        same = dets.classes[i] == dets.classes[j]
        duplicate |= cross & same & (geo.ios_from_parts(inter, area_i, area_j) >= border_ios)
    pair_alive = alive[i] & alive[j]
    scores = np.where(alive, dets.scores, -1.0)
    keep = greedy_nms(scores, i[pair_alive], j[pair_alive], duplicate[pair_alive])
    return keep[alive[keep]]
