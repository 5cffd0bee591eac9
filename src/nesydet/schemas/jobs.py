"""Job request and response models (spec, Endpoints 2 and 3; job list)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from nesydet.asset_names import REF_PATTERN
from nesydet.ids import UPLOAD, id_pattern
from nesydet.pipeline.config import OVERLAP_RANGE, SLICE_RANGE, UNIT_RANGE, PipelineConfig
from nesydet.schemas.common import Timestamp
from nesydet.schemas.registry import AssetRef
from nesydet.schemas.webhooks import URL_MAX, WebhookCreated


def _between(low: float, high: float) -> AfterValidator:
    def check(value: float) -> float:
        if not low <= value <= high:
            raise PydanticCustomError(
                "out_of_range", "Must be between {low} and {high}", {"low": low, "high": high}
            )
        return value

    return AfterValidator(check)


def _range_schema(low: float, high: float) -> Any:
    return Field(json_schema_extra={"minimum": low, "maximum": high})


Unit = Annotated[float, _between(*UNIT_RANGE), _range_schema(*UNIT_RANGE)]
SliceSize = Annotated[int, _between(*SLICE_RANGE), _range_schema(*SLICE_RANGE)]
Overlap = Annotated[float, _between(*OVERLAP_RANGE), _range_schema(*OVERLAP_RANGE)]

# Defaults and limits come from the pipeline's own config: it is what runs the job.
_DEFAULT = PipelineConfig()


def _span(bounds: tuple[float, float], unit: str = "") -> str:
    return f"{bounds[0]:g} to {bounds[1]:g}{unit}"


class _Strict(BaseModel):
    # Unknown keys are refused: a typo such as "confidence_treshold" must not pass silently.
    model_config = ConfigDict(extra="forbid")


class SahiConfig(_Strict):
    enabled: bool = Field(
        default=_DEFAULT.sahi.enabled, description="sliced inference; false runs one full pass"
    )
    slice_width: SliceSize = Field(
        default=_DEFAULT.sahi.slice_width, description=_span(SLICE_RANGE, " pixels")
    )
    slice_height: SliceSize = Field(
        default=_DEFAULT.sahi.slice_height, description=_span(SLICE_RANGE, " pixels")
    )
    overlap_ratio: Overlap = Field(
        default=_DEFAULT.sahi.overlap_ratio, description=_span(OVERLAP_RANGE)
    )


class ReasoningConfig(_Strict):
    enabled: bool = _DEFAULT.symbolic_reasoning.enabled
    rules_file: str = Field(
        default=_DEFAULT.symbolic_reasoning.rules_file,
        description="a rules file in the server's rules directory",
    )
    rules: str | None = Field(
        default=None,
        pattern=REF_PATTERN,
        examples=["dota@2"],
        description="registered rules (GET /api/v1/rules) as name (its default version) or "
        "name@version; instead of rules_file (extension)",
    )


class VisualizationConfig(_Strict):
    enabled: bool = _DEFAULT.visualization.enabled
    show_labels: bool = _DEFAULT.visualization.show_labels
    confidence_display: bool = _DEFAULT.visualization.confidence_display
    show_suppressed: bool = Field(
        default=_DEFAULT.visualization.show_suppressed,
        description="also draw the detections the rules dropped, dashed and labelled with the "
        "rule that dropped them (extension)",
    )


class JobConfig(_Strict):
    """The pipeline configuration of a job; every field has a default."""

    model_path: str | None = Field(
        default=_DEFAULT.model_path,
        description="a model file in the server's models directory; the default model if "
        "null and no `model` is given",
        examples=["nesydet-demo-obb.pt"],
    )
    model: str | None = Field(
        default=None,
        pattern=REF_PATTERN,
        examples=["nesydet-demo-obb@1"],
        description="a registered model (GET /api/v1/models) as name@version, or name: its "
        "routing's pick by job id, else its default version; instead of model_path (extension)",
    )
    confidence_threshold: Unit = Field(
        default=_DEFAULT.confidence_threshold, description=_span(UNIT_RANGE)
    )
    iou_threshold: Unit = Field(
        default=_DEFAULT.iou_threshold, description=_span(UNIT_RANGE) + ", for NMS"
    )
    class_agnostic_nms: bool = Field(
        default=_DEFAULT.class_agnostic_nms,
        description="suppress overlaps across classes too (extension)",
    )
    sahi: SahiConfig = Field(default_factory=SahiConfig)
    symbolic_reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig)
    visualization: VisualizationConfig = Field(default_factory=VisualizationConfig)


class PredictRequest(_Strict):
    upload_id: str = Field(pattern=id_pattern(UPLOAD), examples=["upl_a1b2c3d4e5f6"])
    # Checked against the upload's files (INVALID_FILE_IDS), never looked up as they are.
    file_ids: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="files of that upload to process; all of them when left out",
    )
    config: JobConfig = Field(default_factory=JobConfig)
    webhook_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=URL_MAX,
        examples=["https://hooks.example.com/nesydet"],
        description="POST the job's final event (job.completed, job.failed or job.cancelled) "
        "here, signed per Standard Webhooks with a secret returned once in data.webhook; "
        "public addresses only, as for POST /api/v1/webhooks",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "upload_id": "upl_a1b2c3d4e5f6",
                "file_ids": ["img_3f9a0c1d2e4b"],
                "config": {"confidence_threshold": 0.25, "sahi": {"enabled": True}},
            }
        },
    )


class PredictData(BaseModel):
    job_id: str
    status: str
    created_at: Timestamp
    estimated_completion: Timestamp | None
    file_count: int
    status_url: str
    config: JobConfig
    webhook: WebhookCreated | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="the webhook made for webhook_url, with its signing secret (shown once)",
    )


class PredictResponse(BaseModel):
    status: Literal["accepted"] = "accepted"
    message: str = "Inference job created"
    data: PredictData


class Progress(BaseModel):
    total_images: int
    processed_images: int
    percentage: int
    current_stage: str | None = None
    estimated_completion: Timestamp | None = None


class Summary(BaseModel):
    total_detections: int
    average_confidence: float | None
    processing_time_seconds: float


class JobError(BaseModel):
    code: str
    message: str
    details: str | None = None


class JobStatusData(BaseModel):
    """A job as the status endpoint shows it; fields appear as the status calls for them."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=False)

    job_id: str
    status: str
    upload_id: str
    created_at: Timestamp
    updated_at: Timestamp
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    failed_at: Timestamp | None = None
    cancelled_at: Timestamp | None = None
    progress: Progress
    summary: Summary | None = None
    error: JobError | None = None
    results_url: str | None = None
    visualization_url: str | None = None
    attempts: int | None = None
    model: AssetRef | None = Field(
        default=None, description="the model the job runs: name, version, sha256 (extension)"
    )
    rules: AssetRef | None = Field(
        default=None, description="the rules it runs; absent without reasoning (extension)"
    )


