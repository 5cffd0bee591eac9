"""`nesydet rules test RULES --scenes DIR`: the effect of a rules file on a labelled set."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nesydet.pipeline.config import PipelineConfig, SahiConfig
from nesydet.pipeline.errors import PipelineError


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    models_dir: Path,
    rules_dir: Path,
    default_model: str,
) -> None:
    """Adds `rules test`; it sets `func(Namespace) -> int`."""
    r = subparsers.add_parser(
        "rules",
        help="try a rules file on labelled images",
        description="Tools for Prolog rules files.",
    )
    sub = r.add_subparsers(dest="rules_command", required=True)
    t = sub.add_parser(
        "test",
        help="per-rule effect of a rules file on a labelled set",
        description=(
            "Run the pipeline on DIR/images with and without RULES and print precision, "
            "recall and mAP50 both ways, and per rule how often it fired and how many true "
            "and false detections it dropped or relabelled (truth from DIR/labels, YOLO "
            "labels as written by scripts/make_demo_dataset.py or `nesydet predict`)."
        ),
    )
    t.add_argument(
        "rules",
        help=f"a rules file: a path, or a name in {rules_dir} (default rules: dota.pl)",
    )
    t.add_argument("--scenes", type=Path, required=True, help="directory with images/ and labels/")
    t.add_argument("--model", default=None, help=f"model in {models_dir} (default {default_model})")
    t.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    t.add_argument("--slice", type=int, default=640, help="SAHI slice width and height")
    t.add_argument("--limit", type=int, default=0, help="only the first N images")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda:0, ...")
    t.set_defaults(
        func=_test, models_dir=models_dir, rules_dir=rules_dir, default_model=default_model
    )


def _rules_location(spec: str, rules_dir: Path) -> tuple[Path, str]:
    """Returns (directory, file name) of a rules file given as a path or a name in rules_dir.

    A file being tuned need not be registered yet: a path to it is read where it lies.
    """
    path = Path(spec)
    if path.is_file() and (path.is_absolute() or len(path.parts) > 1):
        return path.resolve().parent, path.name
    return rules_dir, spec


def _test(ns: argparse.Namespace) -> int:
    from nesydet.pipeline.pipeline import Pipeline
    from nesydet.pipeline.rules_report import format_report, labelled_images, rules_report

    if not (ns.scenes / "images").is_dir() or not (ns.scenes / "labels").is_dir():
        print(f"FILE_ERROR: {ns.scenes} needs images/ and labels/", file=sys.stderr)
        return 2
    pairs = labelled_images(ns.scenes)[: ns.limit or None]
    if not pairs:
        print(f"FILE_ERROR: no labelled images in {ns.scenes}", file=sys.stderr)
        return 2
    rules_dir, rules_file = _rules_location(ns.rules, ns.rules_dir)
    try:
        config = PipelineConfig(
            model_path=ns.model,
            confidence_threshold=ns.conf,
            sahi=SahiConfig(slice_width=ns.slice, slice_height=ns.slice),
        )
    except ValueError as exc:
        print(f"INVALID_CONFIG: {exc}", file=sys.stderr)
        return 2
    pipe = Pipeline(
        ns.models_dir,
        rules_dir,
        default_model=ns.default_model,
        device=ns.device,
        cpu_threads=os.cpu_count(),
    )

    def progress(path: Path, n: int) -> None:
        print(f"  {path.name}: {n} detections", file=sys.stderr, flush=True)

    try:
        report = rules_report(pipe, rules_file, pairs, config, progress)
    except PipelineError as exc:
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 1
    print(f"rules {rules_dir / rules_file} on {ns.scenes}")
    print(format_report(report))
    return 0
