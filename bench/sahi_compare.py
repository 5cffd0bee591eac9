"""nesydet's default pipeline side by side with stock SAHI, same scenes, same ``.pt``.

Stock SAHI is ``sahi.predict.get_sliced_prediction`` with its own Ultralytics model wrapper on
models/nesydet-demo-obb.pt: the same slice size (640) and overlap (0.2), the standard
full-image prediction off, its own merge (GREEDYNMM on IOS 0.5), its default batch size.
nesydet runs its default ``Pipeline`` (backend ``auto``, which picks onnxruntime on the
cached export when it matches torch; SAHI slicing, rotated NMS with the border merge, Prolog
reasoning, the annotated image) and, for reference, the same pipeline on torch. Both read the
image file and write YOLO label files (``file in, labels out``); the systems take turns on
every scene, in an order that alternates, so that noise from the machine weighs on all of
them. Torch gets every core in all runs (ultralytics would leave SAHI one core fewer).

Prints seconds per image end to end (mean and median) and per stage (means), recall, mAP50
(rotated IoU >= 0.5, ``nesydet eval``'s matcher) and border duplicates (ground-truth objects
cut by a slice edge that end up with two or more boxes), then the speed-up against the
target: at least 2x faster than stock SAHI with recall within 0.01, and the most any work
outside nesydet's forward pass could give (stock SAHI's time over that pass alone). A last
line sets the inference stage's arithmetic rate (the model's GFLOP per slice times slices
per second) against a float32 matrix product on the same cores, the rate this CPU's vector
units reach.

    .venv/bin/python -m bench.sahi_compare                 # first 3 held-out scenes, 1 round
    .venv/bin/python -m bench.sahi_compare --limit 6 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.quality import (
    CONF,
    MODEL,
    OVERLAP,
    ROOT,
    SLICE,
    border_duplicates,
    det_boxes,
    ensure_heldout,
    gt_boxes,
    table,
)
from nesydet.pipeline import Pipeline, PipelineConfig, export
from nesydet.pipeline import geometry as geo
from nesydet.pipeline.detector import set_cpu_threads
from nesydet.pipeline.evaluate import ImageBoxes, evaluate
from nesydet.pipeline.image_io import load_image

SPEEDUP_TARGET = 2.0
RECALL_TOLERANCE = 0.01
THREADS = os.cpu_count() or 1


@dataclass
class Runs:
    """One system's runs: seconds per image end to end and by stage, and its boxes."""

    total: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    boxes: dict[str, ImageBoxes] = field(default_factory=dict)  # by scene, last round


Run = Callable[[Path, Path], tuple[ImageBoxes, dict[str, float]]]


def sahi_system() -> Run:
    """Returns stock SAHI as a run: image file in, YOLO label file out."""
    from sahi.models.ultralytics import UltralyticsDetectionModel
    from sahi.predict import get_sliced_prediction

    model = UltralyticsDetectionModel(
        model_path=str(ROOT / "models" / MODEL),
        confidence_threshold=CONF,
        device="cpu",
        image_size=SLICE,
    )

    def run(image: Path, labels: Path) -> tuple[ImageBoxes, dict[str, float]]:
        set_cpu_threads(THREADS)
        res = get_sliced_prediction(
            str(image),
            model,
            slice_height=SLICE,
            slice_width=SLICE,
            overlap_height_ratio=OVERLAP,
            overlap_width_ratio=OVERLAP,
            perform_standard_pred=False,
            verbose=0,
        )
        t0 = time.perf_counter()
        w, h = res.image_width, res.image_height
        polys, classes, scores = [], [], []
        for op in res.object_prediction_list:
            seg = (
                np.asarray(op.mask.segmentation[0], dtype=np.float64).reshape(-1, 2)
                if op.mask is not None
                else np.zeros((0, 2))
            )
            polys.append(
                seg[:4] if len(seg) >= 4 else geo.xyxy_to_polygons(np.array([op.bbox.to_xyxy()]))[0]
            )
            classes.append(op.category.id)
            scores.append(op.score.value)
        norm = np.array(polys, dtype=np.float64).reshape(-1, 4, 2) / np.array([w, h])
        labels.write_text(
            "".join(
                f"{c} " + " ".join(f"{v:.6f}" for v in p.reshape(-1)) + f" {s:.4f}\n"
                for c, p, s in zip(classes, norm, scores, strict=True)
            )
        )
        d = res.durations_in_seconds
        stages = {
            "read+slice": d["slice"],
            "inference": d["prediction"],
            "merge": d["postprocess"],
            "labels": time.perf_counter() - t0,
        }
        boxes = ImageBoxes(norm, np.array(classes, dtype=np.int64), np.array(scores))
        return boxes, stages

    return run


