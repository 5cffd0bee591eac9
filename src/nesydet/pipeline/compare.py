"""Comparing two runs on one image: which detections agree, which changed class, which are
in one run only, and per class B's precision and recall taking A as the reference.

Pure functions over :class:`~nesydet.pipeline.types.Detection` lists; overlaps are the exact
rotated IoU of the oriented boxes (the axis-aligned box for detections without one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from nesydet.pipeline.geometry import iou_matrix, xyxy_to_polygons
from nesydet.pipeline.types import Detection, FloatArray


@dataclass(frozen=True, slots=True)
class Pair:
    """Detection ``a`` of run A and detection ``b`` of run B over the same object."""

    a: int
    b: int
    iou: float


@dataclass(frozen=True, slots=True)
class ImageComparison:
    """One image compared: indices into the A and B detection lists given.

    Attributes:
        matched: same class, IoU at or above the threshold (best overlaps first).
        class_changes: the same object (IoU at or above the threshold) under another class.
        only_a: detections of A that B has no counterpart for (B missed them).
        only_b: detections of B that A has no counterpart for (new in B).
    """

    matched: list[Pair]
    class_changes: list[Pair]
    only_a: list[int]
    only_b: list[int]


@dataclass(slots=True)
class ClassSummary:
    """One class over every image compared, A taken as the reference.

    ``precision`` is the share of B's detections of the class that match one of A's, and
    ``recall`` the share of A's that B matched; None when there is nothing to divide by.
    """

    class_name: str
    in_a: int = 0
    in_b: int = 0
    matched: int = 0
    class_changed_from: int = 0  # A's detections of this class that B gave another class
    class_changed_to: int = 0  # B's detections of this class that A gave another class
    only_a: int = 0
    only_b: int = 0
    confidence_deltas: list[float] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        """Return matched / B's detections of the class, or None when B has none."""
        return self.matched / self.in_b if self.in_b else None

    @property
    def recall(self) -> float | None:
        """Return matched / A's detections of the class, or None when A has none."""
        return self.matched / self.in_a if self.in_a else None

    @property
    def mean_confidence_delta(self) -> float | None:
        """Return the mean of B's minus A's confidence over matched pairs, or None."""
        if not self.confidence_deltas:
            return None
        return float(np.mean(self.confidence_deltas))


def _polygons(dets: Sequence[Detection]) -> FloatArray:
    """Return the (N, 4, 2) corners of each detection: its oriented box, else its bbox."""
    out = np.zeros((len(dets), 4, 2))
    for n, det in enumerate(dets):
        if det.polygon is not None and len(det.polygon) == 4:
            out[n] = np.asarray(det.polygon, dtype=np.float64)
        else:
            out[n] = xyxy_to_polygons(np.asarray(det.bbox, dtype=np.float64))[0]
    return out


def _greedy(
    candidates: list[tuple[float, int, int]], used_a: set[int], used_b: set[int]
) -> list[Pair]:
    """Return pairs taken best IoU first, each detection in at most one pair."""
    pairs = []
    for iou, i, j in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append(Pair(a=i, b=j, iou=iou))
    return pairs


def compare_image(
    a: Sequence[Detection], b: Sequence[Detection], iou_threshold: float
) -> ImageComparison:
    """Return how run B's detections of an image relate to run A's.

    Pairs of the same class are matched first, greedily by IoU (highest first), keeping only
    those with IoU >= ``iou_threshold``; among what is left, pairs of different classes that
    overlap as much are class changes; the rest are in one run only.
    """
    ious = iou_matrix(_polygons(a), _polygons(b))
    same: list[tuple[float, int, int]] = []
    other: list[tuple[float, int, int]] = []
    for i, j in zip(*np.nonzero(ious >= iou_threshold), strict=True):
        iou = float(ious[i, j])
        if iou <= 0.0:
            continue
        target = same if a[i].class_name == b[j].class_name else other
        target.append((iou, int(i), int(j)))
    used_a: set[int] = set()
    used_b: set[int] = set()
    matched = _greedy(same, used_a, used_b)
    changes = _greedy(other, used_a, used_b)
    return ImageComparison(
        matched=matched,
        class_changes=changes,
        only_a=[i for i in range(len(a)) if i not in used_a],
        only_b=[j for j in range(len(b)) if j not in used_b],
    )


def summarize(
    images: Iterable[tuple[Sequence[Detection], Sequence[Detection], ImageComparison]],
) -> list[ClassSummary]:
    """Return the per-class summary of compared images, sorted by class name."""
    by_class: dict[str, ClassSummary] = {}

    def row(name: str) -> ClassSummary:
        return by_class.setdefault(name, ClassSummary(class_name=name))

    for a, b, comparison in images:
        for det in a:
            row(det.class_name).in_a += 1
        for det in b:
            row(det.class_name).in_b += 1
        for pair in comparison.matched:
            summary = row(a[pair.a].class_name)
            summary.matched += 1
            summary.confidence_deltas.append(b[pair.b].confidence - a[pair.a].confidence)
        for pair in comparison.class_changes:
            row(a[pair.a].class_name).class_changed_from += 1
            row(b[pair.b].class_name).class_changed_to += 1
        for i in comparison.only_a:
            row(a[i].class_name).only_a += 1
        for j in comparison.only_b:
            row(b[j].class_name).only_b += 1
    return [by_class[name] for name in sorted(by_class)]
