"""Detection quality and speed of nesydet.pipeline on the held-out large synthetic scenes.

Prints four tables (run with ``python -m bench.quality``; generates var/heldout if missing):

(a) SAHI sliced inference vs one full-image prediction at the model's training size;
(b) with vs without Prolog reasoning on held-out plain scenes and on the same scenes with
    look-alikes (``--lookalikes``), seed --reason-seed: precision, recall, mAP50, per rule how
    often it fired and which true and false detections it dropped, and the time of the context
    map and of reasoning (per image, per 1,000 detections, on a dense car park);
(c) duplicates at slice borders: no merge, our rotated NMS, + border merge, SAHI's merge;
(d) seconds per image by stage, and reasoning time for 1,000 detections.

Metrics match predictions to ground truth by exact rotated IoU >= 0.5 (nesydet eval).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from train_demo_model import offline_env  # type: ignore[import-not-found,unused-ignore]  # noqa: E402

from bench._reasoning import gt_boxes, reasoning_section  # noqa: E402

offline_env(ROOT / "var" / "yolo_cfg")  # before anything imports ultralytics

from nesydet.pipeline import Pipeline, PipelineConfig, ReasoningConfig, SahiConfig  # noqa: E402
from nesydet.pipeline import geometry as geo  # noqa: E402
from nesydet.pipeline.config import VisualizationConfig  # noqa: E402
from nesydet.pipeline.detector import Detector  # noqa: E402
from nesydet.pipeline.evaluate import EvalResult, ImageBoxes, evaluate  # noqa: E402
from nesydet.pipeline.image_io import load_image  # noqa: E402
from nesydet.pipeline.nms import BORDER_IOS, merge_slices  # noqa: E402
from nesydet.pipeline.reasoning.facts import build_facts  # noqa: E402
from nesydet.pipeline.types import Detection, RawDetections  # noqa: E402

HELDOUT = ROOT / "var" / "heldout"
MODEL = "nesydet-demo-obb.pt"
SLICE = 640
OVERLAP = 0.2
CONF = 0.25
IOU = 0.45
NO_VIS = VisualizationConfig(enabled=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Returns a fixed-width text table."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "-" * len(line)]
    out += [
        "  ".join(
            c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    return "\n".join(out)


def ensure_heldout() -> list[Path]:
    """Returns the held-out images, rendering them first when missing."""
    images = sorted((HELDOUT / "images").glob("*.png"))
    if not images:
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "make_demo_dataset.py"),
                "--heldout",
                "--out",
                str(HELDOUT),
            ],
            check=True,
        )
        images = sorted((HELDOUT / "images").glob("*.png"))
    return images


def det_boxes(dets: Sequence[Detection], w: int, h: int) -> ImageBoxes:
    """Returns detections as normalised polygons for evaluation."""
    polys = [
        d.polygon
        or [
            (d.bbox[0], d.bbox[1]),
            (d.bbox[2], d.bbox[1]),
            (d.bbox[2], d.bbox[3]),
            (d.bbox[0], d.bbox[3]),
        ]
        for d in dets
    ]
    arr = np.array(polys, dtype=np.float64).reshape(-1, 4, 2) / np.array([w, h])
    return ImageBoxes(
        arr,
        np.array([d.class_id for d in dets], dtype=np.int64),
        np.array([d.confidence for d in dets]),
    )


def raw_boxes(raw: RawDetections, w: int, h: int) -> ImageBoxes:
    """Returns raw OBB detections as normalised polygons."""
    assert raw.obb is not None
    polys = geo.obb_to_polygons(raw.obb) / np.array([w, h])
    return ImageBoxes(polys, raw.classes, raw.scores)


def metrics_row(name: str, ev: EvalResult, extra: Sequence[object] = ()) -> list[object]:
    return [name, ev.n_pred, ev.precision, ev.recall, ev.map50, *extra]


def border_duplicates(
    pred: ImageBoxes,
    gt: ImageBoxes,
    windows: list[geo.Window],
    w: int,
    h: int,
    sources: npt.NDArray[np.int64] | None = None,
) -> tuple[int, int, int, int, int, int, int]:
    """Returns (ground-truth objects cut by a slice edge, how many were found, found twice or
    more, found twice or more by boxes of one slice only, objects cut by no slice edge, of
    those found twice or more, of the one-slice doubles those whose slice cuts the object).

    A prediction "covers" an object when it has its class and IoU >= 0.3 or lies >= 60 %
    inside it (a truncated partial box). `sources` (the slice of each prediction) tells the
    model's own double boxes, made inside one slice, from duplicates made by slicing; without
    it the fourth and last counts are 0. A one-slice double on an object that slice sees
    whole is the model's own; one on an object the slice's edge cuts is made by the border.
    The fifth and sixth give the rate of the model's double boxes where slicing plays no
    part, the floor under the rate on cut objects.
    """
    gp = gt.polygons * np.array([w, h])
    pp = pred.polygons * np.array([w, h])
    env = geo.polygon_envelopes(gp)
    cut_by = np.zeros((len(windows), len(gp)), dtype=bool)
    for k, win in enumerate(windows):
        x0, y0, x1, y1 = win
        hits = (env[:, 0] < x1) & (env[:, 2] > x0) & (env[:, 1] < y1) & (env[:, 3] > y0)
        cut_by[k] = (
            hits
            & geo.edge_truncated(env, win, w, h, tol=0.0)
            & ~((env[:, 0] >= x0) & (env[:, 2] <= x1) & (env[:, 1] >= y0) & (env[:, 3] <= y1))
        )
    cut = cut_by.any(axis=0)
    n, n_whole = int(cut.sum()), int((~cut).sum())
    if len(gp) == 0 or len(pp) == 0:
        return n, 0, 0, 0, n_whole, 0, 0
    a, b = covering_pairs(gp, gt.classes, pp, pred.classes)
    cover = Counter(a.tolist())
    twice = {o for o, c in cover.items() if c >= 2}
    one_slice: list[int] = []
    in_cut_view = 0
    if sources is not None:
        slices: dict[int, set[int]] = {}
        for obj, box in zip(a.tolist(), b.tolist(), strict=True):
            slices.setdefault(obj, set()).add(int(sources[box]))
        one_slice = [o for o in twice if cut[o] and len(slices[o]) == 1]
        in_cut_view = sum(1 for o in one_slice if cut_by[next(iter(slices[o])), o])
    found = sum(1 for o in cover if cut[o])
    return (
        n,
        found,
        sum(1 for o in twice if cut[o]),
        len(one_slice),
        n_whole,
        sum(1 for o in twice if not cut[o]),
        in_cut_view,
    )


def covering_pairs(
    gp: npt.NDArray[np.float64],
    g_cls: npt.NDArray[np.int64],
    pp: npt.NDArray[np.float64],
    p_cls: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Returns (object, prediction) index pairs where the prediction covers the object."""
    n = len(gp)
    boxes = np.concatenate([geo.polygon_envelopes(gp), geo.polygon_envelopes(pp)])
    i, j = geo.candidate_pairs(boxes)
    a, b = np.where(i < n, i, j), np.where(i < n, j, i)
    ok = (a < n) & (b >= n)
    a, b = a[ok], b[ok] - n
    same = g_cls[a] == p_cls[b]
    a, b = a[same], b[same]
    inter = geo.polygon_intersections(gp[a], pp[b])
    ga, pa = geo.polygon_areas(gp[a]), geo.polygon_areas(pp[b])
    iou = geo.iou_from_parts(inter, ga, pa)
    inside = np.divide(inter, pa, out=np.zeros_like(inter), where=pa > 0)
    hit = (iou >= 0.3) | (inside >= 0.6)
    return a[hit], b[hit]


