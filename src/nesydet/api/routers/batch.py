"""Batch submission: a directory tree of images as one ZIP archive, and optionally its job."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from nesydet.api.auth import WriterDep
from nesydet.api.deps import (
    CheckerDep,
    DispatcherDep,
    IdempotencyDep,
    SessionDep,
    SessionmakerDep,
    SettingsDep,
    StatusCacheDep,
    StorageDep,
)
from nesydet.api.responses import remembered, replay_response
from nesydet.schemas.batch import (
    BATCH_JOB_EXAMPLE,
    BATCH_UPLOAD_EXAMPLE,
    SKIPPED_SHOWN,
    BatchJobData,
    BatchJobResponse,
    BatchUploadData,
    BatchUploadResponse,
)
from nesydet.schemas.common import error_responses, multipart_body
from nesydet.services import batch as batch_service
from nesydet.services import job_assets
from nesydet.services import uploads as upload_service
from nesydet.services.batch import BatchOutcome, BatchRequest, BatchServices
from nesydet.services.idempotency import Replay
from nesydet.services.job_status import status_url

router = APIRouter(prefix="/api/v1", tags=["uploads"])

_BODY = multipart_body(
    {
        "archive": {
            "type": "string",
            "format": "binary",
            "description": "one ZIP archive of JPEG, PNG and TIFF images, in "
            "folders if you like; each image is checked as an upload's is",
        },
        "config": {
            "type": "string",
            "description": "optional: the predict body's `config` as JSON; "
            "with it a job over every image starts at once (202)",
            "example": '{"confidence_threshold": 0.3}',
        },
    },
    ["archive"],
    {"archive": "application/zip", "config": "application/json, text/plain"},
)

_ERRORS = error_responses(
    (400, "NO_FILES", "No archive in the multipart field 'archive'", "send one ZIP archive"),
    (400, "INVALID_ARCHIVE", "The archive is not a ZIP archive", "send a ZIP archive"),
    (400, "TOO_MANY_FILES", "Too many files: at most 10000 entries per archive", "12000"),
    (
        400,
        "SUSPECTED_ZIP_BOMB",
        "The archive looks like a zip bomb",
        "1048576 bytes that expand to 4294967296 (more than 100x)",
    ),
    (
        400,
        "VALIDATION_ERROR",
        "2 of 1000 files failed validation",
        "../evil.png: UNSAFE_PATH, site_a/notes.txt: INVALID_FORMAT",
    ),
    (
        400,
        "INVALID_CONFIG",
        "Invalid configuration",
        "config.confidence_threshold: Must be between 0.0 and 1.0",
    ),
    (400, "INVALID_REQUEST", "Content-Type must be multipart/form-data", "got application/zip"),
    (
        413,
        "ARCHIVE_TOO_LARGE",
        "The archive expands to more than the limit",
        "its entries expand to 20000000000 bytes; at most 17179869184",
    ),
    (
        409,
        "IDEMPOTENCY_KEY_REUSED",
        "This Idempotency-Key was used with a different request",
        "key 'abc' was first sent with another body; use a new key for a new request",
    ),
    (429, "RATE_LIMIT_EXCEEDED", "Too many requests, try again later", "100 per 1 minute"),
    (500, "STORAGE_ERROR", "Could not store the uploaded files", "No space left on device"),
)


@router.post(
    "/inference/batch",
    response_model=BatchUploadResponse | BatchJobResponse,
    summary="Submit a directory of images as one ZIP archive",
    description=(
        "One ZIP archive in the multipart field `archive`: every file in it (folders kept: "
        "`site_a/img1.jpg` is the file's name) is checked as an upload's files are. If any "
        "entry fails (not an image, too large, a path with `..` or an absolute one, a link, "
        "a duplicate path), nothing is kept and every failure is listed in `errors[]`. Hidden "
        "files and `__MACOSX/` are skipped. Without `config` the answer is the upload's (200); "
        "with `config` (the predict body's `config` as JSON) a job over every image is created "
        "as well and the answer is the predict answer (202) with `upload_id` and `upload`. "
        "Limits: `NESYDET_BATCH_MAX_ARCHIVE_BYTES`, `NESYDET_BATCH_MAX_ENTRIES`, "
        "`NESYDET_BATCH_MAX_TOTAL_BYTES` and `NESYDET_BATCH_MAX_COMPRESSION_RATIO`."
    ),
    responses={
        200: {"content": {"application/json": {"example": BATCH_UPLOAD_EXAMPLE}}},
        202: {
            "model": BatchJobResponse,
            "description": "Upload stored and job created",
            "content": {"application/json": {"example": BATCH_JOB_EXAMPLE}},
        },
        **_ERRORS,
    },
    openapi_extra=_BODY,
)
async def submit_batch(
    request: Request,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    checker: CheckerDep,
    dispatcher: DispatcherDep,
    sessionmaker: SessionmakerDep,
    cache: StatusCacheDep,
    idempotent: IdempotencyDep,
    principal: WriterDep,
) -> BatchUploadResponse | BatchJobResponse | JSONResponse:
    """Store the archive's images as one upload; start a job on them with a config."""
    outcome = await batch_service.create_batch(
        session=session,
        services=BatchServices(
            settings=settings,
            storage=storage,
            checker=checker,
            dispatcher=dispatcher,
            sessionmaker=sessionmaker,
            cache=cache,
        ),
        request=BatchRequest(
            content_type=request.headers.get("content-type"),
            client_address=request.client.host if request.client else None,
            owner_id=principal.user_id,
            owner=principal.owner,
            idempotent=idempotent,
        ),
        body=request.stream(),
    )
    if isinstance(outcome, Replay):
        return replay_response(outcome)
    response = _response(outcome)
    status = 202 if isinstance(response, BatchJobResponse) else 200
    await remembered(session, idempotent, response, status)
    if status == 202:
        return JSONResponse(response.model_dump(mode="json"), status_code=202)
    return response


def _upload_data(outcome: BatchOutcome) -> BatchUploadData:
    data = upload_service.upload_data(outcome.upload)
    return BatchUploadData(
        **data.model_dump(),
        skipped_count=len(outcome.skipped),
        skipped_entries=outcome.skipped[:SKIPPED_SHOWN],
    )


def _response(outcome: BatchOutcome) -> BatchUploadResponse | BatchJobResponse:
    upload = _upload_data(outcome)
    job = outcome.job
    if job is None or outcome.config is None:
        noun = "image" if upload.file_count == 1 else "images"
        return BatchUploadResponse(
            message=f"{upload.file_count} {noun} uploaded successfully", data=upload
        )
    config = job_assets.response_config(outcome.config, job)
    return BatchJobResponse(
        data=BatchJobData(
            job_id=job.id,
            status=job.status,
            created_at=job.created_at,
            estimated_completion=job.estimated_completion,
            file_count=job.file_count,
            status_url=status_url(job.id),
            config=config,
            upload_id=upload.upload_id,
            upload=upload,
        )
    )
