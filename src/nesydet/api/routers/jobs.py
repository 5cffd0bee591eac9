"""Endpoints 2 to 5: start a job, its status, results and visualizations; job list, cancel,
and a Server-Sent Events stream of status changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from nesydet.api.auth import ReaderDep, WriterDep
from nesydet.api.deps import (
    DispatcherDep,
    IdempotencyDep,
    SessionDep,
    SessionmakerDep,
    SettingsDep,
    StatusCacheDep,
    StorageDep,
)
from nesydet.api.params import JobIdPath
from nesydet.api.responses import remembered, replay_response
from nesydet.api.routers.results import JOB_404
from nesydet.domain import JobStatus
from nesydet.ids import USER, id_pattern
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
from nesydet.services import idempotency, job_assets, retention
from nesydet.services import jobs as job_service
from nesydet.services.job_events import status_events
from nesydet.services.job_status import job_status_payload, list_item, status_url
from nesydet.services.webhooks import subscriptions as webhooks

router = APIRouter(prefix="/api/v1", tags=["jobs"])

_KEY_REUSED = (
    409,
    "IDEMPOTENCY_KEY_REUSED",
    "This Idempotency-Key was used with a different request",
    "key 'abc' was first sent with another body; use a new key for a new request",
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
            (
                400,
                "WEBHOOK_URL_REFUSED",
                "The webhook URL is not allowed",
                "webhook_url: 10.0.0.5 is a private address",
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
    principal: WriterDep,
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
        owner=principal.owner,
    )
    config = job_assets.response_config(body.config, job)
    hook = await webhooks.job_webhook(session=session, job_id=job.id) if body.webhook_url else None
    response = PredictResponse(
        data=PredictData(
            job_id=job.id,
            status=job.status,
            created_at=job.created_at,
            estimated_completion=job.estimated_completion,
            file_count=job.file_count,
            status_url=status_url(job.id),
            config=config,
            webhook=webhooks.webhook_created(hook) if hook is not None else None,
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
    principal: ReaderDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    owner: Annotated[
        str | None,
        Query(pattern=id_pattern(USER), description="admins and viewers: only this user's jobs"),
    ] = None,
) -> JobListResponse:
    """Return a page of the caller's jobs (everyone's for an admin or a viewer)."""
    jobs, next_cursor = await job_service.list_jobs(
        session=session,
        status=status.value if status else None,
        limit=limit,
        cursor=cursor,
        owner=principal.owner or owner,
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
        **error_responses(JOB_404),
    },
)
async def job_status(
    job_id: JobIdPath, sessionmaker: SessionmakerDep, cache: StatusCacheDep, principal: ReaderDep
) -> Response:
    """Return the job's status and progress."""
    body = await job_service.status_body(
        sessionmaker=sessionmaker, cache=cache, job_id=job_id, owner=principal.owner
    )
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
            JOB_404,
            (
                409,
                "JOB_NOT_CANCELLABLE",
                "The job has already finished",
                "job job_abc123xyz789 is completed",
            ),
        ),
    },
)
async def cancel(
    job_id: JobIdPath,
    session: SessionDep,
    cache: StatusCacheDep,
    dispatcher: DispatcherDep,
    principal: WriterDep,
) -> JSONResponse:
    """Cancel the job."""
    job = await job_service.cancel_job(
        session=session, cache=cache, job_id=job_id, owner=principal.owner, dispatcher=dispatcher
    )
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
        **error_responses(JOB_404),
    },
)
async def events(
    job_id: JobIdPath,
    request: Request,
    session: SessionDep,
    sessionmaker: SessionmakerDep,
    cache: StatusCacheDep,
    principal: ReaderDep,
) -> StreamingResponse:
    """Stream the job's status changes until it ends."""
    owner = principal.owner
    await job_service.get_job(session=session, job_id=job_id, owner=owner)  # 404 first
    stream = status_events(
        sessionmaker=sessionmaker,
        cache=cache,
        job_id=job_id,
        owner=owner,
        disconnected=request.is_disconnected,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.delete(
    "/jobs/{job_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a finished job and its results",
    description="Refused (409 `JOB_RUNNING`) while the job is queued or running: cancel it first.",
    responses=error_responses(
        JOB_404,
        (409, "JOB_RUNNING", "The job is queued or running: cancel it first", "job is queued"),
    ),
)
async def delete_job(
    job_id: JobIdPath, session: SessionDep, storage: StorageDep, principal: WriterDep
) -> Response:
    """Delete the job."""
    await retention.delete_job(
        session=session, storage=storage, job_id=job_id, owner=principal.owner
    )
    return Response(status_code=204)