def sahi_postprocess(model_path: Path, images: list[Path]) -> list[ImageBoxes]:
    """Returns SAHI's own sliced prediction + merge (its defaults for OBB: NMS on IOS 0.5)."""
    from sahi.models.ultralytics import UltralyticsDetectionModel
    from sahi.predict import get_sliced_prediction

    model = UltralyticsDetectionModel(
        model_path=str(model_path), confidence_threshold=CONF, device="cpu", image_size=SLICE
    )
    out = []
    for path in images:
        arr = np.asarray(load_image(path))
        h, w = arr.shape[:2]
        res = get_sliced_prediction(
            arr,
            model,
            slice_height=SLICE,
            slice_width=SLICE,
            overlap_height_ratio=OVERLAP,
            overlap_width_ratio=OVERLAP,
            perform_standard_pred=False,
            verbose=0,
            batch_size=4,
        )
        polys, classes, scores = [], [], []
        for op in res.object_prediction_list:
            assert op.mask is not None  # OBB predictions carry their corners as a polygon mask
            seg = np.asarray(op.mask.segmentation[0], dtype=np.float64).reshape(-1, 2)
            polys.append(
                seg[:4] if len(seg) >= 4 else geo.xyxy_to_polygons(np.array([op.bbox.to_xyxy()]))[0]
            )
            classes.append(op.category.id)
            scores.append(op.score.value)
        arr_p = np.array(polys, dtype=np.float64).reshape(-1, 4, 2) / np.array([w, h])
        out.append(
            ImageBoxes(arr_p, np.array(classes, dtype=np.int64), np.array(scores, dtype=np.float64))
        )
    return out


