"""A job as clients see it: the status endpoint's payload, built in one place so that the
API and the workers (which fill the status cache) agree, and the job list's items."""

from __future__ import annotations

from typing import Any

from nesydet.db.models import Job
from nesydet.domain import TERMINAL_STATUSES, JobStatus
from nesydet.schemas.common import iso_z
from nesydet.schemas.jobs import JobListItem
from nesydet.services.registry.resolve import public
from nesydet.services.status_cache import StatusCache


def _percentage(job: Job) -> int:
    if job.file_count == 0:
        return 100
    return int(100 * job.processed_count / job.file_count)


def job_status_payload(job: Job) -> dict[str, Any]:
    """Return the status endpoint's ``data`` for a job, as JSON-ready values."""
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
    for key, ref in (("model", job.model_ref), ("rules", job.rules_ref)):
        if ref is not None:
            data[key] = public(ref)
    return data


async def publish(cache: StatusCache, job: Job) -> None:
    """Put a just-committed job's status in the cache (unless a newer one is there)."""
    await cache.put(job.id, job.version, job.owner_id, job_status_payload(job))


def is_terminal(status: str) -> bool:
    """Return whether a job in this status will not change again."""
    return status in TERMINAL_STATUSES


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
