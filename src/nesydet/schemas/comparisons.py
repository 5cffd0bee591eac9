"""Comparison models: two completed jobs compared image by image, A taken as the reference."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nesydet.ids import JOB, id_pattern
from nesydet.schemas.common import Timestamp
from nesydet.schemas.registry import AssetRef

Layout = Literal["side_by_side", "overlay"]


class ComparisonRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_a: str = Field(
        pattern=id_pattern(JOB),
        examples=["job_abc123xyz789"],
        description="the reference run (say, reasoning off, or the current model)",
    )
    job_b: str = Field(
        pattern=id_pattern(JOB),
        examples=["job_def456uvw012"],
        description="the run judged against A (say, reasoning on, or a new model)",
    )
    iou_threshold: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="two detections are the same object when their rotated IoU is at least this",
    )


class DetectionRef(BaseModel):
    """One detection of a job, as the job's results list it (``index`` within its file)."""

    index: int = Field(description="the detection's position in the file's results")
    class_name: str
    confidence: float
    bbox: list[float] = Field(description="[x_min, y_min, x_max, y_max] in pixels")


class MatchedPair(BaseModel):
    a: DetectionRef
    b: DetectionRef
    iou: float = Field(description="rotated IoU of the two boxes")
    confidence_delta: float = Field(description="B's confidence minus A's")


class ImageCounts(BaseModel):
    a: int
    b: int
    matched: int
    class_changes: int
    only_in_a: int
    only_in_b: int


class ImageComparisonItem(BaseModel):
    file_id_a: str = Field(description="the image in job A")
    file_id_b: str = Field(description="the image in job B (the same id when both jobs read it)")
    filename: str
    paired_by: Literal["file", "sha256"] = Field(
        description="`file`: both jobs read this file; `sha256`: two uploads of the same bytes"
    )
    counts: ImageCounts
    matched: list[MatchedPair] = Field(description="same class, IoU at or above the threshold")
    class_changes: list[MatchedPair] = Field(
        description="the same object (IoU at or above the threshold) under another class"
    )
    only_in_a: list[DetectionRef] = Field(description="found by A only: B missed them")
    only_in_b: list[DetectionRef] = Field(description="found by B only: new in B")
    visualization_url: str


class ClassSummaryItem(BaseModel):
    class_name: str
    in_a: int
    in_b: int
    matched: int
    class_changed_from: int = Field(description="A's detections of this class B gave another")
    class_changed_to: int = Field(description="B's detections of this class A gave another")
    only_in_a: int
    only_in_b: int
    precision: float | None = Field(
        description="B's precision taking A as the truth: matched / in_b (null when in_b is 0)"
    )
    recall: float | None = Field(
        description="B's recall taking A as the truth: matched / in_a (null when in_a is 0)"
    )
    mean_confidence_delta: float | None = Field(
        description="mean of B's minus A's confidence over matched pairs"
    )


class ComparisonSummary(BaseModel):
    images: int
    detections_a: int
    detections_b: int
    matched: int
    class_changes: int
    only_in_a: int
    only_in_b: int
    precision: float | None
    recall: float | None
    mean_confidence_delta: float | None
    per_class: list[ClassSummaryItem]
    model_a: AssetRef | None = Field(default=None, description="the model job A ran")
    model_b: AssetRef | None = Field(default=None, description="the model job B ran")
    rules_a: AssetRef | None = Field(default=None, description="the rules job A ran")
    rules_b: AssetRef | None = Field(default=None, description="the rules job B ran")


class UnpairedFiles(BaseModel):
    only_in_a: list[str] = Field(description="files of job A with no counterpart in job B")
    only_in_b: list[str] = Field(description="files of job B with no counterpart in job A")


class ComparisonData(BaseModel):
    comparison_id: str = Field(examples=["cmp_0a1b2c3d4e5f"])
    job_a: str
    job_b: str
    iou_threshold: float
    created_at: Timestamp
    summary: ComparisonSummary
    images: list[ImageComparisonItem]
    unpaired_files: UnpairedFiles
    comparison_url: str


class ComparisonResponse(BaseModel):
    status: Literal["success"] = "success"
    message: str | None = None
    data: ComparisonData


_PAIR = {
    "a": {"index": 0, "class_name": "plane", "confidence": 0.91, "bbox": [120, 88, 190, 150]},
    "b": {"index": 0, "class_name": "plane", "confidence": 0.94, "bbox": [121, 88, 190, 151]},
    "iou": 0.962,
    "confidence_delta": 0.03,
}
COMPARISON_EXAMPLE: dict[str, Any] = {
    "status": "success",
    "message": "Comparison created",
    "data": {
        "comparison_id": "cmp_0a1b2c3d4e5f",
        "job_a": "job_abc123xyz789",
        "job_b": "job_def456uvw012",
        "iou_threshold": 0.5,
        "created_at": "2026-02-02T18:58:00.000Z",
        "summary": {
            "images": 1,
            "detections_a": 3,
            "detections_b": 2,
            "matched": 1,
            "class_changes": 1,
            "only_in_a": 1,
            "only_in_b": 0,
            "precision": 0.5,
            "recall": 0.333,
            "mean_confidence_delta": 0.03,
            "per_class": [
                {
                    "class_name": "plane",
                    "in_a": 1,
                    "in_b": 1,
                    "matched": 1,
                    "class_changed_from": 0,
                    "class_changed_to": 0,
                    "only_in_a": 0,
                    "only_in_b": 0,
                    "precision": 1.0,
                    "recall": 1.0,
                    "mean_confidence_delta": 0.03,
                },
                {
                    "class_name": "ship",
                    "in_a": 2,
                    "in_b": 0,
                    "matched": 0,
                    "class_changed_from": 1,
                    "class_changed_to": 0,
                    "only_in_a": 1,
                    "only_in_b": 0,
                    "precision": None,
                    "recall": 0.0,
                    "mean_confidence_delta": None,
                },
            ],
        },
        "images": [
            {
                "file_id_a": "img_x1y2z3a4b5c6",
                "file_id_b": "img_x1y2z3a4b5c6",
                "filename": "scene1.png",
                "paired_by": "file",
                "counts": {
                    "a": 3,
                    "b": 2,
                    "matched": 1,
                    "class_changes": 1,
                    "only_in_a": 1,
                    "only_in_b": 0,
                },
                "matched": [_PAIR],
                "class_changes": [
                    {
                        "a": {
                            "index": 1,
                            "class_name": "ship",
                            "confidence": 0.42,
                            "bbox": [300, 40, 340, 60],
                        },
                        "b": {
                            "index": 1,
                            "class_name": "vehicle",
                            "confidence": 0.55,
                            "bbox": [300, 41, 339, 60],
                        },
                        "iou": 0.9,
                        "confidence_delta": 0.13,
                    }
                ],
                "only_in_a": [
                    {"index": 2, "class_name": "ship", "confidence": 0.31, "bbox": [10, 10, 40, 22]}
                ],
                "only_in_b": [],
                "visualization_url": "/api/v1/comparisons/cmp_0a1b2c3d4e5f/visualization"
                "?file_id=img_x1y2z3a4b5c6",
            }
        ],
        "unpaired_files": {"only_in_a": [], "only_in_b": []},
        "comparison_url": "/api/v1/comparisons/cmp_0a1b2c3d4e5f",
    },
}