def rules_load_speed(repeats: int = 5) -> tuple[float, float]:
    """Returns median seconds to load rules/dota.pl cold (read, compile, sandbox check) and
    to get it from the (path, mtime) cache."""
    from nesydet.pipeline.reasoning.engine import PrologReasoner

    cold, warm = [], []
    for _ in range(repeats):
        reasoner = PrologReasoner(ROOT / "rules")
        t0 = time.perf_counter()
        reasoner.load("dota.pl")
        t1 = time.perf_counter()
        reasoner.load("dota.pl")
        t2 = time.perf_counter()
        cold.append(t1 - t0)
        warm.append(t2 - t1)
    return statistics.median(cold), statistics.median(warm)


def reasoning_speed(pipe: Pipeline, n: int = 1000, repeats: int = 7) -> tuple[float, float]:
    """Returns median seconds (facts in numpy, Prolog decide) for n random OBB detections.

    The facts are those the pipeline sends for rules/dota.pl, context facts included, from
    the surface map of a real held-out scene (the context map itself is timed apart).
    """
    rng = np.random.default_rng(0)
    names = ["small_vehicle", "large_vehicle", "ship", "harbor", "plane", "storage_tank"]
    cls = [names[k] for k in rng.integers(0, len(names), n)]
    c = rng.uniform(0, 3000, (n, 2))
    obb = np.column_stack(
        [c, rng.uniform(10, 45, n), rng.uniform(5, 20, n), rng.uniform(0, np.pi, n)]
    )
    polys = geo.obb_to_polygons(obb)
    env = geo.polygon_envelopes(polys)
    scores = rng.uniform(0.12, 1.0, n)
    wanted = pipe.reasoner.facts_used("dota.pl")
    scene = np.asarray(load_image(ensure_heldout()[0]).resize((3000, 3000)))
    ctx = pipe.scene_context(scene)

    def facts_now() -> str:
        return build_facts(cls, scores, env, polys, (3000, 3000), CONF, context=ctx, wanted=wanted)

    facts_t, prolog_t = [], []
    pipe.reasoner.decide("dota.pl", facts_now(), n, set(names))
    for _ in range(repeats):
        t0 = time.perf_counter()
        facts = facts_now()
        t1 = time.perf_counter()
        pipe.reasoner.decide("dota.pl", facts, n, set(names))
        t2 = time.perf_counter()
        facts_t.append(t1 - t0)
        prolog_t.append(t2 - t1)
    return statistics.median(facts_t), statistics.median(prolog_t)


