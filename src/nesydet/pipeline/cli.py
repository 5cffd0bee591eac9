"""`nesydet predict`, `eval` and `rules test` subcommands (also runnable as ``python -m``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nesydet.pipeline import export, rules_cli
from nesydet.pipeline.config import PipelineConfig, ReasoningConfig, SahiConfig, VisualizationConfig
from nesydet.pipeline.errors import ModelLoadError, PipelineError, RulesError
from nesydet.pipeline.types import PipelineResult

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}
FORMATS = ("json", "yolo", "yolo_obb", "coco", "voc")


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    models_dir: Path,
    rules_dir: Path,
    default_model: str,
) -> None:
    """Adds the `predict`, `eval` and `rules` subcommands; each sets `func(Namespace) -> int`."""
    p = subparsers.add_parser(
        "predict",
        help="detect objects in images, write labels and annotated images",
        description="Run the detection pipeline on images (files or directories).",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_DIR")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--model", default=None, help=f"model file in {models_dir} (default {default_model})"
    )
    p.add_argument("--rules", default="dota.pl", help=f"rules file in {rules_dir}")
    p.add_argument("--no-sahi", action="store_true", help="one full-image prediction, no slicing")
    p.add_argument("--no-reasoning", action="store_true", help="skip Prolog reasoning")
    p.add_argument("--no-images", action="store_true", help="do not write annotated images")
    p.add_argument(
        "--show-suppressed",
        action="store_true",
        help="also draw the detections the rules dropped, dashed, with the rule that did it",
    )
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--slice", type=int, default=640, help="SAHI slice width and height")
    p.add_argument("--overlap", type=float, default=0.2, help="SAHI overlap ratio")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="label format: yolo is `class cx cy w h conf` (upright boxes), yolo_obb the "
        "8-point oriented form (what `nesydet eval` compares with oriented ground truth)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda:0, ...")
    p.set_defaults(
        func=_predict, models_dir=models_dir, rules_dir=rules_dir, default_model=default_model
    )

    e = subparsers.add_parser(
        "eval",
        help="precision, recall and mAP50 of YOLO prediction labels against ground truth",
        description="Compare YOLO label files (axis-aligned or OBB) paired by file name.",
    )
    e.add_argument("pred_dir", type=Path)
    e.add_argument("gt_dir", type=Path)
    e.add_argument(
        "--iou", type=float, default=0.5, help="IoU needed for a match (rotated IoU for OBB)"
    )
    e.add_argument("--names", default=None, help="class names: a file with one per line, or a,b,c")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=_eval)
    rules_cli.register(
        subparsers, models_dir=models_dir, rules_dir=rules_dir, default_model=default_model
    )


def iter_images(inputs: list[Path]) -> Iterator[Path]:
    """Yields image files: given files as they are, directories' images sorted (not recursive)."""
    for path in inputs:
        if path.is_dir():
            yield from sorted(
                p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
        else:
            yield path


def _config(ns: argparse.Namespace) -> PipelineConfig:
    return PipelineConfig(
        model_path=ns.model,
        confidence_threshold=ns.conf,
        iou_threshold=ns.iou,
        sahi=SahiConfig(
            enabled=not ns.no_sahi,
            slice_width=ns.slice,
            slice_height=ns.slice,
            overlap_ratio=ns.overlap,
        ),
        symbolic_reasoning=ReasoningConfig(enabled=not ns.no_reasoning, rules_file=ns.rules),
        visualization=VisualizationConfig(
            enabled=not ns.no_images, show_suppressed=ns.show_suppressed
        ),
    )


def _inputs(ns: argparse.Namespace) -> list[Path] | str:
    """Return the images to process, or why there are none to process."""
    images = list(iter_images(ns.inputs))
    if not images:
        return "no images found"
    missing = [p for p in images if not p.is_file()]
    if missing:
        return f"not found: {', '.join(map(str, missing))}"
    return images


def _predict(ns: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nesydet.pipeline.image_io import load_image
    from nesydet.pipeline.pipeline import Pipeline

    try:
        config = _config(ns)
    except ValueError as exc:
        print(f"INVALID_CONFIG: {exc}", file=sys.stderr)
        return 2
    images = _inputs(ns)
    if isinstance(images, str):
        print(f"FILE_ERROR: {images}", file=sys.stderr)
        return 2
    out: Path = ns.out
    out.mkdir(parents=True, exist_ok=True)
    pipe = Pipeline(
        ns.models_dir,
        ns.rules_dir,
        default_model=ns.default_model,
        device=ns.device,
        cpu_threads=os.cpu_count(),
    )
    try:
        names = dict(pipe.detector(config.model_path).names)
    except ModelLoadError as exc:
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 1
    coco: list[export.CocoImage] = []
    failures = 0
    used: set[str] = set()
    for path in tqdm(images, desc="predict", unit="img", file=sys.stderr):
        try:
            result = pipe.run(load_image(path), config)
        except (ModelLoadError, RulesError) as exc:  # same failure for every image: stop
            tqdm.write(f"{exc.code}: {exc}", file=sys.stderr)  # a line of its own, not the bar's
            return 1
        except PipelineError as exc:
            failures += 1
            tqdm.write(f"{exc.code}: {path}: {exc}", file=sys.stderr)
            continue
        _write(out, _unique(path.stem, used), path, result, ns.format, coco)
    if ns.format == "coco":
        (out / "coco.json").write_text(json.dumps(export.to_coco(coco, names)))
    print(f"{len(images) - failures}/{len(images)} images -> {out}", file=sys.stderr)
    return 1 if failures else 0


def _write(
    out: Path,
    stem: str,
    path: Path,
    result: PipelineResult,
    fmt: str,
    coco: list[export.CocoImage],
) -> None:
    """Write one image's labels in ``fmt`` (COCO images are collected in ``coco``)."""
    w, h = result.image_size
    if fmt in ("yolo", "yolo_obb"):
        text = export.to_yolo(result.detections, w, h, obb=fmt == "yolo_obb")
        (out / f"{stem}.txt").write_text(text)
    elif fmt == "voc":
        (out / f"{stem}.xml").write_text(export.to_voc(path.name, w, h, result.detections))
    elif fmt == "json":
        doc: dict[str, Any] = {
            "image": path.name,
            "width": w,
            "height": h,
            "model": result.model_name,
            "detections": export.to_json_detections(result.detections, w, h),
            "dropped": export.to_json_detections(result.dropped, w, h),
            "timings": {k: round(v, 4) for k, v in result.timings.items()},
        }
        (out / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    else:
        coco.append(export.CocoImage(path.name, w, h, result.detections))
    if result.annotated is not None:
        result.annotated.save(out / f"{stem}_annotated.jpg", quality=90)


def _unique(stem: str, used: set[str]) -> str:
    name, n = stem, 1
    while name in used:
        name = f"{stem}_{n}"
        n += 1
    used.add(name)
    return name


def _names(spec: str | None) -> dict[int, str] | None:
    if spec is None:
        return None
    path = Path(spec)
    items = path.read_text().split() if path.is_file() else spec.split(",")
    return {i: n.strip() for i, n in enumerate(items) if n.strip()}


def _eval(ns: argparse.Namespace) -> int:
    from nesydet.pipeline.evaluate import evaluate_dirs, format_table

    for d in (ns.pred_dir, ns.gt_dir):
        if not d.is_dir():
            print(f"FILE_ERROR: not a directory: {d}", file=sys.stderr)
            return 2
    try:
        result, n_images = evaluate_dirs(ns.pred_dir, ns.gt_dir, ns.iou)
        names = _names(ns.names)
    except OSError as exc:
        print(f"FILE_ERROR: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a label file that is not YOLO labels
        print(f"INVALID_FORMAT: {exc}", file=sys.stderr)
        return 1
    if ns.json:
        doc = {
            "images": n_images,
            "iou": ns.iou,
            "precision": result.precision,
            "recall": result.recall,
            "map50": result.map50,
            "classes": {
                (names or {}).get(c, str(c)): {
                    "gt": m.n_gt,
                    "pred": m.n_pred,
                    "precision": m.precision,
                    "recall": m.recall,
                    "ap50": m.ap50,
                }
                for c, m in result.per_class.items()
            },
        }
        print(json.dumps(doc, indent=1))
    else:
        print(f"{n_images} images, IoU {ns.iou}")
        print(format_table(result, names))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m nesydet.pipeline.cli predict|eval ...``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", type=Path, default=Path("models"))
    common.add_argument("--rules-dir", type=Path, default=Path("rules"))
    common.add_argument("--default-model", default="nesydet-demo-obb.pt")
    # Directories are needed to build the subcommands' help, so read them first.
    pre, _ = common.parse_known_args(argv)
    parser = argparse.ArgumentParser(prog="nesydet-pipeline", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    register(
        sub, models_dir=pre.models_dir, rules_dir=pre.rules_dir, default_model=pre.default_model
    )
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
