"""Pure, vectorised geometry: slice windows, oriented boxes, candidate pairs, exact overlaps.

Boxes are numpy arrays: axis-aligned boxes are (N, 4) xyxy, oriented boxes are (N, 5)
(cx, cy, w, h, angle in radians, counter-clockwise in image axes as ultralytics' ``xywhr``)
and polygons are (N, 4, 2) corner arrays.
"""

from __future__ import annotations

import math

import numpy as np

from nesydet.pipeline.types import BoolArray, FloatArray, IntArray

Window = tuple[int, int, int, int]


def slice_windows(
    width: int, height: int, slice_width: int, slice_height: int, overlap_ratio: float
) -> list[Window]:
    """Returns SAHI's slice windows (x0, y0, x1, y1) covering a width x height image.

    Delegates to `sahi.slicing.get_slice_bboxes` so sliced inference sees exactly the
    windows SAHI would use: overlap of int(ratio * size) pixels, last row/column shifted
    back inside the image, and windows clipped to the image when it is smaller than a slice.
    """
    from sahi.slicing import get_slice_bboxes

    boxes = get_slice_bboxes(
        image_height=height,
        image_width=width,
        slice_height=slice_height,
        slice_width=slice_width,
        auto_slice_resolution=False,
        overlap_height_ratio=overlap_ratio,
        overlap_width_ratio=overlap_ratio,
    )
    # SAHI can emit the same window twice when the image is narrower than one slice.
    return list(dict.fromkeys((int(a), int(b), int(c), int(d)) for a, b, c, d in boxes))


def obb_to_polygons(obb: FloatArray) -> FloatArray:
    """Returns the (N, 4, 2) corners of (N, 5) oriented boxes, in a consistent winding."""
    obb = np.asarray(obb, dtype=np.float64).reshape(-1, 5)
    c = obb[:, None, 0:2]
    cos, sin = np.cos(obb[:, 4]), np.sin(obb[:, 4])
    v1 = np.stack([obb[:, 2] / 2 * cos, obb[:, 2] / 2 * sin], axis=1)[:, None, :]
    v2 = np.stack([-obb[:, 3] / 2 * sin, obb[:, 3] / 2 * cos], axis=1)[:, None, :]
    # Corner 0 -> 1 runs along the width axis, so polygons_to_obb recovers (w, h, angle).
    signs1 = np.array([-1, 1, 1, -1], dtype=np.float64)[None, :, None]
    signs2 = np.array([-1, -1, 1, 1], dtype=np.float64)[None, :, None]
    out: FloatArray = c + signs1 * v1 + signs2 * v2
    return out


def polygons_to_obb(polys: FloatArray) -> FloatArray:
    """Returns (N, 5) oriented boxes fitted to (N, 4, 2) rectangle corners.

    The angle is the direction of the first edge, normalised to [0, pi); width is that
    edge's length. Exact for rectangles, a reasonable fit for near-rectangles.
    """
    polys = np.asarray(polys, dtype=np.float64).reshape(-1, 4, 2)
    centre = polys.mean(axis=1)
    e1 = polys[:, 1] - polys[:, 0]
    e2 = polys[:, 2] - polys[:, 1]
    w = np.hypot(e1[:, 0], e1[:, 1])
    h = np.hypot(e2[:, 0], e2[:, 1])
    angle = np.mod(np.arctan2(e1[:, 1], e1[:, 0]), math.pi)
    out: FloatArray = np.column_stack([centre, w, h, angle])
    return out


def xyxy_to_polygons(boxes: FloatArray) -> FloatArray:
    """Returns the (N, 4, 2) corners of axis-aligned xyxy boxes."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out: FloatArray = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1)
    return out


def polygon_envelopes(polys: FloatArray) -> FloatArray:
    """Returns the (N, 4) xyxy envelopes of (N, K, 2) polygons."""
    p = np.asarray(polys, dtype=np.float64)
    out: FloatArray = np.concatenate([p.min(axis=1), p.max(axis=1)], axis=1).reshape(-1, 4)
    return out


def polygon_areas(polys: FloatArray) -> FloatArray:
    """Returns the (N,) areas of (N, K, 2) simple polygons (shoelace formula)."""
    out: FloatArray = np.abs(signed_areas(np.asarray(polys, dtype=np.float64)))
    return out


def signed_areas(polys: FloatArray) -> FloatArray:
    """Returns the (N,) signed shoelace areas: positive for counter-clockwise polygons."""
    x, y = polys[..., 0], polys[..., 1]
    out: FloatArray = 0.5 * np.sum(
        x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y, axis=-1
    )
    return out


def box_areas(boxes: FloatArray) -> FloatArray:
    """Returns the (N,) areas of xyxy boxes (0 for degenerate ones)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out: FloatArray = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return out