def onnx_section(
    images: list[Path], gts: list[ImageBoxes], torch_boxes: list[ImageBoxes], torch_t: list[float]
) -> None:
    """Prints (e): the same SAHI run with the model exported to ONNX (onnxruntime)."""
    from export_onnx import export_onnx  # type: ignore[import-not-found,unused-ignore]

    onnx_dir = ROOT / "var" / "onnx"
    onnx_path = onnx_dir / MODEL.replace(".pt", ".onnx")
    src = ROOT / "models" / MODEL
    if not onnx_path.exists() or onnx_path.stat().st_mtime < src.stat().st_mtime:
        export_onnx(src, onnx_path)
    pipe = Pipeline(onnx_dir, ROOT / "rules", default_model=onnx_path.name, device="cpu")
    pipe.warmup()
    boxes, times = [], []
    cfg = PipelineConfig(symbolic_reasoning=ReasoningConfig(enabled=False), visualization=NO_VIS)
    for path in images:
        img = load_image(path)
        res = pipe.run(img, cfg)
        times.append(res.timings["inference"])
        boxes.append(det_boxes(res.detections, *img.size))
    ev_t, ev_o = evaluate(torch_boxes, gts), evaluate(boxes, gts)
    print("\n(e) the same SAHI inference, torch vs onnxruntime (scripts/export_onnx.py)")
    rows = [
        ["torch (.pt)", statistics.mean(torch_t), ev_t.recall, ev_t.map50],
        ["onnxruntime (.onnx)", statistics.mean(times), ev_o.recall, ev_o.map50],
    ]
    print(table(["backend", "inference s/img", "recall", "mAP50"], rows))
    print(f"speed-up: {statistics.mean(torch_t) / statistics.mean(times):.2f}x")


RUN_KEYS = (
    "full",
    "sahi",
    "sahi_reason",
    "sahi_reason_lift",
    "raw",
    "nms",
    "nms_border_06",
    "nms_border",
)
TIMED_KEYS = ("full", "sahi", "sahi_reason")
MERGE_KEYS = ("raw", "nms", "nms_border_06", "nms_border", "sahi_reason")


@dataclass
class HeldoutRuns:
    """What the pipeline gave on the held-out scenes, one entry per scene in scene order."""

    boxes: dict[str, list[ImageBoxes]] = field(default_factory=lambda: {k: [] for k in RUN_KEYS})
    secs: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in TIMED_KEYS})
    stage_t: dict[str, list[float]] = field(default_factory=dict)
    torch_inference_s: list[float] = field(default_factory=list)
    dup: dict[str, list[tuple[int, int, int, int, int, int]]] = field(
        default_factory=lambda: {k: [] for k in MERGE_KEYS}
    )
    fired: Counter[str] = field(default_factory=Counter)
    sizes: list[str] = field(default_factory=list)
    mpix: float = 0.0
    kept_low: int = 0
    dropped: int = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Returns the command-line options."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--limit", type=int, default=0, help="use only the first N held-out scenes")
    ap.add_argument("--no-sahi-merge", action="store_true", help="skip SAHI's own pipeline in (c)")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX comparison (e)")
    ap.add_argument(
        "--reason-seed", type=int, default=4, help="held-out seed of (b) (1 and 2 tuned the rules)"
    )
    ap.add_argument("--reason-count", type=int, default=6, help="scenes per set in (b)")
    ap.add_argument("--only-reasoning", action="store_true", help="run (b) only")
    return ap.parse_args(argv)


def run_configs(pipe: Pipeline, img: Image.Image, runs: HeldoutRuns) -> None:
    """Adds to runs one scene through full-image, SAHI, and SAHI + reasoning, each timed."""
    w, h = img.size
    off = ReasoningConfig(enabled=False)
    cfgs = {
        "full": PipelineConfig(
            sahi=SahiConfig(enabled=False), symbolic_reasoning=off, visualization=NO_VIS
        ),
        "sahi": PipelineConfig(symbolic_reasoning=off, visualization=NO_VIS),
        "sahi_reason": PipelineConfig(),
    }
    for key, cfg in cfgs.items():
        t = time.perf_counter()
        res = pipe.run(img, cfg)
        runs.secs[key].append(time.perf_counter() - t)
        runs.boxes[key].append(det_boxes(res.detections, w, h))
        if key == "sahi":
            runs.torch_inference_s.append(res.timings["inference"])
        if key == "sahi_reason":
            for stage, v in res.timings.items():
                runs.stage_t.setdefault(stage, []).append(v)
            for d in res.detections + res.dropped:
                assert d.reasoning is not None
                runs.fired.update(d.reasoning.rules_fired)
            runs.dropped += len(res.dropped)


