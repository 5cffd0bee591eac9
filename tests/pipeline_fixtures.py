"""Shared helpers for the pipeline tests: a fake colour-blob detector and detection builders.

The fake stands in for the model only (the boundary the pipeline talks to): it "detects"
blobs painted with a marker colour, so slicing, shifting, NMS and reasoning run for real.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from nesydet.pipeline.detector import ImageSize, ModelInfo, Task
from nesydet.pipeline.types import Detection, RawDetections, ReasoningTrace

ROOT = Path(__file__).resolve().parents[1]
MARKER_BLUE = 77
FAKE_NAMES = {
    0: "plane",
    1: "ship",
    2: "storage_tank",
    3: "harbor",
    4: "small_vehicle",
    5: "large_vehicle",
}


def paint_blob(
    img: Image.Image, cls: int, score: float, corners: Sequence[tuple[float, float]]
) -> None:
    """Paints a filled polygon the fake detector will report as (cls, score)."""
    color = (50 + 10 * cls, round(score * 250), MARKER_BLUE)
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in corners], fill=color)


def rotated_rect(
    cx: float, cy: float, w: float, h: float, angle: float
) -> list[tuple[float, float]]:
    """Returns the 4 corners of a rotated rectangle."""
    c, s = math.cos(angle), math.sin(angle)
    pts = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


class FakeDetector(ModelInfo):
    """A `Detector` that reports marker-coloured blobs (axis-aligned or oriented)."""

    def __init__(
        self, task: Task = "detect", names: Mapping[int, str] | None = None, imgsz: int = 320
    ) -> None:
        self._task: Task = task
        self._names = dict(names or FAKE_NAMES)
        self._imgsz = imgsz
        self.calls: list[int] = []  # batch sizes, for assertions on batching

    def predict_batch(
        self, images: Sequence[npt.NDArray[np.uint8]], conf: float, *, iou: float, imgsz: ImageSize
    ) -> list[RawDetections]:
        self.calls.append(len(images))
        return [self._one(img, conf) for img in images]

    def _one(self, img: npt.NDArray[np.uint8], conf: float) -> RawDetections:
        boxes, scores, classes, obbs = [], [], [], []
        for cls in self._names:
            mask = ((img[:, :, 2] == MARKER_BLUE) & (img[:, :, 0] == 50 + 10 * cls)).astype(
                np.uint8
            )
            if not mask.any():
                continue
            n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            for k in range(1, n):
                x, y, w, h, area = stats[k]
                if area < 4:
                    continue
                score = float(img[:, :, 1][labels == k].mean()) / 250
                if score < conf:
                    continue
                ys, xs = np.nonzero(labels == k)
                (cx, cy), (rw, rh), ang = cv2.minAreaRect(
                    np.column_stack([xs, ys]).astype(np.float32)
                )
                boxes.append([x, y, x + w, y + h])
                scores.append(score)
                classes.append(cls)
                obbs.append([cx, cy, rw + 1, rh + 1, math.radians(ang)])
        if not boxes:
            return RawDetections.empty(self._task == "obb")
        return RawDetections(
            np.asarray(boxes, dtype=np.float64),
            np.asarray(scores, dtype=np.float64),
            np.asarray(classes, dtype=np.int64),
            np.asarray(obbs, dtype=np.float64) if self._task == "obb" else None,
        )


def det(
    cls_name: str,
    conf: float,
    box: tuple[float, float, float, float],
    *,
    class_id: int = 0,
    obb: tuple[float, float, float, float, float] | None = None,
    trace: ReasoningTrace | None = None,
) -> Detection:
    """Returns a Detection; with `obb`, polygon and envelope come from the oriented box."""
    polygon = None
    if obb is not None:
        polygon = rotated_rect(*obb)
        xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
        box = (min(xs), min(ys), max(xs), max(ys))
    return Detection(class_id, cls_name, conf, box, obb, polygon, trace)


def offline_env() -> dict[str, str]:
    """Returns an environment for ultralytics that can never download (local font, offline)."""
    cfg = ROOT / "var" / "yolo_cfg"
    font_dir = cfg / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    import matplotlib

    src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (font_dir / name).exists():
            shutil.copy(src, font_dir / name)
    return {"YOLO_CONFIG_DIR": str(cfg), "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"}


def demo_scenes_module() -> None:
    """Makes scripts/demo_scenes importable (the synthetic scene renderer)."""
    scripts = str(ROOT / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)


DEMO_MODEL = ROOT / "models" / "nesydet-demo-obb.pt"
RULES_DIR = ROOT / "rules"
PYTHON = sys.executable
ENV_BASE = dict(os.environ)


def doubled_obbs(n: int, seed: int = 0) -> tuple[npt.NDArray[np.float64], ...]:
    """Returns (obb rows, scores, classes) of ``n`` random oriented objects over a 4,000 px
    square, each seen twice a fraction of a pixel apart (as by two overlapping slices)."""
    rng = np.random.default_rng(seed)
    rows = np.column_stack(
        [
            rng.uniform(0, 4000, n),
            rng.uniform(0, 4000, n),
            rng.uniform(8, 40, n),
            rng.uniform(4, 16, n),
            rng.uniform(0, 3, n),
        ]
    )
    dup = rows.copy()
    dup[:, :2] += rng.normal(0, 0.5, (n, 2))
    scores = np.tile(rng.uniform(0.2, 1, n), 2)
    classes = np.tile(rng.integers(0, 5, n), 2).astype(np.float64)
    return np.vstack([rows, dup]), scores, classes


def random_detections(
    n: int, seed: int = 0
) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Returns (class names, scores, xyxy boxes) of ``n`` random detections on a 3,000 px
    square, for reasoning at scale."""
    rng = np.random.default_rng(seed)
    names = [
        ("small_vehicle", "large_vehicle", "ship", "harbor", "plane", "storage_tank")[k]
        for k in rng.integers(0, 6, n)
    ]
    c = rng.uniform(0, 3000, (n, 2))
    wh = rng.uniform(8, 40, (n, 2))
    return names, rng.uniform(0.12, 1, n), np.column_stack([c - wh / 2, c + wh / 2])
