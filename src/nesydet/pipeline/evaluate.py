"""Detection metrics: precision, recall and AP50 per class, matching by exact (rotated) IoU.

Boxes are polygons (N, 4, 2), axis-aligned ones included, so OBB and plain YOLO labels use
the same code. IoU is affine-invariant, so normalised coordinates give the same IoU as
pixels even for non-square images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nesydet.pipeline import geometry as geo
from nesydet.pipeline.export import YoloLabel, parse_yolo
from nesydet.pipeline.types import FloatArray, IntArray


@dataclass(frozen=True, slots=True)
class ImageBoxes:
    """Boxes of one image: (N, 4, 2) polygons, class ids, and scores (None for ground truth)."""

    polygons: FloatArray
    classes: IntArray
    scores: FloatArray | None = None

    @classmethod
    def from_labels(cls, labels: Sequence[YoloLabel], *, with_scores: bool) -> ImageBoxes:
        """Returns the boxes of parsed YOLO lines (normalised coordinates)."""
        polys = np.array([lab.polygon() for lab in labels], dtype=np.float64).reshape(-1, 4, 2)
        classes = np.array([lab.class_id for lab in labels], dtype=np.int64)
        scores = None
        if with_scores:
            scores = np.array([1.0 if lab.confidence is None else lab.confidence for lab in labels])
        return cls(polys, classes, scores)


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    """Counts and scores of one class."""

    n_gt: int
    n_pred: int
    tp: int
    precision: float
    recall: float
    ap50: float


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Per-class metrics and overall figures (mAP over classes with ground truth)."""

    per_class: dict[int, ClassMetrics] = field(default_factory=dict)
    precision: float = 0.0
    recall: float = 0.0
    map50: float = 0.0
    n_gt: int = 0
    n_pred: int = 0
    tp: int = 0


def average_precision(recall: FloatArray, precision: FloatArray) -> float:
    """Returns the area under the interpolated precision-recall curve (all points, VOC 2010+)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[1.0 if len(precision) else 0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    idx = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[idx + 1] - r[idx]) * p[idx + 1]))


def match_image(
    pred: ImageBoxes, gt: ImageBoxes, iou_threshold: float
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Returns (scores, is_tp, class) for each prediction of one image.

    Greedy by score: each prediction takes the best still-unmatched ground truth of its class
    with IoU >= threshold.
    """
    n = len(pred.classes)
    scores = pred.scores if pred.scores is not None else np.ones(n)
    tp = np.zeros(n)
    if n and len(gt.classes):
        iou = geo.iou_matrix(pred.polygons, gt.polygons)
        iou[pred.classes[:, None] != gt.classes[None, :]] = 0.0
        taken = np.zeros(len(gt.classes), dtype=bool)
        for k in np.argsort(-scores, kind="stable"):
            row = np.where(taken, 0.0, iou[k])
            j = int(np.argmax(row))
            if row[j] >= iou_threshold:
                taken[j] = True
                tp[k] = 1.0
    return scores, tp, pred.classes


def evaluate(
    preds: Sequence[ImageBoxes], gts: Sequence[ImageBoxes], iou_threshold: float = 0.5
) -> EvalResult:
    """Returns precision, recall and AP50 per class and overall for paired image lists."""
    if len(preds) != len(gts):
        raise ValueError("preds and gts must pair up image by image")
    all_scores, all_tp, all_cls = [], [], []
    for p, g in zip(preds, gts, strict=True):
        s, t, c = match_image(p, g, iou_threshold)
        all_scores.append(s)
        all_tp.append(t)
        all_cls.append(c)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    tp = np.concatenate(all_tp) if all_tp else np.zeros(0)
    cls = np.concatenate(all_cls) if all_cls else np.zeros(0, dtype=np.int64)
    gt_cls = np.concatenate([g.classes for g in gts]) if gts else np.zeros(0, dtype=np.int64)
    per_class: dict[int, ClassMetrics] = {}
    for c in sorted(set(gt_cls.tolist()) | set(cls.tolist())):
        sel = cls == c
        n_gt = int((gt_cls == c).sum())
        order = np.argsort(-scores[sel], kind="stable")
        t = tp[sel][order]
        ctp = np.cumsum(t)
        n_pred = int(sel.sum())
        recall_curve = ctp / n_gt if n_gt else np.zeros_like(ctp)
        precision_curve = ctp / np.arange(1, n_pred + 1)
        ap = average_precision(recall_curve, precision_curve) if n_gt else 0.0
        hits = int(t.sum())
        per_class[c] = ClassMetrics(
            n_gt, n_pred, hits, hits / n_pred if n_pred else 0.0, hits / n_gt if n_gt else 0.0, ap
        )
    with_gt = [m for m in per_class.values() if m.n_gt]
    n_gt, n_pred, hits = len(gt_cls), len(cls), int(tp.sum())
    return EvalResult(
        per_class=per_class,
        precision=hits / n_pred if n_pred else 0.0,
        recall=hits / n_gt if n_gt else 0.0,
        map50=float(np.mean([m.ap50 for m in with_gt])) if with_gt else 0.0,
        n_gt=n_gt,
        n_pred=n_pred,
        tp=hits,
    )


def evaluate_dirs(
    pred_dir: Path, gt_dir: Path, iou_threshold: float = 0.5
) -> tuple[EvalResult, int]:
    """Returns the metrics of YOLO label directories paired by file stem, and the image count.

    A ground-truth file without predictions counts as all misses; predictions without a
    ground-truth file count as false positives.
    """
    pred_files = {p.stem: p for p in pred_dir.glob("*.txt")}
    gt_files = {p.stem: p for p in gt_dir.glob("*.txt")}
    stems = sorted(set(pred_files) | set(gt_files))
    preds, gts = [], []
    for stem in stems:
        p_labels = parse_yolo(pred_files[stem].read_text()) if stem in pred_files else []
        g_labels = parse_yolo(gt_files[stem].read_text()) if stem in gt_files else []
        preds.append(ImageBoxes.from_labels(p_labels, with_scores=True))
        gts.append(ImageBoxes.from_labels(g_labels, with_scores=False))
    return evaluate(preds, gts, iou_threshold), len(stems)


def format_table(result: EvalResult, names: Mapping[int, str] | None = None) -> str:
    """Returns a fixed-width text table of per-class and overall metrics."""
    head = f"{'class':<20} {'gt':>6} {'pred':>6} {'P':>7} {'R':>7} {'AP50':>7}"
    lines = [head, "-" * len(head)]
    for c, m in result.per_class.items():
        name = (names or {}).get(c, str(c))
        lines.append(
            f"{name:<20} {m.n_gt:>6} {m.n_pred:>6} "
            f"{m.precision:>7.3f} {m.recall:>7.3f} {m.ap50:>7.3f}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'all':<20} {result.n_gt:>6} {result.n_pred:>6} {result.precision:>7.3f} "
        f"{result.recall:>7.3f} {result.map50:>7.3f}"
    )
    return "\n".join(lines)
