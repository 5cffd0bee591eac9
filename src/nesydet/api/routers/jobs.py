"""Endpoints 2 to 5: start a job, its status, results and visualizations; job list, cancel,
and a Server-Sent Events stream of status changes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from nesydet.api.deps import (
    DispatcherDep,
    IdempotencyDep,
    SessionDep,
    SessionmakerDep,
    SettingsDep,
    StatusCacheDep,
    StorageDep,
)
from nesydet.api.params import FileIdPath, FileIdQuery, JobIdPath
from nesydet.api.responses import remembered, replay_response
from nesydet.domain import JobStatus
from nesydet.schemas.common import error_responses
from nesydet.schemas.jobs import (
    STATUS_EXAMPLES,
    JobListData,
    JobListResponse,
    JobStatusResponse,
    PredictData,
    PredictRequest,
    PredictResponse,
)
from nesydet.schemas.results import (
    RESULTS_EXAMPLES,
    VISUALIZATION_EXAMPLES,
    ResultsResponse,
    VisualizationResponse,
)
from nesydet.services import idempotency
from nesydet.services import jobs as job_service
from nesydet.services import results as result_service
from nesydet.services.job_events import status_events
from nesydet.services.job_status import job_status_payload, list_item, status_url

router = APIRouter(prefix="/api/v1", tags=["jobs"])

_KEY_REUSED = (
    409,
    "IDEMPOTENCY_KEY_REUSED",
    "This Idempotency-Key was used with a different request",
    "key 'abc' was first sent with another body; use a new key for a new request",
)
_JOB_404 = (404, "JOB_NOT_FOUND", "Job not found", "no job with id job_000000000000")
_NOT_READY = (404, "RESULTS_NOT_READY", "Results not available", "Job is still processing")
_RESULT_ERRORS = error_responses(
    _JOB_404,
    _NOT_READY,
    (404, "FILE_NOT_FOUND", "File not in this job", "img_x is not a file of job_abc123xyz789"),
)
_PREDICT_EXAMPLE = {
    "status": "accepted",
    "message": "Inference job created",
    "data": {
        "job_id": "job_abc123xyz789",
        "status": "queued",
        "created_at": "2026-02-02T18:54:57.324Z",
        "estimated_completion": "2026-02-02T18:56:30.000Z",
        "file_count": 2,
        "status_url": "/api/v1/jobs/job_abc123xyz789/status",
        "config": {
            "model_path": "nesydet-demo-obb.pt",
            "confidence_threshold": 0.25,
            "iou_threshold": 0.45,
            "class_agnostic_nms": False,
            "sahi": {
                "enabled": True,
                "slice_width": 640,
                "slice_height": 640,
                "overlap_ratio": 0.2,
            },
            "symbolic_reasoning": {"enabled": True, "rules_file": "dota.pl"},
            "visualization": {"enabled": True, "show_labels": True, "confidence_display": True},
        },
    },
}


@router.post(
    "/inference/predict",
    status_code=202,
    response_model=PredictResponse,
    summary="Start an inference job",
    description=(
        "Create a job over files of an upload (all of them when `file_ids` is left out). The "
        "job is stored first, then queued; the answer comes at once with the job id. Every "
        "config field has a default; unknown fields are refused. With an `Idempotency-Key` "
        "header, sending the same body again within 24 h returns the first answer (marked "
        "`Idempotent-Replayed: true`) instead of creating a second job."
    ),
    responses={
        202: {"content": {"application/json": {"example": _PREDICT_EXAMPLE}}},
        **error_responses(
            (
                400,
                "INVALID_CONFIG",
                "Invalid configuration",
                "config.confidence_threshold: Must be between 0.0 and 1.0",
            ),
            (
                400,
                "INVALID_FILE_IDS",
                "file_ids must name files of the upload",
                "img_000000000000 is not a file of upl_a1b2c3d4e5f6",
            ),
            (404, "UPLOAD_NOT_FOUND", "Upload not found", "no upload with id upl_000000000000"),
            _KEY_REUSED,
            (
                429,
                "RATE_LIMIT_EXCEEDED",
                "Too many requests, try again later",
                "limit 600 per 1 minute",
            ),
        ),
    },
)
async def predict(
    body: PredictRequest,
    session: SessionDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    sessionmaker: SessionmakerDep,
    cache: StatusCacheDep,
    idempotent: IdempotencyDep,
) -> PredictResponse | JSONResponse:
    """Create and queue a job."""
    if idempotent is not None:
        replay = await idempotency.claim(
            session=session,
            request=idempotent,
            content_fingerprint=idempotency.fingerprint(body.model_dump(mode="json")),
        )
        if replay is not None:
            return replay_response(replay)
    job = await job_service.create_job(
        session=session,
        settings=settings,
        dispatcher=dispatcher,
        sessionmaker=sessionmaker,
        cache=cache,
        request=body,
    )
    config = body.config.model_copy(update={"model_path": job.config["model_path"]})
    response = PredictResponse(
        data=PredictData(
            job_id=job.id,
            status=job.status,
            created_at=job.created_at,
            estimated_completion=job.estimated_completion,
            file_count=job.file_count,
            status_url=status_url(job.id),
            config=config,
        )
    )
    await remembered(session, idempotent, response, 202)
    return response


@router.get(
    "/jobs",
    response_model=JobListResponse,
    summary="List jobs, newest first",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "status": "success",
                        "data": {
                            "jobs": [
                                {
                                    "job_id": "job_abc123xyz789",
                                    "status": "completed",
                                    "upload_id": "upl_a1b2c3d4e5f6",
                                    "file_count": 2,
                                    "processed_images": 2,
                                    "created_at": "2026-02-02T18:54:57.324Z",
                                    "updated_at": "2026-02-02T18:56:15.500Z",
                                    "status_url": "/api/v1/jobs/job_abc123xyz789/status",
                                }
                            ],
                            "next_cursor": "MjAyNi0wMi0wMlQxODo1NDo1Ny4zMjQr"
                            "MDA6MDB8am9iX2FiYzEyM3h5ejc4OQ",
                        },
                    }
                }
            }
        },
    },
)
async def list_jobs(
    session: SessionDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> JobListResponse:
    """Return a page of jobs."""
    jobs, next_cursor = await job_service.list_jobs(
        session=session, status=status.value if status else None, limit=limit, cursor=cursor
    )
    return JobListResponse(
        data=JobListData(jobs=[list_item(j) for j in jobs], next_cursor=next_cursor)
    )


@router.get(
    "/jobs/{job_id}/status",
    response_model=JobStatusResponse,
    response_model_exclude_none=True,
    summary="Job status",
    description="Cheap to poll: served from the status cache when there is one.",
    responses={
        200: {"content": {"application/json": {"examples": STATUS_EXAMPLES}}},
        **error_responses(_JOB_404),
    },
)
async def job_status(
    job_id: JobIdPath, sessionmaker: SessionmakerDep, cache: StatusCacheDep
) -> Response:
    """Return the job's status and progress."""
    body = await job_service.status_body(sessionmaker=sessionmaker, cache=cache, job_id=job_id)
    return Response(body, media_type="application/json")


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobStatusResponse,
    summary="Cancel a job",
    description=(
        "A queued job is cancelled at once; a running one stops before its next image and "
        "keeps no results. Cancelling a cancelled job changes nothing."
    ),
    responses={
        200: {"content": {"application/json": {"example": STATUS_EXAMPLES["cancelled"]["value"]}}},
        **error_responses(
            _JOB_404,
            (
                409,
                "JOB_NOT_CANCELLABLE",
                "The job has already finished",
                "job job_abc123xyz789 is completed",
            ),
        ),
    },
)
async def cancel(job_id: JobIdPath, session: SessionDep, cache: StatusCacheDep) -> JSONResponse:
    """Cancel the job."""
    job = await job_service.cancel_job(session=session, cache=cache, job_id=job_id)
    return JSONResponse({"status": "success", "data": job_status_payload(job)})