def run_lift(lift: Pipeline, img: Image.Image, runs: HeldoutRuns) -> None:
    """Adds to runs one scene through the lifting pipeline, and how many it lifted."""
    w, h = img.size
    res = lift.run(img, PipelineConfig(visualization=NO_VIS))
    runs.boxes["sahi_reason_lift"].append(det_boxes(res.detections, w, h))
    runs.kept_low += sum(
        d.reasoning is not None and d.reasoning.original_confidence < CONF for d in res.detections
    )


def sliced_pass(
    det: Detector, img: Image.Image
) -> tuple[list[geo.Window], dict[str, tuple[RawDetections, npt.NDArray[np.int64]]]]:
    """Returns the slice windows and one sliced pass of the model merged four ways, each with
    the slice of every kept box."""
    w, h = img.size
    arr = np.asarray(img)
    windows = geo.slice_windows(w, h, SLICE, SLICE, OVERLAP)
    parts: list[RawDetections] = []
    flags: list[npt.NDArray[np.bool_]] = []
    srcs: list[npt.NDArray[np.int64]] = []
    for k in range(0, len(windows), 4):
        chunk = windows[k : k + 4]
        outs = det.predict_batch(
            [arr[y0:y1, x0:x1] for x0, y0, x1, y1 in chunk], CONF, iou=IOU, imgsz=SLICE
        )
        for win, r in zip(chunk, outs, strict=True):
            s = r.shifted(win[0], win[1])
            assert s.obb is not None
            srcs.append(np.full(len(s), len(parts), dtype=np.int64))
            parts.append(s)
            flags.append(
                geo.edge_truncated(geo.polygon_envelopes(geo.obb_to_polygons(s.obb)), win, w, h)
            )
    raw = RawDetections.concat(parts, oriented=True)
    trunc, src = np.concatenate(flags), np.concatenate(srcs)
    keeps = {
        "raw": np.arange(len(raw)),
        "nms": merge_slices(raw, iou_threshold=IOU, border_ios=None),
        "nms_border_06": merge_slices(
            raw, iou_threshold=IOU, truncated=trunc, border_ios=0.6, sources=src
        ),
        "nms_border": merge_slices(
            raw, iou_threshold=IOU, truncated=trunc, border_ios=BORDER_IOS, sources=src
        ),
    }
    return windows, {k: (raw.take(keep), src[keep]) for k, keep in keeps.items()}


def collect_runs(
    pipe: Pipeline, lift: Pipeline, det: Detector, images: list[Path], gts: list[ImageBoxes]
) -> HeldoutRuns:
    """Returns every run of the pipeline over the held-out scenes; prints progress per scene."""
    runs = HeldoutRuns()
    print(
        f"held-out: {len(images)} scenes, {sum(len(g.classes) for g in gts)} objects; "
        f"model {MODEL}",
        flush=True,
    )
    for path, gt in zip(images, gts, strict=True):
        img = load_image(path)
        w, h = img.size
        runs.sizes.append(f"{w}x{h}")
        runs.mpix += w * h / 1e6
        run_configs(pipe, img, runs)
        run_lift(lift, img, runs)
        # (c): one sliced pass through the same model, merged three ways
        windows, variants = sliced_pass(det, img)
        for key, (r, src) in variants.items():
            boxes = raw_boxes(r, w, h)
            runs.boxes[key].append(boxes)
            runs.dup[key].append(border_duplicates(boxes, gt, windows, w, h, src))
        # what a client gets: the pipeline's own slices, merge and reasoning (no slice ids)
        runs.dup["sahi_reason"].append(
            border_duplicates(runs.boxes["sahi_reason"][-1], gt, windows, w, h)
        )
        print(
            f"  {path.name} {w}x{h}: {len(gt.classes)} objects, {len(windows)} slices", flush=True
        )
    return runs


