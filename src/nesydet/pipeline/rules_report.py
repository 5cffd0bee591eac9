"""What a rules file does on a labelled set: `nesydet rules test RULES --scenes DIR`.

Every image runs through the pipeline twice, without and with the rules; the run without is
matched to the ground truth (rotated IoU >= 0.5, as `nesydet eval`), which says of each
detection whether it was true. The report gives precision, recall and mAP50 both ways and,
per rule, how many detections it fired on, how many of those were true, and how many true
and false ones ended dropped or relabelled. A user tunes a rules file on their own labelled
scenes with it before registering the file with the service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nesydet.pipeline import geometry as geo
from nesydet.pipeline.config import PipelineConfig, ReasoningConfig, VisualizationConfig
from nesydet.pipeline.evaluate import EvalResult, ImageBoxes, evaluate, match_image
from nesydet.pipeline.export import parse_yolo
from nesydet.pipeline.image_io import load_image
from nesydet.pipeline.pipeline import Pipeline
from nesydet.pipeline.types import Detection


@dataclass
class RuleEffect:
    """One rule over a set: detections it fired on, and what became of them."""

    fired: int = 0
    fired_true: int = 0
    dropped_true: int = 0
    dropped_false: int = 0
    relabelled: int = 0


@dataclass
class RulesReport:
    """A rules file over a labelled set: metrics both ways and the effect of every rule."""

    without: EvalResult
    with_rules: EvalResult
    rules: dict[str, RuleEffect] = field(default_factory=dict)
    images: int = 0
    detections: int = 0


def image_boxes(dets: Sequence[Detection], size: tuple[int, int]) -> ImageBoxes:
    """Returns detections as normalised polygons, scores and class ids for evaluation."""
    polys = [
        d.polygon if d.polygon else geo.xyxy_to_polygons(np.array([d.bbox]))[0].tolist()
        for d in dets
    ]
    arr = np.array(polys, dtype=np.float64).reshape(-1, 4, 2) / np.array(size, dtype=np.float64)
    return ImageBoxes(
        arr,
        np.array([d.class_id for d in dets], dtype=np.int64),
        np.array([d.confidence for d in dets], dtype=np.float64),
    )


def box_key(d: Detection) -> tuple[float, ...]:
    """Returns a detection's box rounded to 0.01 px: the same object in two runs of an image."""
    return tuple(round(v, 2) for v in d.bbox)


def truth_by_box(
    dets: Sequence[Detection], true_positive: Iterable[Any]
) -> dict[tuple[float, ...], bool]:
    """Returns whether each detection of the run without rules was a true one, by its box (the
    same box comes back from the run with rules, whatever the rules did to it)."""
    return {box_key(d): bool(t) for d, t in zip(dets, true_positive, strict=True)}


def labelled_images(scenes: Path) -> list[tuple[Path, Path]]:
    """Returns (image, YOLO label file) pairs of DIR/images and DIR/labels, by file stem."""
    images = sorted(p for p in (scenes / "images").iterdir() if p.is_file())
    pairs = [(p, scenes / "labels" / f"{p.stem}.txt") for p in images]
    return [(img, lab) for img, lab in pairs if lab.is_file()]


def rules_report(
    pipe: Pipeline,
    rules_file: str,
    pairs: Sequence[tuple[Path, Path]],
    config: PipelineConfig | None = None,
    progress: Callable[[Path, int], None] | None = None,
) -> RulesReport:
    """Returns the effect of `rules_file` (a name in the pipeline's rules_dir) on labelled images.

    Raises:
        RulesError: When the rules file is invalid.
        PipelineError: When the model or an image fails.
    """
    off, on = _configs(config or PipelineConfig(), rules_file)
    pipe.reasoner.load(rules_file)  # a broken rules file fails before any inference
    before, after, gts = [], [], []
    effects: dict[str, RuleEffect] = {}
    n_dets = 0
    for image_path, label_path in pairs:
        img = load_image(image_path)
        size = img.size
        gt = ImageBoxes.from_labels(parse_yolo(label_path.read_text()), with_scores=False)
        base = pipe.run(img, off)
        res = pipe.run(img, on)
        b = image_boxes(base.detections, size)
        before.append(b)
        after.append(image_boxes(res.detections, size))
        gts.append(gt)
        n_dets += len(base.detections)
        _, tp, _ = match_image(b, gt, 0.5)
        truth = truth_by_box(base.detections, tp)
        count_rule_effects(effects, res.detections + res.dropped, truth)
        if progress is not None:
            progress(image_path, len(base.detections))
    return RulesReport(evaluate(before, gts), evaluate(after, gts), effects, len(pairs), n_dets)