@router.get(
    "/jobs/{job_id}/events",
    summary="Stream status changes (Server-Sent Events)",
    description=(
        "`text/event-stream` of `status` events, one per change of the job's status or "
        "progress, with the status endpoint's `data` as JSON. The stream ends after the job "
        "reaches completed, failed or cancelled."
    ),
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "example": "id: 1\nevent: status\n"
                    'data: {"job_id": "job_abc123xyz789", "status": "queued", ...}\n\n'
                }
            }
        },
        **error_responses(_JOB_404),
    },
)
async def events(
    job_id: JobIdPath,
    request: Request,
    session: SessionDep,
    sessionmaker: SessionmakerDep,
    cache: StatusCacheDep,
) -> StreamingResponse:
    """Stream the job's status changes until it ends."""
    await job_service.get_job(session=session, job_id=job_id)  # 404 before the stream starts
    stream = status_events(
        sessionmaker=sessionmaker, cache=cache, job_id=job_id, disconnected=request.is_disconnected
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/jobs/{job_id}/results",
    response_model=ResultsResponse,
    summary="Detections of a completed job",
    description=(
        "`format=json` (default) gives each file's detections with `bbox` (pixels, xyxy), "
        "`bbox_normalized` (YOLO), the oriented `polygon` for OBB models and the reasoning "
        "trace; `yolo` gives label text per file; `coco` a whole COCO document; `voc` Pascal "
        "VOC XML per file."
    ),
    responses={
        200: {"content": {"application/json": {"examples": RESULTS_EXAMPLES}}},
        **_RESULT_ERRORS,
    },
)
async def results(
    job_id: JobIdPath,
    session: SessionDep,
    format: Annotated[Literal["json", "yolo", "coco", "voc"], Query()] = "json",
    file_id: FileIdQuery = None,
) -> ResultsResponse:
    """Return the job's detections in the requested format."""
    data = await result_service.results(session=session, job_id=job_id, fmt=format, file_id=file_id)
    return ResultsResponse(data=data)


