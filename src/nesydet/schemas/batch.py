"""Batch submission response models: the upload's, extended; and a job started with it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from nesydet.schemas.jobs import PredictData
from nesydet.schemas.uploads import UPLOAD_EXAMPLE, UploadData

SKIPPED_SHOWN = 100


class BatchUploadData(UploadData):
    """The upload's data; each file's ``filename`` is its relative path in the archive."""

    skipped_count: int = Field(
        default=0, description="entries skipped as archiver debris: hidden files, __MACOSX/"
    )
    skipped_entries: list[str] = Field(
        default_factory=list, description=f"their paths (the first {SKIPPED_SHOWN})"
    )


class BatchUploadResponse(BaseModel):
    status: Literal["success"] = "success"
    message: str
    data: BatchUploadData


class BatchJobData(PredictData):
    """The predict response's data, with the upload the archive became."""

    upload_id: str = Field(examples=["upl_a1b2c3d4e5f6"])
    upload: BatchUploadData


class BatchJobResponse(BaseModel):
    status: Literal["accepted"] = "accepted"
    message: str = "Inference job created"
    data: BatchJobData


def _upload_example() -> dict[str, Any]:
    data: dict[str, Any] = dict(UPLOAD_EXAMPLE["data"])  # type: ignore[arg-type]
    files = [dict(f) for f in data["uploaded_files"]]
    files[0]["filename"] = "site_a/2026-01/image1.jpg"
    files[1]["filename"] = "site_b/image2.png"
    return {**data, "uploaded_files": files, "skipped_count": 1, "skipped_entries": [
        "__MACOSX/site_a/._image1.jpg"
    ]}  # fmt: skip


BATCH_UPLOAD_EXAMPLE: dict[str, Any] = {
    "status": "success",
    "message": "2 images uploaded successfully",
    "data": _upload_example(),
}
BATCH_JOB_EXAMPLE: dict[str, Any] = {
    "status": "accepted",
    "message": "Inference job created",
    "data": {
        "job_id": "job_abc123xyz789",
        "status": "queued",
        "created_at": "2026-02-02T18:54:57.324Z",
        "estimated_completion": "2026-02-02T18:56:30.000Z",
        "file_count": 2,
        "status_url": "/api/v1/jobs/job_abc123xyz789/status",
        "config": {"model_path": "nesydet-demo-obb.pt", "confidence_threshold": 0.3},
        "upload_id": "upl_a1b2c3d4e5f6",
        "upload": _upload_example(),
    },
}
