"""Per-detection context facts: the surface around each box, the shore, and its neighbourhood.

Computed with numpy from the context map (`nesydet.pipeline.context`) and the pair geometry
the near/overlap facts already need, so they cost a few milliseconds per thousand
detections. Every fact here is documented in the header of ``rules/dota.pl``:

* ``scene(Surface, Share)``: share of the whole image covered by each surface.
* ``on(Id, Surface, Share)``: share of each surface (>= MIN_SHARE) around the detection: the
  axis-aligned envelope of its box grown to twice its length and width about its centre,
  less the envelope of the box itself (the object's own pixels say what it looks like, not
  what it stands on).
* ``shore_distance(Id, D)``: distance from the box centre to the nearest shoreline, in the
  box's own diagonals; only for images with both water and land.
* ``nearest(Id, Class, Dist)``: the closest *separate* detection of each class within the
  near range (as ``near/3``: mean diagonals); fragments and duplicates (intersection over the
  smaller box > FRAGMENT_IOS) do not count.
* ``cluster(Id, N)``: separate detections of the same class within the near range (N > 0;
  no fact means none).
* ``aligned(Id, N)``: of those, how many point the same way (within ALIGN_DEG, modulo a
  right angle: rows and grids); oriented boxes only, N > 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from nesydet.pipeline import geometry as geo
from nesydet.pipeline.context import SURFACES, ContextMap
from nesydet.pipeline.types import FloatArray, IntArray

MIN_SHARE = 0.05
FRAGMENT_IOS = 0.3
ALIGN_DEG = 10.0
CONTEXT_GROW = 2.0  # the surroundings: the box scaled by this about its centre
# A fact text with the detection it is about (-1 for facts about the whole image).
OwnFact = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Neighbourhood:
    """Aggregates of the near pairs per detection (see the module docstring)."""

    nearest_id: IntArray  # (M,) detection
    nearest_cls: IntArray  # (M,) index into the class-name table
    nearest_dist: FloatArray  # (M,)
    cluster: IntArray  # (N,)
    aligned: IntArray | None  # (N,) or None for axis-aligned boxes


def _window_counts(
    tables: list[npt.NDArray[np.int32]],
    cell: tuple[float, float],
    lo: FloatArray,
    hi: FloatArray,
) -> npt.NDArray[np.int64]:
    """Returns (N, S) cell counts per surface in the windows [lo, hi) (pixels, (N, 2) each)."""
    hs, ws = tables[0].shape[0] - 1, tables[0].shape[1] - 1
    cw, ch = cell
    x0 = np.clip(np.floor(lo[:, 0] / cw), 0, ws).astype(np.int64)
    x1 = np.clip(np.ceil(hi[:, 0] / cw), 0, ws).astype(np.int64)
    y0 = np.clip(np.floor(lo[:, 1] / ch), 0, hs).astype(np.int64)
    y1 = np.clip(np.ceil(hi[:, 1] / ch), 0, hs).astype(np.int64)
    x1, y1 = np.maximum(x1, np.minimum(x0 + 1, ws)), np.maximum(y1, np.minimum(y0 + 1, hs))
    out: npt.NDArray[np.int64] = np.column_stack(
        [t[y1, x1].astype(np.int64) - t[y0, x1] - t[y1, x0] + t[y0, x0] for t in tables]
    )
    return out


def surface_shares(
    ctx: ContextMap, centres: FloatArray, half: FloatArray, inner: FloatArray | None = None
) -> FloatArray:
    """Returns the (N, len(SURFACES)) share of each surface in axis-aligned windows.

    Args:
        ctx: The image's context map.
        centres: (N, 2) window centres in pixels.
        half: (N, 2) half width and height of each window in pixels.
        inner: (N, 2) half sizes of a hole left out of each window (the object's own box,
            whose pixels say what the object looks like, not what it stands on), or None.
    """
    table = ctx.integral()
    counts = _window_counts(table, ctx.cell, centres - half, centres + half)
    if inner is not None:
        hole = _window_counts(table, ctx.cell, centres - inner, centres + inner)
        ring = counts - hole
        # a box as large as its window (or larger than the image) keeps its own cells
        counts = np.where(ring.sum(axis=1, keepdims=True) > 0, ring, counts)
    total = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    out: FloatArray = counts / total
    return out


def shore_distances(ctx: ContextMap, centres: FloatArray, diag: FloatArray) -> FloatArray | None:
    """Returns each centre's distance to the shore in its box diagonals, None without a shore."""
    if ctx.shore is None:
        return None
    hs, ws = ctx.shore.shape
    cx = np.clip((centres[:, 0] / ctx.cell[0]).astype(np.int64), 0, ws - 1)
    cy = np.clip((centres[:, 1] / ctx.cell[1]).astype(np.int64), 0, hs - 1)
    px = ctx.shore[cy, cx].astype(np.float64)
    out: FloatArray = px / np.maximum(diag, 1.0)
    return out


