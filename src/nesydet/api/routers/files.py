"""Binary files: the original upload, and the annotated image and thumbnail of a job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from nesydet.api.auth import ReaderDep
from nesydet.api.deps import SessionDep, StorageDep
from nesydet.api.params import FileIdPath, JobIdQuery
from nesydet.errors import FileNotFound, StorageError, ValidationFailed
from nesydet.schemas.common import error_responses
from nesydet.services import results as result_service
from nesydet.storage import Storage, StorageFailure

router = APIRouter(prefix="/api/v1", tags=["files"])


def cache_control(immutable: bool, *, private: bool) -> str:
    """Return how long a response may be kept, and by whom: an account's images only by the
    client itself (``private``), never by a shared cache."""
    if not immutable:
        return "private, no-cache" if private else "no-cache"
    return f"{'private' if private else 'public'}, max-age=31536000, immutable"


def content_disposition(filename: str, *, attachment: bool) -> str:
    """Return a Content-Disposition header for ``filename``, as Starlette's FileResponse does.

    Header values are Latin-1: a name outside ASCII goes in RFC 5987's ``filename*`` form.
    """
    kind = "attachment" if attachment else "inline"
    quoted = quote(filename)
    if quoted != filename:
        return f"{kind}; filename*=utf-8''{quoted}"
    return f'{kind}; filename="{filename}"'


@router.get(
    "/files/{file_id}/{kind}",
    summary="An image: original, annotated or thumbnail",
    description=(
        "`original` is the uploaded file as it was sent (a download); `original?as=png` is its "
        "PNG rendering, shown inline, which any `<img>` displays (for TIFF uploads). "
        "`annotated` and `thumbnail` (JPEG) come from the job given by `job_id`, or from the "
        "file's most recent completed job. Responses carry an `ETag`; send it back in "
        "`If-None-Match` to get 304."
    ),
    response_class=Response,
    responses={
        200: {
            "content": {
                "image/jpeg": {"example": "(binary)"},
                "image/png": {"example": "(binary)"},
                "image/tiff": {"example": "(binary)"},
            },
            "description": "The image",
        },
        304: {"description": "Not modified", "content": {"image/jpeg": {"example": ""}}},
        **error_responses(
            (404, "FILE_NOT_FOUND", "File not found", "no file with id img_000000000000"),
            (
                404,
                "RESULTS_NOT_READY",
                "Results not available",
                "no annotated image of img_x in any completed job",
            ),
        ),
    },
)
async def get_file(
    file_id: FileIdPath,
    kind: Literal["original", "annotated", "thumbnail"],
    request: Request,
    session: SessionDep,
    storage: StorageDep,
    principal: ReaderDep,
    job_id: JobIdQuery = None,
    as_: Annotated[
        Literal["png"] | None,
        Query(alias="as", description="`png`: the original rendered as PNG (original only)"),
    ] = None,
) -> Response:
    """Return the image bytes with caching headers."""
    if as_ is not None and kind != "original":
        raise _as_png_refused(kind)
    item = await result_service.artefact(
        session=session,
        file_id=file_id,
        kind=kind,
        job_id=job_id,
        owner=principal.owner,
        storage=storage,
        as_png=as_ is not None,
    )
    try:
        stat = await anyio.to_thread.run_sync(storage.stat, item.key)
    except StorageFailure as exc:
        raise StorageError("Could not read a stored image", details=str(exc)) from exc
    if stat is None:
        raise FileNotFound(
            "File not found", details=f"the stored {kind} image of {file_id} is missing"
        )
    etag = f'"{stat.etag}"'
    headers = {
        "ETag": etag,
        "Cache-Control": cache_control(item.immutable, private=principal.via != "none"),
        # An original is the client's file as sent: a download, never rendered by a browser
        # (a PNG that is also HTML or ZIP is a valid PNG). Our own encodings may show inline.
        "Content-Disposition": content_disposition(
            item.filename, attachment=kind == "original" and as_ is None
        ),
    }
    if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    path = storage.local_path(item.key)
    if path is not None:
        return FileResponse(path, media_type=item.content_type, headers=headers, stat_result=None)
    return StreamingResponse(
        iterate(storage, item.key),
        media_type=item.content_type,
        headers={**headers, "Content-Length": str(stat.size)},
    )


def _as_png_refused(kind: str) -> ValidationFailed:
    return ValidationFailed(
        "as=png applies to the original only",
        errors=[
            {
                "field": "as",
                "location": "query",
                "error_code": "INVALID_VALUE",
                "error": f"the {kind} image is a JPEG already; as=png is for original",
            }
        ],
        details="as: only with /original",
    )


async def iterate(storage: Storage, key: str) -> AsyncIterator[bytes]:
    """Yield an object's chunks without blocking the event loop."""
    chunks = iter(storage.iter_chunks(key))
    while True:
        chunk = await anyio.to_thread.run_sync(next, chunks, None)
        if chunk is None:
            return
        yield chunk
