"""Probe scenes and the comparison of two runtimes' detections on them.

Before a faster runtime (an ONNX export, half precision, the batched torch adapter) replaces
the ultralytics ``.pt`` path, `backends` runs both on these scenes and requires the same
detections within tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

from nesydet.pipeline.detector import Detector
from nesydet.pipeline.types import RawDetections

# The probe: detections kept down to PROBE_CONF so that even a model trained on other imagery
# gives boxes to compare. Two runtimes agree when every box scoring at least PROBE_CONF +
# SCORE_TOL in one has a twin in the other (same class, IoU >= IOU_MIN, score within
# SCORE_TOL). Measured for the demo model on these probes: 281 boxes, max score difference
# 1e-6 (float32 rounding), so the tolerance leaves a wide margin for other CPUs' kernels.
PROBE_CONF = 0.05
PROBE_IOU = 0.45
PROBE_SIZE = 640
SCORE_TOL = 0.01
IOU_MIN = 0.9


@dataclass(frozen=True, slots=True)
class ProbeMatch:
    """How two runtimes' detections on the probe scenes compare; `mismatch` is None when
    they agree within the tolerance."""

    boxes: int
    max_score_diff: float
    mismatch: str | None


def probe_images(
    size: int = PROBE_SIZE, seeds: Sequence[int] = (0, 1)
) -> list[npt.NDArray[np.uint8]]:
    """Returns deterministic aerial-like probe scenes: textured ground, roads, rotated blocks.

    Made here rather than read from a file, so that any model directory can be probed; the
    blocks (vehicle- to building-sized) draw boxes from most aerial detectors at PROBE_CONF.
    """
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        coarse = rng.normal(0, 18, (size // 32, size // 32, 3))
        ground = np.asarray(
            Image.fromarray(np.clip(coarse + 110, 0, 255).astype(np.uint8)).resize(
                (size, size), Image.Resampling.BICUBIC
            ),
            dtype=np.float64,
        )
        ground += rng.normal(0, 6, (size, size, 3))
        img = Image.fromarray(np.clip(ground, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(3):  # roads
            y = int(rng.integers(0, size))
            draw.line([(0, y), (size, y + int(rng.integers(-80, 80)))], fill=(70, 70, 72), width=24)
        for _ in range(60):
            cx, cy = rng.uniform(0, size, 2)
            length = rng.choice([rng.uniform(12, 20), rng.uniform(25, 45), rng.uniform(40, 90)])
            width = length * rng.uniform(0.4, 0.7)
            angle = rng.uniform(0, np.pi)
            c, s = np.cos(angle), np.sin(angle)
            corners = [
                (cx + dx * c - dy * s, cy + dx * s + dy * c)
                for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
                for dx, dy in [(dx * length / 2, dy * width / 2)]
            ]
            colour = tuple(int(v) for v in rng.integers(20, 250, 3))
            draw.polygon(corners, fill=colour, outline=(30, 30, 30))
        out.append(np.asarray(img.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.uint8))
    return out


def probe_detections(det: Detector, images: Sequence[npt.NDArray[np.uint8]]) -> list[RawDetections]:
    """Returns a detector's boxes on the probes: as slices (their own size) and as full
    images (resized to the model's training size), so both inference paths are covered."""
    size = int(images[0].shape[0]) if images else PROBE_SIZE
    sliced = det.predict_batch(images, PROBE_CONF, iou=PROBE_IOU, imgsz=size)
    full = [
        det.predict_batch([img], PROBE_CONF, iou=PROBE_IOU, imgsz=det.imgsz)[0] for img in images
    ]
    return [*sliced, *full]


def compare_detections(
    ref: Sequence[RawDetections],
    other: Sequence[RawDetections],
    *,
    conf: float = PROBE_CONF,
    score_tol: float = SCORE_TOL,
    iou_min: float = IOU_MIN,
) -> ProbeMatch:
    """Returns whether `other` gives `ref`'s detections, image by image, within tolerance.

    A box of either side that scores at least conf + score_tol needs a twin on the other
    side: the same class, axis-aligned IoU >= iou_min and a score within score_tol. Boxes
    just above `conf` may be missing on one side (a rounding difference crosses the floor).
    """
    if len(ref) != len(other):
        return ProbeMatch(0, 0.0, f"{len(ref)} != {len(other)} results")
    boxes, worst = 0, 0.0
    for i, (a, b) in enumerate(zip(ref, other, strict=True)):
        for first, second, side in ((a, b, "reference"), (b, a, "other")):
            for k in np.nonzero(first.scores >= conf + score_tol)[0]:
                diff = _twin_score_diff(first, int(k), second, iou_min)
                if diff is None or diff > score_tol:
                    cls, score = int(first.classes[k]), float(first.scores[k])
                    box = ", ".join(f"{v:.0f}" for v in first.boxes[k])
                    what = "no twin" if diff is None else f"twin's score differs by {diff:.3f}"
                    return ProbeMatch(
                        boxes,
                        worst,
                        f"probe {i}: {side} box of class {cls} at [{box}] "
                        f"(score {score:.3f}) has {what}",
                    )
                worst = max(worst, diff)
                boxes += side == "reference"
    return ProbeMatch(boxes, worst, None)


def _twin_score_diff(a: RawDetections, k: int, b: RawDetections, iou_min: float) -> float | None:
    """Returns the score difference to box k's closest-scoring twin in b, None without one."""
    same = np.nonzero(b.classes == a.classes[k])[0]
    if len(same) == 0:
        return None
    x0, y0, x1, y1 = a.boxes[k]
    bb = b.boxes[same]
    iw = np.clip(np.minimum(x1, bb[:, 2]) - np.maximum(x0, bb[:, 0]), 0, None)
    ih = np.clip(np.minimum(y1, bb[:, 3]) - np.maximum(y0, bb[:, 1]), 0, None)
    inter = iw * ih
    union = (x1 - x0) * (y1 - y0) + (bb[:, 2] - bb[:, 0]) * (bb[:, 3] - bb[:, 1]) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    twins = same[iou >= iou_min]
    if len(twins) == 0:
        return None
    return float(np.min(np.abs(b.scores[twins] - a.scores[k])))
