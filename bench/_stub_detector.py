"""A stand-in for the model, for benchmarks of the service around it (not of inference).

``NESYDET_DETECTOR_FACTORY=bench._stub_detector:stub_detector`` makes a worker "detect" the
same few oriented boxes in every image at once: slicing, NMS, reasoning, drawing, saving and
the service all run for real, and a bounded benchmark can push a thousand images through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from nesydet.pipeline.detector import Detector, ImageSize, Task
from nesydet.pipeline.types import RawDetections

FACTORY = "bench._stub_detector:stub_detector"
NAMES = {0: "plane", 1: "ship", 2: "storage-tank", 3: "small-vehicle", 4: "large-vehicle"}
# Boxes as fractions of the image: cx, cy, w, h, angle (radians), class, score.
BOXES = (
    (0.25, 0.25, 0.12, 0.06, 0.3, 0, 0.91),
    (0.60, 0.30, 0.10, 0.04, -0.5, 1, 0.82),
    (0.40, 0.70, 0.08, 0.08, 0.0, 2, 0.77),
    (0.75, 0.75, 0.05, 0.025, 1.1, 3, 0.64),
    (0.15, 0.85, 0.06, 0.03, 0.7, 4, 0.55),
)


class StubDetector:
    """Reports :data:`BOXES` in every image it is given."""

    @property
    def names(self) -> Mapping[int, str]:
        return NAMES

    @property
    def task(self) -> Task:
        return "obb"

    @property
    def imgsz(self) -> int:
        return 640

    def predict_batch(
        self, images: Sequence[npt.NDArray[np.uint8]], conf: float, *, iou: float, imgsz: ImageSize
    ) -> list[RawDetections]:
        return [self._one(image.shape[1], image.shape[0], conf) for image in images]

    @staticmethod
    def _one(width: int, height: int, conf: float) -> RawDetections:
        kept = [b for b in BOXES if b[6] >= conf]
        obb = np.array([[b[0] * width, b[1] * height, b[2] * width, b[3] * height, b[4]]
                        for b in kept]).reshape(-1, 5)  # fmt: skip
        half = np.maximum(obb[:, 2], obb[:, 3]) / 2
        boxes = np.column_stack(
            [obb[:, 0] - half, obb[:, 1] - half, obb[:, 0] + half, obb[:, 1] + half]
        )
        return RawDetections(
            boxes.astype(np.float64),
            np.array([b[6] for b in kept], dtype=np.float64),
            np.array([b[5] for b in kept], dtype=np.int64),
            obb.astype(np.float64),
        )


def stub_detector(model_path: Path, device: str) -> Detector:
    """Return the stand-in, whatever model file the job names."""
    return StubDetector()
