"""The double boxes left at slice borders, and what removing them after the merge would cost.

``bench.quality`` (c) counts the ground-truth objects cut by a slice edge that end up with two
boxes: most of those left after the pipeline's merge are two boxes from one slice, which the
model also puts on objects no edge cuts. This bench measures, on held-out seeds, whether
anything after the merge can remove them without losing objects:

* **Variants** applied to the pipeline's merged output (same slice, same class pairs only):
  drop the weaker box of a pair at IoU >= 0.25 or >= 0.2; fuse the pair into one box
  (score-weighted centre, size and angle) at IoU >= 0.2; drop a box that two or more surer
  boxes cover to >= 70 % (a box straddling two neighbours). For each: objects cut by an edge
  found twice, of those by boxes of one slice, uncut objects found twice, recall and mAP50.
* **A second look**: every same-slice pair of one class overlapping by >= 0.25 of the smaller
  box goes through the model again in a crop around it, placed off the slice's stride grid,
  and the bench counts the boxes the model finds there, by what the pair really is (one
  object boxed twice, two neighbours, a box on nothing). Were the doubles an accident of
  where the grid fell, the second look would find one box on them.
* **Where the doubles are made**: the "one slice" count says in how many of them the slice
  cuts the object (a double the border made), and a last table gives the rate of objects
  boxed twice by one slice by their distance to that slice's nearest inner edge. Were the
  model's doubles a border effect, objects near an edge would be doubled more often.

Seeds 1 and 2 tuned the merge's thresholds (``nms.BORDER_IOS``); seed 0 is the report seed
of ``bench.quality``.

    .venv/bin/python -m bench.border_doubles              # seeds 0, 1, 2, all scenes (~1 min)
    .venv/bin/python -m bench.border_doubles --seeds 0 --limit 2
    .venv/bin/python -m bench.border_doubles --model var/train/candidate.pt
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench._reasoning import gt_boxes, seed_set
from bench.quality import (
    CONF,
    IOU,
    MODEL,
    ROOT,
    border_duplicates,
    covering_pairs,
    ensure_heldout,
    raw_boxes,
    sliced_pass,
    table,
)
from nesydet.pipeline import Pipeline
from nesydet.pipeline import geometry as geo
from nesydet.pipeline.detector import Detector
from nesydet.pipeline.evaluate import ImageBoxes, evaluate
from nesydet.pipeline.image_io import load_image
from nesydet.pipeline.types import RawDetections

Ints = npt.NDArray[np.int64]
Variant = Callable[[RawDetections, Ints], tuple[RawDetections, Ints]]
PAIR_IOS = 0.25  # pairs looked at a second time
COVER_IOU = 0.3  # a box of the second look on a pair box (bench.quality's "covers")


@dataclass
class Tally:
    """One variant's counts and boxes over a seed's scenes."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(7, dtype=np.int64))
    preds: list[ImageBoxes] = field(default_factory=list)


def same_slice_pairs(r: RawDetections, src: Ints) -> tuple[Ints, Ints, np.ndarray, np.ndarray]:
    """Returns same-class pairs of boxes from one slice, with their IoU and IoS."""
    assert r.obb is not None
    polys = geo.obb_to_polygons(r.obb)
    envelopes = geo.polygon_envelopes(polys)
    i, j = geo.candidate_pairs(envelopes, r.classes)
    inter, ai, aj = geo.pair_overlaps(envelopes, polys, i, j)
    one = src[i] == src[j]
    iou, ios = geo.iou_from_parts(inter, ai, aj), geo.ios_from_parts(inter, ai, aj)
    return i[one], j[one], iou[one], ios[one]


def canonical(obb: np.ndarray) -> np.ndarray:
    """Returns oriented boxes with w >= h and the angle in [0, pi)."""
    out = obb.copy()
    turn = out[:, 2] < out[:, 3]
    out[turn, 2], out[turn, 3] = obb[turn, 3], obb[turn, 2]
    out[turn, 4] += np.pi / 2
    out[:, 4] %= np.pi
    return out