class JobStatusResponse(BaseModel):
    status: Literal["success"] = "success"
    data: JobStatusData


class JobListItem(BaseModel):
    job_id: str
    status: str
    upload_id: str
    file_count: int
    processed_images: int
    created_at: Timestamp
    updated_at: Timestamp
    status_url: str


class JobListData(BaseModel):
    jobs: list[JobListItem]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null at the end"
    )


class JobListResponse(BaseModel):
    status: Literal["success"] = "success"
    data: JobListData


def _example_time(second: str) -> str:
    return f"2026-02-02T18:{second}Z"


STATUS_EXAMPLES: dict[str, Any] = {
    "queued": {
        "summary": "Queued",
        "value": {
            "status": "success",
            "data": {
                "job_id": "job_abc123xyz789",
                "status": "queued",
                "upload_id": "upl_a1b2c3d4e5f6",
                "created_at": _example_time("54:57.324"),
                "updated_at": _example_time("54:57.324"),
                "progress": {"total_images": 2, "processed_images": 0, "percentage": 0},
            },
        },
    },
    "processing": {
        "summary": "Processing",
        "value": {
            "status": "success",
            "data": {
                "job_id": "job_abc123xyz789",
                "status": "processing",
                "upload_id": "upl_a1b2c3d4e5f6",
                "created_at": _example_time("54:57.324"),
                "updated_at": _example_time("55:30.124"),
                "started_at": _example_time("55:00.000"),
                "progress": {
                    "total_images": 2,
                    "processed_images": 1,
                    "percentage": 50,
                    "current_stage": "Running SAHI inference",
                    "estimated_completion": _example_time("56:30.000"),
                },
            },
        },
    },
    "completed": {
        "summary": "Completed",
        "value": {
            "status": "success",
            "data": {
                "job_id": "job_abc123xyz789",
                "status": "completed",
                "upload_id": "upl_a1b2c3d4e5f6",
                "created_at": _example_time("54:57.324"),
                "updated_at": _example_time("56:15.500"),
                "started_at": _example_time("55:00.000"),
                "completed_at": _example_time("56:15.500"),
                "progress": {"total_images": 2, "processed_images": 2, "percentage": 100},
                "summary": {
                    "total_detections": 47,
                    "average_confidence": 0.82,
                    "processing_time_seconds": 75.5,
                },
                "results_url": "/api/v1/jobs/job_abc123xyz789/results",
                "visualization_url": "/api/v1/jobs/job_abc123xyz789/visualization",
            },
        },
    },
    "failed": {
        "summary": "Failed",
        "value": {
            "status": "success",
            "data": {
                "job_id": "job_abc123xyz789",
                "status": "failed",
                "upload_id": "upl_a1b2c3d4e5f6",
                "created_at": _example_time("54:57.324"),
                "updated_at": _example_time("55:45.200"),
                "started_at": _example_time("55:00.000"),
                "failed_at": _example_time("55:45.200"),
                "progress": {"total_images": 2, "processed_images": 0, "percentage": 0},
                "error": {
                    "code": "MODEL_LOAD_ERROR",
                    "message": "Failed to load YOLO model",
                    "details": "Model file not found: best.pt",
                },
            },
        },
    },
    "cancelled": {
        "summary": "Cancelled",
        "value": {
            "status": "success",
            "data": {
                "job_id": "job_abc123xyz789",
                "status": "cancelled",
                "upload_id": "upl_a1b2c3d4e5f6",
                "created_at": _example_time("54:57.324"),
                "updated_at": _example_time("55:10.000"),
                "started_at": _example_time("55:00.000"),
                "cancelled_at": _example_time("55:10.000"),
                "progress": {"total_images": 2, "processed_images": 1, "percentage": 50},
            },
        },
    },
}