def candidate_pairs(
    boxes: FloatArray, classes: IntArray | None = None
) -> tuple[IntArray, IntArray]:
    """Returns index arrays (i, j), i != j, of pairs whose xyxy boxes overlap with positive area.

    A sort-and-sweep on x_min: only boxes starting before another box ends are compared, so
    sparse scenes (the usual aerial case) cost O(N log N + pairs) instead of O(N^2). When
    `classes` is given, only same-class pairs are returned.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = b.shape[0]
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return empty, empty
    order = np.argsort(b[:, 0], kind="stable")
    x0_sorted = b[order, 0]
    end = np.searchsorted(x0_sorted, b[order, 2], side="left")
    counts = np.maximum(end - np.arange(n) - 1, 0)
    total = int(counts.sum())
    if total == 0:
        return empty, empty
    a = np.repeat(np.arange(n), counts)
    starts = np.cumsum(counts) - counts
    bpos = a + 1 + (np.arange(total) - np.repeat(starts, counts))
    i, j = order[a], order[bpos]
    ok = (b[i, 1] < b[j, 3]) & (b[j, 1] < b[i, 3]) & (b[i, 0] < b[j, 2]) & (b[j, 0] < b[i, 2])
    if classes is not None:
        cls = np.asarray(classes)
        ok &= cls[i] == cls[j]
    return i[ok].astype(np.int64), j[ok].astype(np.int64)


def box_intersections(a: FloatArray, b: FloatArray) -> FloatArray:
    """Returns the (P,) intersection areas of paired xyxy boxes a[k], b[k]."""
    w = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    h = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    out: FloatArray = np.clip(w, 0, None) * np.clip(h, 0, None)
    return out


def polygon_intersections(a: FloatArray, b: FloatArray) -> FloatArray:
    """Returns the (P,) exact intersection areas of paired convex polygons a[k], b[k].

    Pairs a separating axis parts are 0 at once; the others are clipped in numpy, all pairs
    at a time (`clipped_areas`), about 10x cheaper than a GEOS call per pair.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out: FloatArray = np.zeros(len(a))
    if len(a) == 0:
        return out
    meet = np.nonzero(~separated(a, b))[0]
    out[meet] = clipped_areas(a[meet], b[meet])
    return out


def clipped_areas(a: FloatArray, b: FloatArray) -> FloatArray:
    """Returns the areas of a[k] clipped by b[k] ((P, V, 2) convex polygons, any winding).

    Sutherland-Hodgman, vectorised over the pairs: a is cut by the half-plane of each edge
    of b in turn. A convex polygon cut by a line gains at most one vertex, so V + V slots
    hold every intermediate polygon; the live vertices of each row are kept in front.
    """
    p, v = a.shape[:2]
    cap = 2 * v
    poly = np.zeros((p, cap, 2))
    poly[:, :v] = a
    n = np.full(p, v)
    slot = np.arange(cap)[None, :]
    # +1 for a counter-clockwise b, -1 clockwise, 0 for a flat b (which meets nothing)
    wind = np.sign(signed_areas(b))
    for e in range(b.shape[1]):
        s, d = b[:, e], b[:, (e + 1) % b.shape[1]] - b[:, e]
        live, nxt = _ring(slot, n)
        side = wind[:, None] * (
            d[:, None, 0] * (poly[..., 1] - s[:, None, 1])
            - d[:, None, 1] * (poly[..., 0] - s[:, None, 0])
        )
        side_n = np.take_along_axis(side, nxt, axis=1)
        inside = side >= 0
        crosses = live & (inside != (side_n >= 0))
        t = side / np.where(crosses, side - side_n, 1.0)
        cut = poly + t[..., None] * (np.take_along_axis(poly, nxt[..., None], axis=1) - poly)
        keep = np.stack([live & inside, crosses], axis=2).reshape(p, 2 * cap)
        cand = np.stack([poly, cut], axis=2).reshape(p, 2 * cap, 2)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :cap]
        poly = np.take_along_axis(cand, order[..., None], axis=1)
        n = np.minimum(keep.sum(axis=1), cap)
    live, nxt = _ring(slot, n)
    nb = np.take_along_axis(poly, nxt[..., None], axis=1)
    cross = np.where(live, poly[..., 0] * nb[..., 1] - nb[..., 0] * poly[..., 1], 0.0)
    out: FloatArray = np.where((n >= 3) & (wind != 0), 0.5 * np.abs(cross.sum(axis=1)), 0.0)
    return out