def pairwise(threshold: float, *, fuse: bool) -> Variant:
    """Returns the variant that drops (or fuses into the surer box) the weaker box of each
    same-slice pair at IoU >= threshold, most overlapping pairs first."""

    def run(r: RawDetections, src: Ints) -> tuple[RawDetections, Ints]:
        assert r.obb is not None
        i, j, iou, _ = same_slice_pairs(r, src)
        hit = iou >= threshold
        gone = np.zeros(len(r), dtype=bool)
        obb, canon = r.obb.copy(), canonical(r.obb)
        for k in np.argsort(-iou[hit]):
            p, q = i[hit][k], j[hit][k]
            if gone[p] or gone[q]:
                continue
            p, q = (p, q) if r.scores[p] >= r.scores[q] else (q, p)
            gone[q] = True
            if fuse:
                a, b = r.scores[p], r.scores[q]
                centre = (canon[p, :4] * a + canon[q, :4] * b) / (a + b)
                turn = a * np.exp(2j * canon[p, 4]) + b * np.exp(2j * canon[q, 4])
                obb[p] = [*centre, np.angle(turn) / 2]
        keep = np.nonzero(~gone)[0]
        envelopes = geo.polygon_envelopes(geo.obb_to_polygons(obb))
        fused = RawDetections(envelopes, r.scores, r.classes, obb)
        return fused.take(keep), src[keep]

    return run


def straddling(cover: float) -> Variant:
    """Returns the variant that drops, weakest first, a box that two or more surer boxes of
    its slice and class cover to at least `cover` of its area."""
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    def run(r: RawDetections, src: Ints) -> tuple[RawDetections, Ints]:
        assert r.obb is not None
        polys = geo.obb_to_polygons(r.obb)
        i, j, iou, _ = same_slice_pairs(r, src)
        near: dict[int, list[int]] = {}
        for a, b in zip(i[iou > 0].tolist(), j[iou > 0].tolist(), strict=True):
            near.setdefault(a, []).append(b)
            near.setdefault(b, []).append(a)
        gone = np.zeros(len(r), dtype=bool)
        for a in np.argsort(r.scores).tolist():
            others = [b for b in near.get(a, []) if not gone[b] and r.scores[b] >= r.scores[a]]
            if len(others) < 2:
                continue
            box = Polygon(polys[a])
            union = unary_union([Polygon(polys[b]) for b in others])
            gone[a] = box.intersection(union).area >= cover * box.area
        keep = np.nonzero(~gone)[0]
        return r.take(keep), src[keep]

    return run


VARIANTS: dict[str, Variant] = {
    "pipeline merge (default)": lambda r, src: (r, src),
    "+ drop weaker, IoU >= 0.25": pairwise(0.25, fuse=False),
    "+ drop weaker, IoU >= 0.2": pairwise(0.2, fuse=False),
    "+ fuse pair, IoU >= 0.2": pairwise(0.2, fuse=True),
    "+ drop straddling, cover >= 0.7": straddling(0.7),
}


def object_box_pairs(r: RawDetections, gt: ImageBoxes, w: int, h: int) -> tuple[Ints, Ints]:
    """Returns the (object, box) index pairs where a box of `r` covers a ground-truth object."""
    assert r.obb is not None
    gp = gt.polygons * np.array([w, h])
    return covering_pairs(gp, gt.classes, geo.obb_to_polygons(r.obb), r.classes)


def pair_kinds(cover: tuple[Ints, Ints], i: Ints, j: Ints) -> list[str]:
    """Returns what each pair really is: one object twice, two neighbours, or a false box.
    `cover`: the (object, box) pairs of `object_box_pairs`."""
    a, b = cover
    covers: dict[int, set[int]] = {}
    for obj, box in zip(a.tolist(), b.tolist(), strict=True):
        covers.setdefault(box, set()).add(obj)
    kinds = []
    for p, q in zip(i.tolist(), j.tolist(), strict=True):
        cp, cq = covers.get(p, set()), covers.get(q, set())
        if not cp or not cq:
            kinds.append("a box on nothing")
        elif cp == cq and len(cp) == 1:
            kinds.append("one object twice")
        elif not cp & cq:
            kinds.append("two neighbours")
        else:
            kinds.append("other")
    return kinds