def _configs(base: PipelineConfig, rules_file: str) -> tuple[PipelineConfig, PipelineConfig]:
    """Returns the job's settings without and with the rules (no images drawn)."""

    def with_rules(enabled: bool) -> PipelineConfig:
        return PipelineConfig(
            model_path=base.model_path,
            confidence_threshold=base.confidence_threshold,
            iou_threshold=base.iou_threshold,
            sahi=base.sahi,
            symbolic_reasoning=ReasoningConfig(enabled=enabled, rules_file=rules_file),
            visualization=VisualizationConfig(enabled=False),
        )

    return with_rules(False), with_rules(True)


def count_rule_effects(
    effects: dict[str, RuleEffect], dets: Sequence[Detection], truth: dict[tuple[float, ...], bool]
) -> None:
    """Adds what became of each detection to the rules that fired on it."""
    for d in dets:
        if d.reasoning is None:
            continue
        true = truth.get(box_key(d), False)
        for rule in dict.fromkeys(d.reasoning.rules_fired):
            e = effects.setdefault(rule, RuleEffect())
            e.fired += 1
            e.fired_true += true
            if d.reasoning.action == "drop":
                e.dropped_true += true
                e.dropped_false += not true
            elif d.reasoning.action == "relabel":
                e.relabelled += 1


def format_report(report: RulesReport) -> str:
    """Returns the report as two fixed-width text tables."""

    def table(headers: list[str], rows: list[list[str]]) -> list[str]:
        widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(headers)]
        line = "  ".join(
            h.ljust(w) if k == 0 else h.rjust(w)
            for k, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
        out = [line, "-" * len(line)]
        for r in rows:
            out.append(
                "  ".join(
                    c.ljust(w) if k == 0 else c.rjust(w)
                    for k, (c, w) in enumerate(zip(r, widths, strict=True))
                )
            )
        return out

    w, r = report.without, report.with_rules
    rows = [
        ["without rules", str(w.n_pred), f"{w.precision:.4f}", f"{w.recall:.4f}", f"{w.map50:.4f}"],
        ["with rules", str(r.n_pred), f"{r.precision:.4f}", f"{r.recall:.4f}", f"{r.map50:.4f}"],
        [
            "change (points)",
            f"{r.n_pred - w.n_pred:+d}",
            f"{100 * (r.precision - w.precision):+.2f}",
            f"{100 * (r.recall - w.recall):+.2f}",
            f"{100 * (r.map50 - w.map50):+.2f}",
        ],
    ]
    lines = [f"{report.images} images, {report.detections} detections without rules", ""]
    lines += table(["run", "preds", "precision", "recall", "mAP50"], rows)
    lines.append("")
    rule_rows = [
        [
            name,
            str(e.fired),
            str(e.fired_true),
            str(e.dropped_true),
            str(e.dropped_false),
            str(e.relabelled),
        ]
        for name, e in sorted(report.rules.items(), key=lambda kv: (-kv[1].fired, kv[0]))
    ]
    if rule_rows:
        headers = ["rule", "fired", "on true", "dropped true", "dropped false", "relabelled"]
        lines += table(headers, rule_rows)
        lines.append(
            "fired: detections the rule fired on (on true: of them, true detections); dropped "
            "true/false: of them, true and false detections the rules dropped"
        )
    else:
        lines.append("no rule fired")
    return "\n".join(lines)