def print_sahi_vs_full(ev: dict[str, EvalResult], runs: HeldoutRuns, imgsz: int) -> None:
    """Prints (a): SAHI sliced inference vs one full-image prediction."""
    print("\n(a) SAHI sliced inference vs one full-image prediction (reasoning off, conf 0.25)")
    rows = [
        metrics_row(f"full image @ {imgsz}px", ev["full"], [statistics.mean(runs.secs["full"])]),
        metrics_row(
            f"SAHI {SLICE}px, overlap {OVERLAP}", ev["sahi"], [statistics.mean(runs.secs["sahi"])]
        ),
    ]
    print(table(["method", "preds", "precision", "recall", "mAP50", "s/img"], rows))
    print(f"recall gain: {100 * (ev['sahi'].recall - ev['full'].recall):+.1f} points")


def class_rows(
    names: Mapping[int, str], before: EvalResult, after: EvalResult
) -> list[list[object]]:
    """Returns per-class rows (gt, recall and precision before and after) for classes with gt."""
    per: list[list[object]] = []
    for c, m in after.per_class.items():
        if m.n_gt:
            b = before.per_class.get(c)
            per.append(
                [
                    names[c],
                    m.n_gt,
                    b.recall if b else 0.0,
                    m.recall,
                    b.precision if b else 0.0,
                    m.precision,
                ]
            )
    return per


def print_reasoning(ev: dict[str, EvalResult], runs: HeldoutRuns, names: Mapping[int, str]) -> None:
    """Prints (b0): SAHI with and without Prolog reasoning on the scenes of (a), per class."""
    print("\n(b0) Prolog reasoning (rules/dota.pl) on top of SAHI, the scenes of (a)")
    rows = [
        metrics_row("without reasoning", ev["sahi"]),
        metrics_row("with reasoning (default: re-score, drop)", ev["sahi_reason"]),
        metrics_row("with reasoning + lift candidates >= 0.5 x conf", ev["sahi_reason_lift"]),
    ]
    print(table(["method", "preds", "precision", "recall", "mAP50"], rows))
    per = class_rows(names, ev["sahi"], ev["sahi_reason"])
    print(table(["class", "gt", "R before", "R after", "P before", "P after"], per))
    print(
        f"dropped by rules (default): {runs.dropped}; "
        f"lifted above {CONF} by a boost (lift run): {runs.kept_low}"
    )
    print("rules fired: " + ", ".join(f"{k} {v}" for k, v in runs.fired.most_common()))


def sahi_merge_duplicates(
    model_path: Path, images: list[Path], gts: list[ImageBoxes]
) -> tuple[list[tuple[int, int, int, int]], EvalResult]:
    """Returns SAHI's own merge: its border duplicates per scene and its metrics."""
    sahi_boxes = sahi_postprocess(model_path, images)
    dup = []
    for path, gt, boxes in zip(images, gts, sahi_boxes, strict=True):
        w, h = load_image(path).size
        dup.append(
            border_duplicates(boxes, gt, geo.slice_windows(w, h, SLICE, SLICE, OVERLAP), w, h)
        )
    return dup, evaluate(sahi_boxes, gts)