def second_look(
    det: Detector,
    arr: np.ndarray,
    r: RawDetections,
    src: Ints,
    windows: list[geo.Window],
    kinds: list[str],
    pairs: tuple[Ints, Ints],
    crop: int,
    shift: int,
) -> Counter[tuple[str, str]]:
    """Returns (kind of pair, boxes the model finds on it in a crop off the slice's grid)."""
    assert r.obb is not None
    h, w = arr.shape[:2]
    polys = geo.obb_to_polygons(r.obb)
    crops, origins = [], []
    for p, q in zip(*pairs, strict=True):
        mx, my = (r.obb[p, :2] + r.obb[q, :2]) / 2
        wx, wy = windows[src[p]][:2]
        # the slice's own grid (stride 32) moved by `shift`: another sampling of the place
        x0 = int(np.clip(round((mx - crop / 2 - wx) / 32) * 32 + wx + shift, 0, w - crop))
        y0 = int(np.clip(round((my - crop / 2 - wy) / 32) * 32 + wy + shift, 0, h - crop))
        crops.append(arr[y0 : y0 + crop, x0 : x0 + crop])
        origins.append((x0, y0))
    out: Counter[tuple[str, str]] = Counter()
    for k in range(0, len(crops), 8):
        looks = det.predict_batch(crops[k : k + 8], CONF, iou=IOU, imgsz=crop)
        for n, look in enumerate(looks, start=k):
            p, q = pairs[0][n], pairs[1][n]
            again = look.shifted(*origins[n]).take(np.nonzero(look.classes == r.classes[p])[0])
            assert again.obb is not None
            seen = geo.obb_to_polygons(again.obb)
            best = np.zeros(len(seen))
            for poly in (polys[p], polys[q]):
                rep = np.repeat(poly[None], len(seen), axis=0)
                inter = geo.polygon_intersections(rep, seen)
                area = geo.polygon_areas(seen), geo.polygon_areas(poly[None])
                best = np.maximum(best, geo.iou_from_parts(inter, *area))
            found = int((best >= COVER_IOU).sum())
            out[(kinds[n], "none" if found == 0 else "one" if found == 1 else "two or more")] += 1
    return out


EDGE_BINS = (0, 64, 128, 256)  # px from the slice's nearest inner edge


def edge_bin(gap: float) -> str:
    """Returns the label of the EDGE_BINS range a distance (px) falls in."""
    if gap < 0:
        return "cut by it"
    k = int(np.searchsorted(EDGE_BINS, gap, side="right")) - 1
    return (
        f">= {EDGE_BINS[k]} px"
        if k == len(EDGE_BINS) - 1
        else f"{EDGE_BINS[k]}-{EDGE_BINS[k + 1] - 1} px"
    )


def edge_distance_doubles(
    cover: tuple[Ints, Ints], src: Ints, gt: ImageBoxes, windows: list[geo.Window], w: int, h: int
) -> Counter[tuple[str, str]]:
    """Returns, by the distance of each found object to the nearest inner edge of the slice
    that boxed it (its envelope inside that slice; a negative distance: the edge cuts it),
    how many objects were found and how many of them twice by boxes of that one slice.
    `cover`: the (object, box) pairs of `object_box_pairs`; `src`: each box's slice."""
    env = geo.polygon_envelopes(gt.polygons * np.array([w, h]))
    a, b = cover
    boxes: dict[int, list[int]] = {}
    for obj, box in zip(a.tolist(), b.tolist(), strict=True):
        boxes.setdefault(obj, []).append(box)
    out: Counter[tuple[str, str]] = Counter()
    for obj, found in boxes.items():
        slices = Counter(src[found].tolist())
        x0, y0, x1, y1 = windows[slices.most_common(1)[0][0]]
        gaps = [env[obj, 0] - x0 if x0 > 0 else np.inf, x1 - env[obj, 2] if x1 < w else np.inf]
        gaps += [env[obj, 1] - y0 if y0 > 0 else np.inf, y1 - env[obj, 3] if y1 < h else np.inf]
        gap = min(gaps)
        label = edge_bin(gap)
        out[(label, "found")] += 1
        out[(label, "twice")] += len(found) >= 2 and len(slices) == 1
    return out


def seed_images(seed: int) -> list[Path]:
    """Returns a held-out seed's scenes (seed 0: bench.quality's set), rendering when missing."""
    if seed == 0:
        return ensure_heldout()
    return sorted((seed_set(seed) / "images").glob("*.png"))