def nesydet_system(backend: str) -> tuple[Run, Pipeline]:
    """Returns nesydet's default pipeline on `backend` as a run, and the pipeline."""
    pipe = Pipeline(
        ROOT / "models",
        ROOT / "rules",
        default_model=MODEL,
        device="cpu",
        backend=backend,
        cpu_threads=THREADS,
    )
    pipe.warmup()
    config = PipelineConfig()

    def run(image: Path, labels: Path) -> tuple[ImageBoxes, dict[str, float]]:
        t0 = time.perf_counter()
        img = load_image(image)
        read = time.perf_counter() - t0
        res = pipe.run(img, config)
        t1 = time.perf_counter()
        w, h = res.image_size
        labels.write_text(export.to_yolo(res.detections, w, h))
        stages = {
            "read+slice": read,
            "inference": res.timings["inference"],
            "merge": res.timings["nms"],
            "reasoning": res.timings["reasoning"],
            "visualization": res.timings["visualization"],
            "labels": time.perf_counter() - t1,
        }
        return det_boxes(res.detections, w, h), stages

    return run, pipe


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Returns the command-line options."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--limit", type=int, default=3, help="held-out scenes to use (0: all six)")
    ap.add_argument("--rounds", type=int, default=1, help="timed passes over the scenes")
    ap.add_argument("--no-torch", action="store_true", help="skip nesydet on torch (reference)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the comparison and prints its table; returns the exit code."""
    args = parse_args(argv)
    images = ensure_heldout()[: args.limit or None]
    gts = {p.name: gt_boxes(p) for p in images}
    systems: dict[str, Run] = {"stock SAHI 0.12.8 (torch)": sahi_system()}
    default_run, pipe = nesydet_system("auto")
    systems["nesydet default (auto)"] = default_run
    if not args.no_torch:
        systems["nesydet on torch"] = nesydet_system("torch")[0]
    assert pipe.backends is not None
    for path, choice in pipe.backends.choices.items():
        print(f"backend chosen by auto for {path.name}: {choice.backend} ({choice.reason})")
    warm = images[0]
    runs = {name: Runs() for name in systems}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for run in systems.values():  # untimed: model set-up, first-call allocations
            run(warm, out / "warm.txt")
        order = list(systems)
        for rnd in range(args.rounds):
            for k, path in enumerate(images):
                turn = order if (rnd * len(images) + k) % 2 == 0 else order[::-1]
                for name in turn:
                    t0 = time.perf_counter()
                    boxes, stages = systems[name](path, out / f"{path.stem}.txt")
                    runs[name].total.append(time.perf_counter() - t0)
                    for stage, secs in stages.items():
                        runs[name].stages[stage].append(secs)
                    runs[name].boxes[path.name] = boxes
                print(
                    f"  round {rnd + 1} {path.name}: "
                    + ", ".join(f"{n} {runs[n].total[-1]:.2f} s" for n in turn),
                    flush=True,
                )
    print_table(images, gts, runs)
    return 0


def print_table(images: list[Path], gts: dict[str, ImageBoxes], runs: dict[str, Runs]) -> None:
    """Prints the side-by-side table and the verdict against the targets."""
    sizes = [load_image(p).size for p in images]
    mpix = statistics.mean(w * h / 1e6 for w, h in sizes)
    print(
        f"\n{len(images)} held-out scenes ({', '.join(f'{w}x{h}' for w, h in sizes)}; "
        f"mean {mpix:.1f} MP), slices {SLICE} px overlap {OVERLAP}, conf {CONF}, "
        f"{THREADS} CPU threads, model {MODEL}"
    )
    stage_names = ["read+slice", "inference", "merge", "reasoning", "visualization", "labels"]
    rows = []
    recall: dict[str, float] = {}
    for name, r in runs.items():
        names = [p.name for p in images]
        ev = evaluate([r.boxes[n] for n in names], [gts[n] for n in names])
        recall[name] = ev.recall
        dups = cut = 0
        for p, (w, h) in zip(images, sizes, strict=True):
            windows = geo.slice_windows(w, h, SLICE, SLICE, OVERLAP)
            n_cut, _, twice, *_ = border_duplicates(r.boxes[p.name], gts[p.name], windows, w, h)
            cut, dups = cut + n_cut, dups + twice
        per_stage = [statistics.mean(r.stages[s]) if s in r.stages else "-" for s in stage_names]
        totals = [statistics.mean(r.total), statistics.median(r.total)]
        rows.append([name, *totals, *per_stage, ev.recall, ev.map50, f"{dups}/{cut}"])
    headers = ["system", "s/img", "median", *stage_names, "recall", "mAP50", "border dups/cut"]
    print(table(headers, rows))
    sahi, ours = list(runs)[:2]
    speedup = statistics.mean(runs[sahi].total) / statistics.mean(runs[ours].total)
    # Each scene's two runs came one right after the other: their ratio is what a burst of
    # load from elsewhere on the machine disturbs least; the median ignores a disturbed pair.
    paired = statistics.median(
        a / b for a, b in zip(runs[sahi].total, runs[ours].total, strict=True)
    )
    gap = recall[ours] - recall[sahi]
    print(
        f"speed-up of {ours} over {sahi}: {speedup:.2f}x on the mean s/img, {paired:.2f}x "
        f"median of the per-scene ratios (target >= {SPEEDUP_TARGET:.1f}x: "
        f"{'met' if min(speedup, paired) >= SPEEDUP_TARGET else 'NOT met'})"
    )
    print(
        f"recall difference: {gap:+.3f} (target: not below -{RECALL_TOLERANCE}: "
        f"{'met' if gap >= -RECALL_TOLERANCE else 'NOT met'})"
    )
    forward = statistics.mean(runs[ours].stages["inference"])
    print(
        f"bound: {statistics.mean(runs[sahi].total) / forward:.2f}x if everything but "
        f"{ours}'s forward pass ({forward:.3f} s/img) took no time"
    )
    print_compute(sizes, runs)


def print_compute(sizes: list[tuple[int, int]], runs: dict[str, Runs]) -> None:
    """Prints the arithmetic rate of each system's inference stage against a float32 matrix
    product on the same cores: how far from the machine's limit each one runs."""
    gflop = slice_gflop()
    slices = statistics.mean(len(geo.slice_windows(w, h, SLICE, SLICE, OVERLAP)) for w, h in sizes)
    rates = [
        f"{name} {gflop * slices / statistics.mean(r.stages['inference']):.0f}"
        for name, r in runs.items()
        if r.stages.get("inference")
    ]
    print(
        f"compute: the model costs {gflop:.2f} GFLOP per {SLICE} px slice (ultralytics' count), "
        f"{slices:.1f} slices per scene; inference stage in GFLOP/s: {', '.join(rates)}; "
        f"a float32 matrix product on the same {THREADS} cores: {matmul_gflops():.0f}"
    )


def slice_gflop() -> float:
    """Returns the model's floating-point operations (GFLOP) for one slice."""
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_flops

    return float(get_flops(YOLO(str(ROOT / "models" / MODEL)).model, SLICE))


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Returns the best rate (GFLOP/s) of an n x n float32 matrix product on all cores."""
    import torch

    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


if __name__ == "__main__":
    raise SystemExit(main())
