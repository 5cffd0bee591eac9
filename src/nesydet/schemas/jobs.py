"""Job request and response models (spec, Endpoints 2 and 3; job list)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from nesydet.db.models import Job, JobStatus
from nesydet.schemas.common import Timestamp, iso_z


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


Unit = Annotated[float, _between(0.0, 1.0), _range_schema(0.0, 1.0)]
SliceSize = Annotated[int, _between(256, 2048), _range_schema(256, 2048)]
Overlap = Annotated[float, _between(0.0, 0.5), _range_schema(0.0, 0.5)]


class _Strict(BaseModel):
    # Unknown keys are refused: a typo such as "confidence_treshold" must not pass silently.
    model_config = ConfigDict(extra="forbid")


class SahiConfig(_Strict):
    enabled: bool = Field(default=True, description="sliced inference; false runs one full pass")
    slice_width: SliceSize = Field(default=640, description="256 to 2048 pixels")
    slice_height: SliceSize = Field(default=640, description="256 to 2048 pixels")
    overlap_ratio: Overlap = Field(default=0.2, description="0.0 to 0.5")


class ReasoningConfig(_Strict):
    enabled: bool = True
    rules_file: str = Field(
        default="dota.pl", description="a rules file in the server's rules directory"
    )


class VisualizationConfig(_Strict):
    enabled: bool = True
    show_labels: bool = True
    confidence_display: bool = True


class JobConfig(_Strict):
    """The pipeline configuration of a job; every field has a default."""

    model_path: str | None = Field(
        default=None,
        description="a model file in the server's models directory; the default model if null",
        examples=["nesydet-demo-obb.pt"],
    )
    confidence_threshold: Unit = Field(default=0.25, description="0.0 to 1.0")
    iou_threshold: Unit = Field(default=0.45, description="0.0 to 1.0, for NMS")
    class_agnostic_nms: bool = Field(
        default=False, description="suppress overlaps across classes too (extension)"
    )
    sahi: SahiConfig = Field(default_factory=SahiConfig)
    symbolic_reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig)
    visualization: VisualizationConfig = Field(default_factory=VisualizationConfig)


class PredictRequest(_Strict):
    upload_id: str = Field(examples=["upl_a1b2c3d4e5f6"])
    file_ids: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="files of that upload to process; all of them when left out",
    )
    config: JobConfig = Field(default_factory=JobConfig)

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


def _percentage(job: Job) -> int:
    if job.file_count == 0:
        return 100
    return int(100 * job.processed_count / job.file_count)


def job_status_payload(job: Job) -> dict[str, Any]:
    """Return the status endpoint's ``data`` for a job, as JSON-ready values.

    Built in one place so the API and the workers (which fill the status cache) agree.
    """
    progress: dict[str, Any] = {
        "total_images": job.file_count,
        "processed_images": job.processed_count,
        "percentage": _percentage(job),
    }
    data: dict[str, Any] = {
        "job_id": job.id,
        "status": job.status,
        "upload_id": job.upload_id,
        "created_at": iso_z(job.created_at),
        "updated_at": iso_z(job.updated_at),
    }
    if job.status == JobStatus.QUEUED and job.attempts:
        data["attempts"] = job.attempts
    if job.started_at is not None:
        data["started_at"] = iso_z(job.started_at)
    if job.status in (JobStatus.PROCESSING, JobStatus.QUEUED):
        if job.current_stage:
            progress["current_stage"] = job.current_stage
        if job.estimated_completion is not None:
            progress["estimated_completion"] = iso_z(job.estimated_completion)
    data["progress"] = progress
    if job.status == JobStatus.COMPLETED:
        data["completed_at"] = iso_z(job.completed_at or job.updated_at)
        data["summary"] = {
            "total_detections": job.total_detections or 0,
            "average_confidence": job.average_confidence,
            "processing_time_seconds": job.processing_time_seconds or 0.0,
        }
        data["results_url"] = f"/api/v1/jobs/{job.id}/results"
        data["visualization_url"] = f"/api/v1/jobs/{job.id}/visualization"
    if job.status == JobStatus.FAILED:
        data["failed_at"] = iso_z(job.failed_at or job.updated_at)
    if job.status == JobStatus.CANCELLED:
        data["cancelled_at"] = iso_z(job.cancelled_at or job.updated_at)
    if job.error_code and job.status in (JobStatus.FAILED, JobStatus.QUEUED):
        data["error"] = {
            "code": job.error_code,
            "message": job.error_message or "",
            "details": job.error_details,
        }
    return data


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


def status_url(job_id: str) -> str:
    """Return the path a client polls for the job's status."""
    return f"/api/v1/jobs/{job_id}/status"


def list_item(job: Job) -> JobListItem:
    """Return the job list's view of a job."""
    return JobListItem(
        job_id=job.id,
        status=job.status,
        upload_id=job.upload_id,
        file_count=job.file_count,
        processed_images=job.processed_count,
        created_at=job.created_at,
        updated_at=job.updated_at,
        status_url=status_url(job.id),
    )


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