def run_seed(
    det: Detector,
    seed: int,
    args: argparse.Namespace,
    looks: Counter[tuple[str, str]],
    edges: Counter[tuple[str, str]],
) -> tuple[dict[str, Tally], list[ImageBoxes]]:
    """Returns every variant's tally over one seed's scenes and their ground truth; adds to
    the second-look and edge-distance counts."""
    tallies = {name: Tally() for name in VARIANTS}
    gts: list[ImageBoxes] = []
    for path in seed_images(seed)[: args.limit or None]:
        img, gt = load_image(path), gt_boxes(path)
        w, h = img.size
        gts.append(gt)
        windows, merged = sliced_pass(det, img)
        r, src = merged["nms_border"]
        for name, variant in VARIANTS.items():
            out, out_src = variant(r, src)
            boxes = raw_boxes(out, w, h)
            tallies[name].preds.append(boxes)
            tallies[name].counts += border_duplicates(boxes, gt, windows, w, h, out_src)
        cover = object_box_pairs(r, gt, w, h)
        edges.update(edge_distance_doubles(cover, src, gt, windows, w, h))
        i, j, _, ios = same_slice_pairs(r, src)
        pairs = (i[ios >= PAIR_IOS], j[ios >= PAIR_IOS])
        kinds = pair_kinds(cover, *pairs)
        looks.update(
            second_look(det, np.asarray(img), r, src, windows, kinds, pairs, args.crop, args.shift)
        )
        print(f"  seed {seed} {path.name}: {len(gt.classes)} objects", flush=True)
    return tallies, gts


def print_variants(seed: int, tallies: dict[str, Tally], gts: list[ImageBoxes]) -> None:
    """Prints one seed's table of variants against the pipeline's merge."""
    rows = []
    base = None
    for name, tally in tallies.items():
        ev = evaluate(tally.preds, gts)
        base = ev.recall if base is None else base
        cut, _, twice, one_slice, uncut, uncut_twice, one_cut = tally.counts.tolist()
        rows.append(
            [
                name,
                f"{twice}/{cut} = {100 * twice / max(cut, 1):.2f} %",
                f"{one_slice} ({one_cut})",
                f"{100 * (twice - one_slice + one_cut) / max(cut, 1):.2f} %",
                f"{100 * uncut_twice / max(uncut, 1):.2f} %",
                ev.recall,
                f"{ev.recall - base:+.4f}",
                ev.map50,
            ]
        )
    headers = ["after the merge", "cut objects twice", "one slice (cut there)"]
    headers += ["made by borders", "uncut twice", "recall"]
    print(f"\nseed {seed}{' (tuning)' if seed in (1, 2) else ''}")
    print(table([*headers, "change", "mAP50"], rows))


def print_edge_distances(edges: Counter[tuple[str, str]]) -> None:
    """Prints how often the model boxes an object twice by its distance to the slice's edge."""
    print(
        "\nobjects boxed twice by one slice, by the distance from the object to that slice's "
        "nearest inner edge (all seeds, after the merge)"
    )
    labels = [edge_bin(x) for x in (-1, *EDGE_BINS)]
    rows = []
    for label in labels:
        found, twice = edges[(label, "found")], edges[(label, "twice")]
        rows.append([label, found, twice, f"{100 * twice / max(found, 1):.2f} %"])
    print(table(["distance", "found", "twice", "rate"], rows))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Returns the command-line options."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", default="0,1,2", help="held-out seeds, comma-separated")
    ap.add_argument("--limit", type=int, default=0, help="scenes per seed (0: all)")
    ap.add_argument("--crop", type=int, default=160, help="second-look crop size (px)")
    ap.add_argument("--shift", type=int, default=16, help="crop offset from the slice's grid")
    ap.add_argument(
        "--model",
        type=Path,
        default=ROOT / "models" / MODEL,
        help="the detector's weights (a candidate's, say; default: the committed model)",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the bench and prints its tables; returns the exit code."""
    args = parse_args(argv)
    model = args.model.resolve()
    pipe = Pipeline(model.parent, ROOT / "rules", default_model=model.name, device="cpu")
    pipe.warmup()
    det = pipe.detector()
    print(f"model {model}")
    looks: Counter[tuple[str, str]] = Counter()
    edges: Counter[tuple[str, str]] = Counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        print_variants(seed, *run_seed(det, seed, args, looks, edges))
    print_edge_distances(edges)
    kinds = sorted({k for k, _ in looks})
    found = ["none", "one", "two or more"]
    print(
        f"\nsecond look: same-slice pairs of one class overlapping >= {PAIR_IOS} of the smaller "
        f"box, a {args.crop} px crop {args.shift} px off the slice's grid, boxes found on the pair"
    )
    rows = [[k, *(looks[(k, f)] for f in found)] for k in kinds]
    print(table(["the pair is", *found], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