def print_border_duplicates(
    ev: dict[str, EvalResult],
    runs: HeldoutRuns,
    images: list[Path],
    gts: list[ImageBoxes],
    sahi_model: Path | None,
) -> None:
    """Prints (c): duplicates at slice borders for each way of merging, SAHI's if sahi_model."""
    print("\n(c) duplicates at slice borders (objects cut by a slice edge, found twice or more)")
    ev, dup = dict(ev), dict(runs.dup)
    if sahi_model is not None:
        dup["sahi_merge"], ev["sahi_merge"] = sahi_merge_duplicates(sahi_model, images, gts)
    labels = {
        "raw": "no cross-slice merge",
        "nms": "rotated NMS (IoU 0.45)",
        "nms_border_06": "rotated NMS + border merge (IoS 0.6, before)",
        "nms_border": f"rotated NMS + border merge (IoS {BORDER_IOS}, now)",
        "sahi_reason": "pipeline output (border merge, then reasoning)",
        "sahi_merge": "SAHI merge (NMS, IOS 0.5, axis-aligned)",
    }
    no_sources = ("sahi_merge", "sahi_reason")
    rows: list[list[object]] = []
    for key, label in labels.items():
        if not dup.get(key):
            continue
        n, found, twice, one, whole, whole_twice, one_cut = (
            sum(x[i] for x in dup[key]) for i in range(7)
        )
        split = key not in no_sources
        border = twice - one + one_cut
        rows.append(
            [
                label,
                n,
                found,
                twice,
                f"{100 * twice / max(n, 1):.2f}%",
                twice - one if split else "-",
                one_cut if split else "-",
                one - one_cut if split else "-",
                f"{100 * border / max(n, 1):.2f}%" if split else "-",
                f"{100 * whole_twice / max(whole, 1):.2f}%",
                ev[key].recall,
                ev[key].precision,
            ]
        )
    headers = ["merge", "cut objs", "found", "duplicated", "of cut", "by slicing"]
    headers += ["one slice, cut", "one slice, whole", "made by borders"]
    print(table([*headers, "uncut twice", "recall", "precision"], rows))
    print(
        "of cut: duplicated / cut objects; by slicing: boxes of two or more slices on one cut "
        "object; one slice, cut / whole: two boxes of one slice, which cuts the object / sees "
        "it whole (the model's own double box, as on objects no edge cuts); made by borders: "
        "(by slicing + one slice, cut) / cut objects; uncut twice: the share of objects cut "
        "by no slice edge that are found twice, the model's double boxes where slicing plays "
        "no part"
    )


def print_stage_times(runs: HeldoutRuns, pipe: Pipeline, n_images: int) -> None:
    """Prints (d): seconds per image by stage, rules loading and reasoning on 1,000 detections."""
    print("\n(d) time per image by stage (SAHI + reasoning + visualization), seconds")
    total = runs.secs["sahi_reason"]
    rows: list[list[object]] = [
        [stage, statistics.mean(v), max(v)] for stage, v in runs.stage_t.items()
    ]
    rows.append(["total (run)", statistics.mean(total), max(total)])
    print(table(["stage", "mean", "max"], rows))
    per_mp = sum(runs.stage_t["inference"]) / runs.mpix
    print(
        f"images: {', '.join(runs.sizes)} ({runs.mpix / n_images:.1f} MP mean); "
        f"inference {per_mp:.2f} s/MP"
    )
    facts_s, prolog_s = reasoning_speed(pipe)
    cold_s, warm_s = rules_load_speed()
    print(f"rules file dota.pl: load {1000 * cold_s:.1f} ms cold, {1000 * warm_s:.2f} ms cached")
    total_ms = 1000 * (facts_s + prolog_s)
    print(
        f"reasoning, 1000 detections: facts {1000 * facts_s:.1f} ms"
        f" + Prolog {1000 * prolog_s:.1f} ms"
        f" = {total_ms:.1f} ms (target < 50 ms)"
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints the tables; returns the exit code."""
    args = parse_args(argv)
    pipe = Pipeline(
        ROOT / "models", ROOT / "rules", default_model=MODEL, device="cpu", backend="torch"
    )
    pipe.warmup()
    gc.freeze()  # as a worker does after its warm-up (nesydet.tasks.runtime)
    if args.only_reasoning:
        reasoning_section(pipe, args.reason_seed, args.reason_count, args.limit)
        return 0
    images = ensure_heldout()[: args.limit or None]
    det = pipe.detector()
    # Same rules, but candidates down to half the threshold may be lifted by a boost.
    lift = Pipeline(
        ROOT / "models", ROOT / "rules", default_model=MODEL, device="cpu", candidate_factor=0.5
    )
    gts = [gt_boxes(p) for p in images]
    runs = collect_runs(pipe, lift, det, images, gts)
    ev = {k: evaluate(v, gts) for k, v in runs.boxes.items()}
    print_sahi_vs_full(ev, runs, det.imgsz)
    print_reasoning(ev, runs, det.names)
    reasoning_section(pipe, args.reason_seed, args.reason_count, args.limit)
    sahi_model = None if args.no_sahi_merge else pipe.models_dir / MODEL
    print_border_duplicates(ev, runs, images, gts, sahi_model)
    print_stage_times(runs, pipe, len(images))
    if not args.no_onnx:
        onnx_section(images, gts, runs.boxes["sahi"], runs.torch_inference_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
