"""The reasoning summary of a completed job (``GET /api/v1/jobs/{job_id}/reasoning``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ClassReasoning(BaseModel):
    """What the rules did to one class's detections."""

    detections: int = Field(ge=0, description="kept detections of this class")
    boosted: int = Field(ge=0)
    penalised: int = Field(ge=0, description="confidence lowered, and kept")
    unchanged: int = Field(ge=0)
    relabelled_to: int = Field(ge=0, description="detections relabelled into this class")
    relabelled_from: int = Field(ge=0, description="detections relabelled out of this class")
    rules_fired: dict[str, int] = Field(description="rule name -> detections it fired on")
    dropped: int = Field(default=0, ge=0, description="detections of this class the rules removed")
    dropped_by_rule: dict[str, int] = Field(
        default_factory=dict,
        description="rule name -> detections of this class it dropped (the last rule that "
        "fired, a penalty before a plain below_threshold)",
    )


class ReasoningSummary(BaseModel):
    job_id: str
    reasoning_enabled: bool
    rules_file: str | None
    detections: int = Field(ge=0, description="kept detections")
    dropped: int = Field(ge=0, description="detections the rules removed")
    rules_fired: dict[str, int]
    dropped_by_rule: dict[str, int] = Field(
        default_factory=dict, description="rule name -> detections it dropped, all classes"
    )
    classes: dict[str, ClassReasoning]


class ReasoningResponse(BaseModel):
    status: Literal["success"] = "success"
    data: ReasoningSummary
