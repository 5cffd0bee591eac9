"""Bulk download: a completed job's results as one ZIP archive, streamed as it is built."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from nesydet.api.auth import ReaderDep
from nesydet.api.deps import SessionDep, SessionmakerDep, StorageDep
from nesydet.api.params import JobIdPath
from nesydet.api.routers.files import content_disposition
from nesydet.api.routers.results import JOB_404
from nesydet.schemas.common import error_responses
from nesydet.services import downloads as download_service

router = APIRouter(prefix="/api/v1", tags=["jobs"])


@router.get(
    "/jobs/{job_id}/download",
    summary="Download a completed job's results as one ZIP archive",
    description=(
        "A ZIP archive built while it is sent (no Content-Length), under one folder named "
        "after the job: `labels/{name}.json|.txt|.xml` (include=labels; per image, in the "
        "chosen format), `annotated/{name}.jpg`, `thumbnails/{name}.jpg`, "
        "`originals/{name}.{ext}`, the whole job in one document (`results.json` for json, "
        "`coco.json` for coco, `classes.txt` for yolo and yolo_obb) and `manifest.json` (the "
        "job, and per "
        "image its file id and members). `name` is the image's file name (its path in a batch "
        "archive) without extension, with `_{file_id}` added where two images share it. "
        "`include` is a comma-separated list; default `labels`, empty for none."
    ),
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/zip": {
                    "schema": {"type": "string", "format": "binary"},
                    "example": "(binary: a ZIP archive)",
                }
            },
            "description": "The archive",
        },
        **error_responses(
            JOB_404,
            (404, "RESULTS_NOT_READY", "Results not available", "Job is still processing"),
            (
                400,
                "VALIDATION_ERROR",
                "Invalid include",
                "include: choose from labels, annotated, originals, thumbnails",
            ),
        ),
    },
)
async def download(
    job_id: JobIdPath,
    session: SessionDep,
    sessionmaker: SessionmakerDep,
    storage: StorageDep,
    principal: ReaderDep,
    format: Annotated[Literal["json", "yolo", "yolo_obb", "coco", "voc"], Query()] = "json",
    include: Annotated[
        str | None,
        Query(
            max_length=200,
            description="comma-separated: labels, annotated, originals, thumbnails",
            examples=["labels,annotated"],
        ),
    ] = None,
) -> StreamingResponse:
    """Stream the job's results archive."""
    parts = download_service.parse_include(include)
    plan = await download_service.plan_download(
        session=session, job_id=job_id, fmt=format, include=parts, owner=principal.owner
    )
    filename = download_service.archive_filename(plan)
    return StreamingResponse(
        download_service.stream_download(plan, sessionmaker=sessionmaker, storage=storage),
        media_type="application/zip",
        headers={
            "Content-Disposition": content_disposition(filename, attachment=True),
            "Cache-Control": "private, no-store",
            "X-Accel-Buffering": "no",
        },
    )
