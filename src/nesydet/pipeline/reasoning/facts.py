"""Pair geometry for the rules, computed with numpy and written as Prolog fact terms.

Facts (ids are 0-based indices into the detection arrays):

* ``det(Id, Class, Conf, AreaFrac, RelSize)``: area over image area; area over the median
  area of the same class in this image (1.0 = typical size for this image).
* ``near(Id, Other, Dist)``: centre distance over the mean of both box diagonals, for pairs
  with Dist <= near_factor. Both directions are asserted.
* ``overlap(Id, Other, IoS)``: exact intersection over the smaller area (rotated boxes as
  polygons), for pairs with IoS >= 0.01. Both directions.
* ``image_size(W, H)``, ``threshold(T)``: the image and the job's confidence threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nesydet.pipeline import geometry as geo
from nesydet.pipeline.types import FloatArray, IntArray

MIN_IOS = 0.01


@dataclass(frozen=True, slots=True)
class PairGeometry:
    """Near and overlap relations of one set of detections (each pair once, i < j order free)."""

    near_i: IntArray
    near_j: IntArray
    near_dist: FloatArray
    overlap_i: IntArray
    overlap_j: IntArray
    overlap_ios: FloatArray


def prolog_atom(name: str) -> str:
    """Returns `name` as a quoted Prolog atom."""
    escaped = name.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def pair_geometry(boxes: FloatArray, polys: FloatArray | None, near_factor: float) -> PairGeometry:
    """Returns the near and overlap pairs of detections.

    Args:
        boxes: (N, 4) xyxy envelopes.
        polys: (N, 4, 2) oriented corners, or None for axis-aligned detections.
        near_factor: Max centre distance, in mean diagonals, for `near`.
    """
    centres = np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2])
    if polys is not None:
        e1 = np.linalg.norm(polys[:, 1] - polys[:, 0], axis=1)
        e2 = np.linalg.norm(polys[:, 2] - polys[:, 1], axis=1)
        diag = np.hypot(e1, e2)
    else:
        diag = np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    # dist <= k * (d_i + d_j) / 2 implies the squares of half-side k * d / 2 overlap, so the
    # sweep over those squares finds every candidate without an N x N matrix.
    r = near_factor * diag / 2 + 1e-6
    squares = np.column_stack([centres - r[:, None], centres + r[:, None]])
    i, j = geo.candidate_pairs(squares)
    mean_diag = (diag[i] + diag[j]) / 2
    dist = np.linalg.norm(centres[i] - centres[j], axis=1)
    rel = np.divide(dist, mean_diag, out=np.full_like(dist, np.inf), where=mean_diag > 0)
    ok = rel <= near_factor
    ni, nj, nd = i[ok], j[ok], rel[ok]
    env = geo.polygon_envelopes(polys) if polys is not None else boxes
    hit = (
        (env[ni, 0] < env[nj, 2])
        & (env[nj, 0] < env[ni, 2])
        & (env[ni, 1] < env[nj, 3])
        & (env[nj, 1] < env[ni, 3])
    )
    oi, oj = ni[hit], nj[hit]
    inter, ai, aj = geo.pair_overlaps(boxes, polys, oi, oj)
    ios = geo.ios_from_parts(inter, ai, aj)
    keep = ios >= MIN_IOS
    return PairGeometry(ni, nj, nd, oi[keep], oj[keep], ios[keep])


def build_facts(
    class_names: Sequence[str],
    scores: FloatArray,
    boxes: FloatArray,
    polys: FloatArray | None,
    image_size: tuple[int, int],
    threshold: float,
    near_factor: float = 3.0,
) -> str:
    """Returns the facts for one image as a Prolog list term (text).

    Args:
        class_names: Class name of each detection.
        scores: (N,) confidences.
        boxes: (N, 4) xyxy envelopes in pixels.
        polys: (N, 4, 2) oriented corners, or None.
        image_size: (width, height).
        threshold: The job's confidence threshold.
        near_factor: See `pair_geometry`.
    """
    w, h = image_size
    n = len(class_names)
    areas = geo.polygon_areas(polys) if polys is not None else geo.box_areas(boxes)
    rel = np.ones(n)
    names = np.asarray(class_names, dtype=object)
    for name in set(class_names):
        sel = names == name
        med = float(np.median(areas[sel]))
        if med > 0:
            rel[sel] = areas[sel] / med
    frac = areas / float(max(w * h, 1))
    atoms = {name: prolog_atom(name) for name in set(class_names)}
    parts = [f"image_size({int(w)},{int(h)})", f"threshold({float(threshold):.6f})"]
    parts += [
        f"det({k},{atoms[class_names[k]]},{scores[k]:.6f},{frac[k]:.8f},{rel[k]:.4f})"
        for k in range(n)
    ]
    if n > 1:
        g = pair_geometry(boxes, polys, near_factor)
        for a, b, d in zip(g.near_i.tolist(), g.near_j.tolist(), g.near_dist.tolist(), strict=True):
            parts.append(f"near({a},{b},{d:.4f})")
            parts.append(f"near({b},{a},{d:.4f})")
        for a, b, s in zip(
            g.overlap_i.tolist(), g.overlap_j.tolist(), g.overlap_ios.tolist(), strict=True
        ):
            parts.append(f"overlap({a},{b},{s:.4f})")
            parts.append(f"overlap({b},{a},{s:.4f})")
    return "[" + ",".join(parts) + "]"
