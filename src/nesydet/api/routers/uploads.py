"""Endpoint 1: upload images; and reading an upload back."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from nesydet.api.auth import ReaderDep, WriterDep
from nesydet.api.deps import CheckerDep, IdempotencyDep, SessionDep, SettingsDep, StorageDep
from nesydet.api.params import UploadIdPath
from nesydet.api.responses import remembered, replay_response
from nesydet.schemas.common import error_responses, multipart_body
from nesydet.schemas.uploads import UPLOAD_EXAMPLE, UploadResponse
from nesydet.services import retention
from nesydet.services import uploads as upload_service
from nesydet.services.idempotency import Replay

router = APIRouter(prefix="/api/v1", tags=["uploads"])

_MULTIPART_BODY = multipart_body(
    {
        "files": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "1 to 100 images (JPEG, PNG, TIFF), 50 MB each at most",
        }
    },
    ["files"],
    {"files": "image/jpeg, image/png, image/tiff"},
)

_UPLOAD_ERRORS = error_responses(
    (
        400,
        "INVALID_FORMAT",
        "Unsupported file format. Allowed: JPEG, PNG, TIFF",
        "document.pdf: INVALID_FORMAT",
    ),
    (400, "FILE_TOO_LARGE", "File exceeds the size limit of 50 MB", "big.tif: FILE_TOO_LARGE"),
    (
        400,
        "INVALID_DIMENSIONS",
        "Image dimensions out of range (64x64 to 8192x8192)",
        "tiny.png: INVALID_DIMENSIONS",
    ),
    (400, "CORRUPTED_FILE", "Image could not be decoded", "broken.png: CORRUPTED_FILE"),
    (400, "TOO_MANY_FILES", "Too many files: at most 100 per upload", "101 files received"),
    (400, "NO_FILES", "No files in the multipart field 'files'", "send 1 to 100 images as 'files'"),
    (
        400,
        "VALIDATION_ERROR",
        "2 of 3 files failed validation",
        "a.pdf: INVALID_FORMAT, b.png: CORRUPTED_FILE",
    ),
    (400, "INVALID_REQUEST", "Content-Type must be multipart/form-data", "got application/json"),
    (
        413,
        "REQUEST_TOO_LARGE",
        "Request body too large",
        "a request may carry at most 5245034496 bytes",
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
    "/inference/upload",
    response_model=UploadResponse,
    summary="Upload images",
    description=(
        "Upload 1 to 100 images in the multipart field `files`. Formats are detected from the "
        "file content (JPEG, PNG, TIFF), never from the name. Each file may be 50 MB and "
        "64x64 to 8192x8192 pixels. If any file fails, nothing is stored and every failure is "
        "listed in `errors[]` with its filename and error code. With an `Idempotency-Key` "
        "header, the same files sent again within 24 h return the first answer instead of a "
        "second upload."
    ),
    responses={
        200: {"content": {"application/json": {"example": UPLOAD_EXAMPLE}}},
        **_UPLOAD_ERRORS,
    },
    openapi_extra=_MULTIPART_BODY,
)
async def upload_images(
    request: Request,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    checker: CheckerDep,
    idempotent: IdempotencyDep,
    principal: WriterDep,
) -> UploadResponse | JSONResponse:
    """Store a batch of images and return their ids."""
    outcome = await upload_service.create_upload(
        session=session,
        storage=storage,
        checker=checker,
        settings=settings,
        content_type=request.headers.get("content-type"),
        body=request.stream(),
        client_address=request.client.host if request.client else None,
        owner_id=principal.user_id,
        idempotent=idempotent,
    )
    if isinstance(outcome, Replay):
        return replay_response(outcome)
    noun = "image" if outcome.file_count == 1 else "images"
    response = UploadResponse(
        message=f"{outcome.file_count} {noun} uploaded successfully",
        data=upload_service.upload_data(outcome),
    )
    await remembered(session, idempotent, response, 200)
    return response


@router.get(
    "/uploads/{upload_id}",
    response_model=UploadResponse,
    summary="Read an upload back",
    responses={
        200: {"content": {"application/json": {"example": UPLOAD_EXAMPLE}}},
        **error_responses(
            (404, "UPLOAD_NOT_FOUND", "Upload not found", "no upload with id upl_000000000000")
        ),
    },
)
async def get_upload(
    upload_id: UploadIdPath, session: SessionDep, principal: ReaderDep
) -> UploadResponse:
    """Return an upload and its files."""
    upload = await upload_service.get_upload(
        session=session, upload_id=upload_id, owner=principal.owner
    )
    return UploadResponse(
        message=f"upload with {upload.file_count} files", data=upload_service.upload_data(upload)
    )


@router.delete(
    "/uploads/{upload_id}",
    status_code=204,
    response_class=Response,
    summary="Delete an upload and everything made from it",
    description=(
        "The images, every job on them with its detections, labels and annotated images. "
        "Refused (409 `UPLOAD_IN_USE`) while a job on it is queued or running."
    ),
    responses=error_responses(
        (404, "UPLOAD_NOT_FOUND", "Upload not found", "no upload with id upl_000000000000"),
        (409, "UPLOAD_IN_USE", "A queued or running job uses this upload", "cancel it first"),
    ),
)
async def delete_upload(
    upload_id: UploadIdPath, session: SessionDep, storage: StorageDep, principal: WriterDep
) -> Response:
    """Delete the upload."""
    await retention.delete_upload(
        session=session, storage=storage, upload_id=upload_id, owner=principal.owner
    )
    return Response(status_code=204)
