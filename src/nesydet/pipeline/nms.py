"""Cross-slice duplicate removal: greedy NMS on exact (rotated) IoU, plus a border merge.

Each slice was already NMS-ed by the model; what remains are duplicates of objects lying in
the overlap between slices. Only boxes whose envelopes overlap are compared (sweep on x),
and for oriented boxes the overlap is the exact polygon intersection.

The model also leaves some objects with two boxes of its own inside one slice (two badly
placed halves of a small car, IoU 0.1-0.3). Geometry alone cannot tell those from neighbours
in a car park, whose boxes overlap as much, so they are merged only where another slice saw
the same place and found one object there (`witnessed_pairs`).
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


def witnessed_pairs(
    i: IntArray, j: IntArray, linked: BoolArray, candidate: BoolArray, sources: IntArray
) -> BoolArray:
    """Returns which candidate pairs another slice saw as a single object.

    A candidate pair (two boxes of one slice) is witnessed by a box of another slice that is
    linked to both, while no other box of that slice is linked to either: that slice found
    one object where this one has two boxes. Neighbours seen by both slices get two boxes
    from each, so neither box of one slice is the only match in the other.

    Args:
        i: First index of each pair.
        j: Second index of each pair.
        linked: Pairs from different slices that are duplicates of each other.
        candidate: Pairs from one slice that may be one object.
        sources: (N,) slice index of each box.
    """
    n = len(sources)
    box = np.concatenate([i[linked], j[linked]])
    other = np.concatenate([j[linked], i[linked]])
    # A box linked to two boxes of the same other slice has no single witness there.
    _, inv, count = np.unique(box * n + sources[other], return_inverse=True, return_counts=True)
    sole = count.reshape(-1)[inv.reshape(-1)] == 1
    by = np.argsort(box[sole], kind="stable")
    box, other = box[sole][by], other[sole][by]
    k = np.nonzero(candidate)[0]
    lo = np.searchsorted(box, i[k], side="left")
    hits = np.searchsorted(box, i[k], side="right") - lo
    pair = np.repeat(k, hits)
    start = np.repeat(lo - (np.cumsum(hits) - hits), hits)
    witness = other[start + np.arange(len(pair))]
    seen = np.isin(j[pair] * n + witness, box * n + other)
    out = np.zeros(len(i), dtype=bool)
    out[pair[seen]] = True
    return out


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
            12 px car) a pixel or two apart, which alone drops IoU under 0.45. Two
            same-class boxes of one slice overlapping that much are duplicates too when
            another slice saw one object there (see `witnessed_pairs`).
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
    duplicate = geo.iou_from_parts(inter, area_i, area_j) > iou_threshold
    if sources is not None and border_ios is not None and len(i):
        cross = sources[i] != sources[j]
        same = dets.classes[i] == dets.classes[j]
        close = same & (geo.ios_from_parts(inter, area_i, area_j) >= border_ios)
        duplicate |= cross & close
        duplicate |= witnessed_pairs(i, j, cross & same & duplicate, ~cross & close, sources)
    pair_alive = alive[i] & alive[j]
    scores = np.where(alive, dets.scores, -1.0)
    keep = greedy_nms(scores, i[pair_alive], j[pair_alive], duplicate[pair_alive])
    return keep[alive[keep]]
