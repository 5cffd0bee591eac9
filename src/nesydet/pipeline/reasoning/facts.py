"""Pair geometry for the rules, computed with numpy and written as Prolog fact terms.

Facts (ids are 0-based indices into the detection arrays):

* ``det(Id, Class, Conf, AreaFrac, RelSize)``: area over image area; area over the median
  area of the same class in this image (1.0 = typical size for this image).
* ``near(Id, Other, Dist)``: centre distance over the mean of both box diagonals, for pairs
  with Dist <= near_factor. Both directions are asserted.
* ``overlap(Id, Other, IoS)``: exact intersection over the smaller area (rotated boxes as
  polygons), for pairs with IoS >= 0.01. Both directions.
* ``elongation(Id, E)``: the oriented box's long side over its short side (1.0 for a
  square), at most 100; oriented boxes only (an axis-aligned box of a diagonal ship is
  square).
* ``image_size(W, H)``, ``threshold(T)``: the image and the job's confidence threshold.

Scene context and neighbourhood aggregates (``scene/2``, ``on/3``, ``shore_distance/2``,
``nearest/3``, ``cluster/2``, ``aligned/2``) come from `scene_facts`. Only the facts a rules
file mentions are computed and sent (`wanted`): ``near/3`` alone is tens of thousands of
facts in a dense car park, and the default rules read its aggregates instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nesydet.pipeline import geometry as geo
from nesydet.pipeline.context import ContextMap
from nesydet.pipeline.reasoning.scene_facts import (
    OwnFact,
    context_fact_texts,
    neighbourhood,
    neighbourhood_fact_texts,
)
from nesydet.pipeline.types import FloatArray, IntArray

MIN_IOS = 0.01
MAX_ELONGATION = 100.0  # a box with a (near) zero side
# Every fact predicate nesydet may assert (name -> arity); rules files may not define them.
FACT_ARITY = {
    "det": 5,
    "near": 3,
    "overlap": 3,
    "image_size": 2,
    "threshold": 1,
    "scene": 2,
    "on": 3,
    "shore_distance": 2,
    "nearest": 3,
    "cluster": 2,
    "aligned": 2,
    "elongation": 2,
}
ALL_FACTS = frozenset(FACT_ARITY)
CONTEXT_FACTS = frozenset({"scene", "on", "shore_distance"})


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
    *,
    context: ContextMap | None = None,
    wanted: frozenset[str] | None = None,
    index: dict[int, list[str]] | None = None,
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
        context: The image's context map, for the scene/on/shore_distance facts.
        wanted: Names of the fact predicates to send (see `FACT_ARITY`); None sends all.
            det/5, image_size/2 and threshold/1 are always sent.
        index: When given, filled with each detection's own context and neighbourhood
            facts (on/3, shore_distance/2, nearest/3, cluster/2, aligned/2,
            elongation/2), by id, for explanations.
    """
    want = ALL_FACTS if wanted is None else wanted
    atoms = {name: prolog_atom(name) for name in set(class_names)}
    parts = [f"image_size({int(image_size[0])},{int(image_size[1])})"]
    parts.append(f"threshold({float(threshold):.6f})")
    parts += _det_facts(class_names, scores, boxes, polys, image_size, atoms)
    own: list[OwnFact] = []
    if polys is not None and "elongation" in want:
        own += _elongation_facts(polys)
    if context is not None:
        own += context_fact_texts(context, boxes, polys, want)
    if len(class_names) > 1 and want & {"near", "overlap", "nearest", "cluster", "aligned"}:
        g = pair_geometry(boxes, polys, near_factor)
        parts += _pair_facts(g, want)
        if want & {"nearest", "cluster", "aligned"}:
            own += _neighbourhood_facts(g, class_names, polys, atoms, want)
    parts += [fact for _, fact in own]
    if index is not None:
        for k, fact in own:
            if k >= 0:
                index.setdefault(k, []).append(fact)
    return "[" + ",".join(parts) + "]"


def _elongation_facts(polys: FloatArray) -> list[OwnFact]:
    """Returns elongation/2 of every detection: long side over short side of its box."""
    a = np.linalg.norm(polys[:, 1] - polys[:, 0], axis=1)
    b = np.linalg.norm(polys[:, 2] - polys[:, 1], axis=1)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    ratio = np.divide(hi, lo, out=np.full_like(hi, MAX_ELONGATION), where=lo > 0)
    ratio = np.minimum(ratio, MAX_ELONGATION)
    return [(k, f"elongation({k},{e:.3f})") for k, e in enumerate(ratio.tolist())]


def _det_facts(
    class_names: Sequence[str],
    scores: FloatArray,
    boxes: FloatArray,
    polys: FloatArray | None,
    image_size: tuple[int, int],
    atoms: dict[str, str],
) -> list[str]:
    """Returns the det/5 facts: area over the image, and over the class's median area."""
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
    # Python floats: formatting numpy scalars one by one is slower.
    rows = zip(class_names, scores.tolist(), frac.tolist(), rel.tolist(), strict=True)
    return [f"det({k},{atoms[c]},{p:.6f},{a:.8f},{r:.4f})" for k, (c, p, a, r) in enumerate(rows)]


def _pair_facts(g: PairGeometry, want: frozenset[str]) -> list[str]:
    """Returns the near/3 and overlap/3 facts `want` names, both directions."""
    parts: list[str] = []
    if "near" in want:
        for a, b, d in zip(g.near_i.tolist(), g.near_j.tolist(), g.near_dist.tolist(), strict=True):
            parts.append(f"near({a},{b},{d:.4f})")
            parts.append(f"near({b},{a},{d:.4f})")
    if "overlap" in want:
        for a, b, s in zip(
            g.overlap_i.tolist(), g.overlap_j.tolist(), g.overlap_ios.tolist(), strict=True
        ):
            parts.append(f"overlap({a},{b},{s:.4f})")
            parts.append(f"overlap({b},{a},{s:.4f})")
    return parts


def _neighbourhood_facts(
    g: PairGeometry,
    class_names: Sequence[str],
    polys: FloatArray | None,
    atoms: dict[str, str],
    want: frozenset[str],
) -> list[OwnFact]:
    """Returns the nearest/3, cluster/2 and aligned/2 facts `want` names."""
    table = sorted(atoms)
    position = {name: k for k, name in enumerate(table)}
    cls = np.array([position[c] for c in class_names], dtype=np.int64)
    angles = geo.polygons_to_obb(polys)[:, 4] if polys is not None else None
    hood = neighbourhood(
        cls, angles, (g.near_i, g.near_j, g.near_dist), (g.overlap_i, g.overlap_j, g.overlap_ios)
    )
    return neighbourhood_fact_texts(hood, [atoms[c] for c in table], want)