@router.get(
    "/jobs/{job_id}/results/{file_id}/labels.txt",
    response_class=PlainTextResponse,
    summary="YOLO label file of one image",
    responses={
        200: {"content": {"text/plain": {"example": "0 0.104 0.185 0.104 0.093 0.95\n"}}},
        **_RESULT_ERRORS,
    },
)
async def labels(job_id: JobIdPath, file_id: FileIdPath, session: SessionDep) -> PlainTextResponse:
    """Return one file's labels as a text file."""
    text = await result_service.labels_text(session=session, job_id=job_id, file_id=file_id)
    return PlainTextResponse(
        text, headers={"Content-Disposition": f'attachment; filename="{file_id}.txt"'}
    )


@router.get(
    "/jobs/{job_id}/visualization",
    response_model=VisualizationResponse,
    summary="Annotated images of a completed job",
    description=(
        "`format=url` (default) gives links; `format=base64` gives one file's images inline."
    ),
    responses={
        200: {"content": {"application/json": {"examples": VISUALIZATION_EXAMPLES}}},
        **_RESULT_ERRORS,
    },
)
async def visualization(
    job_id: JobIdPath,
    session: SessionDep,
    storage: StorageDep,
    file_id: FileIdQuery = None,
    format: Annotated[Literal["url", "base64"], Query()] = "url",
) -> VisualizationResponse:
    """Return the job's visualizations."""
    data: dict[str, Any] = await result_service.visualizations(
        session=session, storage=storage, job_id=job_id, file_id=file_id, fmt=format
    )
    return VisualizationResponse(data=data)