def neighbourhood(
    classes: IntArray,
    angles: FloatArray | None,
    near: tuple[IntArray, IntArray, FloatArray],
    overlap: tuple[IntArray, IntArray, FloatArray],
) -> Neighbourhood:
    """Returns nearest-per-class, cluster sizes and alignment from the near/overlap pairs.

    Args:
        classes: (N,) class index per detection.
        angles: (N,) box angles in radians (oriented boxes), else None.
        near: (i, j, dist) near pairs, each once.
        overlap: (i, j, ios) overlapping pairs, each once.
    """
    n = len(classes)
    ni, nj, nd = near
    oi, oj, ios = overlap
    frag = ios > FRAGMENT_IOS
    frag_keys = np.minimum(oi[frag], oj[frag]) * n + np.maximum(oi[frag], oj[frag])
    keys = np.minimum(ni, nj) * n + np.maximum(ni, nj)
    sep = ~np.isin(keys, frag_keys)
    a = np.concatenate([ni[sep], nj[sep]])
    b = np.concatenate([nj[sep], ni[sep]])
    d = np.concatenate([nd[sep], nd[sep]])
    n_cls = int(classes.max()) + 1 if n else 1
    key = a * n_cls + classes[b]
    order = np.lexsort((d, key))
    key, a_s, d_s = key[order], a[order], d[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    same = classes[a] == classes[b]
    cluster = np.bincount(a[same], minlength=n).astype(np.int64)
    aligned = None
    if angles is not None:
        diff = np.abs(angles[a[same]] - angles[b[same]]) % (np.pi / 2)
        diff = np.minimum(diff, np.pi / 2 - diff)
        ok = diff <= np.deg2rad(ALIGN_DEG)
        aligned = np.bincount(a[same][ok], minlength=n).astype(np.int64)
    return Neighbourhood(a_s[first], key[first] % n_cls, d_s[first], cluster, aligned)


def context_fact_texts(
    ctx: ContextMap,
    boxes: FloatArray,
    polys: FloatArray | None,
    wanted: frozenset[str],
) -> list[OwnFact]:
    """Returns the scene/2, on/3 and shore_distance/2 facts that `wanted` names."""
    parts: list[OwnFact] = []
    if "scene" in wanted:
        parts += [(-1, f"scene({name},{share:.4f})") for name, share in ctx.shares().items()]
    if len(boxes) == 0:
        return parts
    centres = np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2])
    if polys is not None:
        grown = centres[:, None, :] + CONTEXT_GROW * (polys - centres[:, None, :])
        env = geo.polygon_envelopes(grown)
        half = np.column_stack([(env[:, 2] - env[:, 0]) / 2, (env[:, 3] - env[:, 1]) / 2])
        own = geo.polygon_envelopes(polys)
        inner = np.column_stack([(own[:, 2] - own[:, 0]) / 2, (own[:, 3] - own[:, 1]) / 2])
        e1 = np.linalg.norm(polys[:, 1] - polys[:, 0], axis=1)
        e2 = np.linalg.norm(polys[:, 2] - polys[:, 1], axis=1)
        diag = np.hypot(e1, e2)
    else:
        wh = np.column_stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
        half = CONTEXT_GROW * wh / 2
        inner = wh / 2
        diag = np.hypot(wh[:, 0], wh[:, 1])
    if "on" in wanted:
        shares = surface_shares(ctx, centres, half, inner)
        ids, cols = np.nonzero(shares >= MIN_SHARE)
        vals = shares[ids, cols]
        parts += [
            (i, f"on({i},{SURFACES[c]},{v:.3f})")
            for i, c, v in zip(ids.tolist(), cols.tolist(), vals.tolist(), strict=True)
        ]
    if "shore_distance" in wanted:
        dist = shore_distances(ctx, centres, diag)
        if dist is not None:
            parts += [(i, f"shore_distance({i},{v:.3f})") for i, v in enumerate(dist.tolist())]
    return parts


def neighbourhood_fact_texts(
    hood: Neighbourhood, atoms: Sequence[str], wanted: frozenset[str]
) -> list[OwnFact]:
    """Returns the nearest/3, cluster/2 and aligned/2 facts that `wanted` names."""
    parts: list[OwnFact] = []
    if "nearest" in wanted:
        parts += [
            (i, f"nearest({i},{atoms[c]},{d:.4f})")
            for i, c, d in zip(
                hood.nearest_id.tolist(),
                hood.nearest_cls.tolist(),
                hood.nearest_dist.tolist(),
                strict=True,
            )
        ]
    # Zero counts are left out (most detections of a sparse scene): no fact means none.
    if "cluster" in wanted:
        parts += [(i, f"cluster({i},{c})") for i, c in enumerate(hood.cluster.tolist()) if c]
    if "aligned" in wanted and hood.aligned is not None:
        parts += [(i, f"aligned({i},{c})") for i, c in enumerate(hood.aligned.tolist()) if c]
    return parts