def _ring(slot: IntArray, n: IntArray) -> tuple[BoolArray, IntArray]:
    """Returns which slots hold a vertex of each row's polygon (its first n[k]), and the
    slot of each one's successor around the ring."""
    live: BoolArray = slot < n[:, None]
    nxt: IntArray = np.where(slot + 1 < n[:, None], slot + 1, 0)
    return live, nxt


def separated(a: FloatArray, b: FloatArray) -> BoolArray:
    """Returns where paired convex polygons a[k], b[k] ((P, V, 2) each) are disjoint.

    Separating axis test: two convex polygons are disjoint exactly when the projections on
    some edge normal of either do not overlap. Touching polygons count as disjoint (their
    intersection has no area).
    """
    both = np.concatenate([a, b], axis=1)
    edges = np.concatenate([np.roll(a, -1, axis=1) - a, np.roll(b, -1, axis=1) - b], axis=1)
    normals = np.stack([-edges[..., 1], edges[..., 0]], axis=-1)
    proj = np.einsum("pvc,pnc->pnv", both, normals)
    v = a.shape[1]
    pa, pb = proj[..., :v], proj[..., v:]
    gap = (pa.max(axis=2) <= pb.min(axis=2)) | (pb.max(axis=2) <= pa.min(axis=2))
    out: BoolArray = gap.any(axis=1)
    return out


def pair_overlaps(
    boxes: FloatArray, polys: FloatArray | None, i: IntArray, j: IntArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Returns (intersection, area_i, area_j) for index pairs.

    With `polys` (oriented boxes) the exact polygon intersection is used; otherwise the
    axis-aligned `boxes`.
    """
    if polys is None:
        areas = box_areas(boxes)
        return box_intersections(boxes[i], boxes[j]), areas[i], areas[j]
    areas = polygon_areas(polys)
    return polygon_intersections(polys[i], polys[j]), areas[i], areas[j]


def iou_from_parts(inter: FloatArray, area_a: FloatArray, area_b: FloatArray) -> FloatArray:
    """Returns intersection over union, 0 where the union is empty."""
    union = area_a + area_b - inter
    out: FloatArray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return out


def ios_from_parts(inter: FloatArray, area_a: FloatArray, area_b: FloatArray) -> FloatArray:
    """Returns intersection over the smaller area, 0 where that area is empty."""
    small = np.minimum(area_a, area_b)
    out: FloatArray = np.divide(inter, small, out=np.zeros_like(inter), where=small > 0)
    return out


def polygon_iou(a: FloatArray, b: FloatArray) -> float:
    """Returns the exact IoU of two polygons given as (K, 2) corner arrays."""
    pa, pb = np.asarray(a, dtype=np.float64)[None], np.asarray(b, dtype=np.float64)[None]
    inter = polygon_intersections(pa, pb)
    return float(iou_from_parts(inter, polygon_areas(pa), polygon_areas(pb))[0])


def iou_matrix(a_polys: FloatArray, b_polys: FloatArray) -> FloatArray:
    """Returns the (Na, Nb) IoU matrix of two polygon sets; exact, pruned by envelopes."""
    na, nb = len(a_polys), len(b_polys)
    out: FloatArray = np.zeros((na, nb))
    if na == 0 or nb == 0:
        return out
    ea, eb = polygon_envelopes(a_polys), polygon_envelopes(b_polys)
    hit = (
        (ea[:, None, 0] < eb[None, :, 2])
        & (eb[None, :, 0] < ea[:, None, 2])
        & (ea[:, None, 1] < eb[None, :, 3])
        & (eb[None, :, 1] < ea[:, None, 3])
    )
    ii, jj = np.nonzero(hit)
    inter = polygon_intersections(a_polys[ii], b_polys[jj])
    out[ii, jj] = iou_from_parts(inter, polygon_areas(a_polys[ii]), polygon_areas(b_polys[jj]))
    return out


def edge_truncated(
    boxes: FloatArray, window: Window, image_w: int, image_h: int, tol: float = 2.0
) -> BoolArray:
    """Returns which boxes touch an inner edge of their slice window (object likely cut).

    Edges lying on the image border do not count: an object cut there is cut in every slice.
    """
    x0, y0, x1, y1 = window
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out: BoolArray = (
        ((b[:, 0] <= x0 + tol) & (x0 > 0))
        | ((b[:, 1] <= y0 + tol) & (y0 > 0))
        | ((b[:, 2] >= x1 - tol) & (x1 < image_w))
        | ((b[:, 3] >= y1 - tol) & (y1 < image_h))
    )
    return out
