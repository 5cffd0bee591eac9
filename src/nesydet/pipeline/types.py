"""Result types: detections, reasoning traces, raw model output and the pipeline result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from PIL import Image

Action = Literal["keep", "drop", "relabel"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _unit(v: float) -> float:
    return min(max(v, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class ReasoningTrace:
    """What the rules did to one detection.

    `facts` are the scene and neighbourhood facts about the detection that the rules file
    reads (on/3, shore_distance/2, nearest/3, cluster/2, aligned/2, elongation/2), given when
    a rule fired: what the rules saw when they decided.
    """

    original_confidence: float
    adjusted_confidence: float
    action: Action
    rules_fired: list[str]
    original_class: str | None = None
    facts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Returns the trace as a JSON-ready dict ("facts" only when there are some)."""
        out: dict[str, Any] = {
            "original_confidence": round(self.original_confidence, 6),
            "adjusted_confidence": round(self.adjusted_confidence, 6),
            "action": self.action,
            "rules_fired": list(self.rules_fired),
            "original_class": self.original_class,
        }
        if self.facts:
            out["facts"] = list(self.facts)
        return out


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object in image pixel coordinates.

    Attributes:
        class_id: Index into the model's class names.
        class_name: Final class name (after any relabel).
        confidence: Final confidence (after reasoning adjustments).
        bbox: Axis-aligned (x_min, y_min, x_max, y_max); for OBB the envelope of the polygon.
        obb: (cx, cy, w, h, angle_rad) for oriented-box models, else None.
        polygon: The 4 corners of the oriented box, else None.
        reasoning: The reasoning trace, or None when reasoning was disabled.
    """

    class_id: int
    class_name: str
    confidence: float
    bbox: tuple[float, float, float, float]
    obb: tuple[float, float, float, float, float] | None = None
    polygon: list[tuple[float, float]] | None = None
    reasoning: ReasoningTrace | None = None

    def dropping_rule(self) -> str | None:
        """Returns the rule that dropped this detection (None without a rule).

        The last rule that fired is the one named, except that a plain `below_threshold` gives
        way to the penalty before it (the rule that pushed the confidence down).
        """
        rules = list(self.reasoning.rules_fired) if self.reasoning is not None else []
        named = [r for r in rules if r != "below_threshold"] or rules
        return named[-1] if named else None

    def to_dict(self, image_w: int, image_h: int) -> dict[str, Any]:
        """Returns the API's detection JSON (bbox, normalized YOLO box, polygon, reasoning).

        Normalised values are clipped to [0, 1] (a corner may reach a hair past the edge);
        the pixel ones are left as the model gave them.
        """
        x0, y0, x1, y1 = self.bbox
        cx0, cx1 = (min(max(v, 0.0), image_w) for v in (x0, x1))
        cy0, cy1 = (min(max(v, 0.0), image_h) for v in (y0, y1))
        out: dict[str, Any] = {
            "class_id": self.class_id,
            "class_name": self.class_name,
            "confidence": round(self.confidence, 6),
            "bbox": {
                "format": "xyxy",
                "x_min": round(x0, 2),
                "y_min": round(y0, 2),
                "x_max": round(x1, 2),
                "y_max": round(y1, 2),
            },
            "bbox_normalized": {
                "format": "yolo",
                "center_x": round((cx0 + cx1) / 2 / image_w, 6),
                "center_y": round((cy0 + cy1) / 2 / image_h, 6),
                "width": round((cx1 - cx0) / image_w, 6),
                "height": round((cy1 - cy0) / image_h, 6),
            },
        }
        if self.polygon is not None:
            out["polygon"] = [[round(x, 2), round(y, 2)] for x, y in self.polygon]
            out["polygon_normalized"] = [
                [round(_unit(x / image_w), 6), round(_unit(y / image_h), 6)]
                for x, y in self.polygon
            ]
        if self.obb is not None:
            out["angle"] = round(self.obb[4], 6)
        out["reasoning"] = self.reasoning.to_dict() if self.reasoning is not None else None
        return out


@dataclass(frozen=True, slots=True)
class RawDetections:
    """Model output for one image or slice, as parallel arrays (fast to shift, merge, filter).

    Attributes:
        boxes: (N, 4) axis-aligned xyxy envelopes in pixels.
        scores: (N,) confidences.
        classes: (N,) class ids.
        obb: (N, 5) cx, cy, w, h, angle (radians) for oriented-box models, else None.
    """

    boxes: FloatArray
    scores: FloatArray
    classes: IntArray
    obb: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls, oriented: bool) -> RawDetections:
        """Returns a zero-length result."""
        return cls(
            np.zeros((0, 4)),
            np.zeros(0),
            np.zeros(0, dtype=np.int64),
            np.zeros((0, 5)) if oriented else None,
        )

    def shifted(self, dx: float, dy: float) -> RawDetections:
        """Returns a copy moved by (dx, dy) pixels (slice to full-image coordinates)."""
        boxes = self.boxes + np.array([dx, dy, dx, dy])
        obb = None
        if self.obb is not None:
            obb = self.obb.copy()
            obb[:, 0] += dx
            obb[:, 1] += dy
        return RawDetections(boxes, self.scores, self.classes, obb)

    def take(self, idx: IntArray | BoolArray) -> RawDetections:
        """Returns the subset selected by an index or mask array."""
        return RawDetections(
            self.boxes[idx],
            self.scores[idx],
            self.classes[idx],
            None if self.obb is None else self.obb[idx],
        )

    @staticmethod
    def concat(parts: list[RawDetections], oriented: bool) -> RawDetections:
        """Returns all parts joined into one."""
        if not parts:
            return RawDetections.empty(oriented)
        return RawDetections(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.classes for p in parts]),
            np.concatenate([p.obb for p in parts if p.obb is not None]) if oriented else None,
        )


@dataclass(slots=True)
class PipelineResult:
    """Output of `Pipeline.run`.

    Attributes:
        detections: Kept detections, after reasoning, highest confidence first.
        dropped: Detections the rules dropped (each with its trace).
        timings: Seconds per stage: inference, nms, reasoning, visualization.
        image_size: (width, height) of the input image.
        model_name: Label of the model used (file stem).
        annotated: Annotated image, or None when visualization is disabled.
        thumbnail: Longest side 256 px, of the annotated image if present else the original.
        stats: Counts: slices, raw, candidates, kept, dropped.
        reasoning_timings: Seconds within the reasoning stage: context (the surface map;
            absent when the rules read no context fact), facts, prolog.
    """

    detections: list[Detection]
    dropped: list[Detection]
    timings: dict[str, float]
    image_size: tuple[int, int]
    model_name: str
    thumbnail: Image.Image
    annotated: Image.Image | None = None
    stats: dict[str, int] = field(default_factory=dict)
    reasoning_timings: dict[str, float] = field(default_factory=dict)
