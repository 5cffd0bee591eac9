"""Use cases for uploads: receive and validate a batch of images, store it, read it back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.config import Settings
from nesydet.db import session as uow
from nesydet.db.models import Upload, UploadedFile
from nesydet.db.repositories import uploads as upload_repo
from nesydet.errors import NoFiles, StorageError, TooManyFiles, UploadNotFound, UploadRejected
from nesydet.ids import FILE, UPLOAD, new_id
from nesydet.observability import metrics
from nesydet.schemas.common import iso_z
from nesydet.schemas.uploads import UploadData, UploadedFileOut
from nesydet.services import idempotency
from nesydet.services.idempotency import IdempotentRequest, Replay
from nesydet.services.image_checker import ImageChecker
from nesydet.services.image_inspect import FORMATS, ImageInfo, ImageProblem, sniff_format
from nesydet.services.multipart import ReceivedFile, ReceiveResult, receive_files, remove_tree
from nesydet.storage import Storage, StorageFailure

log = logging.getLogger(__name__)

UPLOAD_FIELD = "files"
# Multipart framing per part (boundary and headers) is far below this.
_PART_OVERHEAD = 16 * 1024


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """The limits that apply to one upload request."""

    max_file_size: int
    max_files: int

    @property
    def max_body_size(self) -> int:
        """Return the largest body a request within the limits can have."""
        return self.max_files * (self.max_file_size + _PART_OVERHEAD) + 1024 * 1024


def upload_key(upload_id: str) -> str:
    """Return the storage prefix of an upload."""
    return f"uploads/{upload_id}"


def file_key(upload_id: str, file_id: str, fmt: str) -> str:
    """Return the storage key of one uploaded file: ``uploads/{upload_id}/{file_id}.{ext}``."""
    return f"{upload_key(upload_id)}/{file_id}.{FORMATS[fmt][0]}"


def _problem(part: ReceivedFile, problem: ImageProblem) -> dict[str, Any]:
    return {
        "filename": part.filename,
        "index": part.index,
        "error_code": problem.code,
        "error": problem.message,
        "details": problem.details,
    }


def _stream_problem(part: ReceivedFile, limits: UploadLimits) -> ImageProblem | None:
    """Return what streaming alone shows to be wrong with a part (size, magic bytes)."""
    if part.too_large:
        mib = limits.max_file_size / (1024 * 1024)
        return ImageProblem(
            "FILE_TOO_LARGE",
            f"File exceeds the size limit of {mib:g} MB",
            f"more than {limits.max_file_size} bytes received; the rest was not read",
        )
    if part.size == 0:
        return ImageProblem(
            "INVALID_FORMAT", "Unsupported file format. Allowed: JPEG, PNG, TIFF", "file is empty"
        )
    if sniff_format(part.head) is None:
        return ImageProblem(
            "INVALID_FORMAT",
            "Unsupported file format. Allowed: JPEG, PNG, TIFF",
            "the file's content is not a JPEG, PNG or TIFF image",
        )
    return None


async def create_upload(
    *,
    session: AsyncSession,
    storage: Storage,
    checker: ImageChecker,
    settings: Settings,
    content_type: str | None,
    body: AsyncIterator[bytes],
    client_address: str | None,
    owner_id: str | None,
    idempotent: IdempotentRequest | None = None,
) -> Upload | Replay:
    """Receive, validate and store a batch of images; all of it is accepted, or none of it.

    With ``idempotent``, a batch stored under that key (same files) comes back as a Replay.

    Raises:
        UploadRejected: one or more files failed; ``errors`` lists each with its code.
        TooManyFiles, NoFiles, InvalidRequest, RequestTooLarge: the request as a whole is wrong.
        IdempotencyKeyReused: the key was first used for other files.
        StorageError: the accepted files could not be stored.
    """
    limits = UploadLimits(settings.max_file_size_bytes, settings.max_files_per_upload)
    upload_id = new_id(UPLOAD)
    staging = settings.staging_dir / upload_id
    checks: dict[int, asyncio.Task[ImageInfo | ImageProblem]] = {}

    def start_check(part: ReceivedFile) -> None:
        fmt = sniff_format(part.head)
        if fmt is not None and _stream_problem(part, limits) is None:
            checks[part.index] = asyncio.create_task(checker.check(part.path, fmt))

    try:
        result = await receive_files(
            body,
            content_type=content_type,
            field_name=UPLOAD_FIELD,
            staging=staging,
            max_file_size=limits.max_file_size,
            max_files=limits.max_files,
            max_body_size=limits.max_body_size,
            on_file=start_check,
        )
        _check_count(result, limits)
        accepted = await _accepted(result.files, checks, limits)
        replay = await _claim_key(session, idempotent, accepted)
        if replay is not None:
            return replay
        return await _store(
            session=session,
            storage=storage,
            upload_id=upload_id,
            accepted=accepted,
            client_address=client_address,
            owner_id=owner_id,
        )
    finally:
        for task in checks.values():
            task.cancel()
        await anyio.to_thread.run_sync(remove_tree, staging)


async def _claim_key(
    session: AsyncSession,
    idempotent: IdempotentRequest | None,
    accepted: list[tuple[ReceivedFile, ImageInfo]],
) -> Replay | None:
    """Claim the request's idempotency key for these files; the first answer if it was used.

    The files' names, sizes and digests are the fingerprint: a retry carries the same files
    under a new multipart boundary.
    """
    if idempotent is None:
        return None
    content = [(part.filename, part.size, part.sha256) for part, _ in accepted]
    return await idempotency.claim(
        session=session,
        request=idempotent,
        content_fingerprint=idempotency.fingerprint(content),
    )


def _check_count(result: ReceiveResult, limits: UploadLimits) -> None:
    """Raise NoFiles or TooManyFiles when the request carries no files or too many."""
    if result.file_count == 0:
        shown = result.other_fields[:5]
        more = len(result.other_fields) - len(shown)
        hint = (
            f" (fields received: {', '.join(shown)}{f' and {more} more' if more else ''})"
            if shown
            else ""
        )
        raise NoFiles(
            "No files in the multipart field 'files'",
            details=f"send 1 to {limits.max_files} images as 'files'{hint}",
        )
    if result.file_count > limits.max_files:
        raise TooManyFiles(
            f"Too many files: at most {limits.max_files} per upload",
            details=f"{result.file_count} files received",
        )


async def _accepted(
    files: list[ReceivedFile],
    checks: dict[int, asyncio.Task[ImageInfo | ImageProblem]],
    limits: UploadLimits,
) -> list[tuple[ReceivedFile, ImageInfo]]:
    """Return every file with what its check learned; UploadRejected if any file failed."""
    verdicts = await _verdicts(files, checks, limits)
    errors = [_problem(part, v) for part, v in verdicts if isinstance(v, ImageProblem)]
    if errors:
        for item in errors:
            metrics.REJECTED_FILES.labels(error_code=item["error_code"]).inc()
        raise _rejection(errors, len(files))
    return [(part, v) for part, v in verdicts if isinstance(v, ImageInfo)]


async def _verdicts(
    files: list[ReceivedFile],
    checks: dict[int, asyncio.Task[ImageInfo | ImageProblem]],
    limits: UploadLimits,
) -> list[tuple[ReceivedFile, ImageInfo | ImageProblem]]:
    out: list[tuple[ReceivedFile, ImageInfo | ImageProblem]] = []
    for part in files:
        problem = _stream_problem(part, limits)
        out.append((part, problem if problem is not None else await checks[part.index]))
    return out


def _rejection(errors: list[dict[str, Any]], total: int) -> UploadRejected:
    codes = {item["error_code"] for item in errors}
    code = codes.pop() if len(codes) == 1 else "VALIDATION_ERROR"
    first = errors[0]["error"] if len(errors) == 1 else None
    message = first or f"{len(errors)} of {total} files failed validation"
    names = ", ".join(f"{item['filename']}: {item['error_code']}" for item in errors[:10])
    return UploadRejected(message, code=code, errors=errors, details=names)


async def _store(
    *,
    session: AsyncSession,
    storage: Storage,
    upload_id: str,
    accepted: list[tuple[ReceivedFile, ImageInfo]],
    client_address: str | None,
    owner_id: str | None,
) -> Upload:
    upload = Upload(
        id=upload_id,
        owner_id=owner_id,
        file_count=len(accepted),
        total_bytes=sum(part.size for part, _ in accepted),
        client_address=client_address,
    )
    for part, info in accepted:
        file_id = new_id(FILE)
        upload.files.append(
            UploadedFile(
                id=file_id,
                position=part.index,
                filename=part.filename,
                format=info.format,
                content_type=FORMATS[info.format][1],
                size_bytes=part.size,
                width=info.width,
                height=info.height,
                mode=info.mode,
                page_count=info.page_count,
                sha256=part.sha256,
                storage_key=file_key(upload_id, file_id, info.format),
            )
        )
    await upload_repo.add(session=session, upload=upload)

    async def undo() -> None:
        await anyio.to_thread.run_sync(storage.delete_prefix, upload_key(upload_id))

    async def count() -> None:
        metrics.UPLOADED_FILES.inc(upload.file_count)
        metrics.UPLOADED_BYTES.inc(upload.total_bytes)

    uow.on_rollback(session, undo)
    uow.after_commit(session, count)
    paths: dict[str, Path] = {
        f.id: part.path for f, (part, _) in zip(upload.files, accepted, strict=True)
    }
    try:
        for stored in upload.files:
            await anyio.to_thread.run_sync(storage.put_file, stored.storage_key, paths[stored.id])
    except StorageFailure as exc:
        log.error("upload storage failed", extra={"upload_id": upload_id, "error": str(exc)})
        raise StorageError("Could not store the uploaded files", details=str(exc)) from exc
    return upload


async def get_upload(*, session: AsyncSession, upload_id: str, owner: str | None) -> Upload:
    """Return the upload with its files (only ``owner``'s, when given).

    Raises:
        UploadNotFound: no such upload, another owner's (answered alike), or one whose files
            were deleted by retention (the details say so).
    """
    upload = await upload_repo.get(session=session, upload_id=upload_id, owner=owner)
    if upload is None:
        raise UploadNotFound("Upload not found", details=f"no upload with id {upload_id}")
    if upload.expired_at is not None:
        raise UploadNotFound(
            "Upload expired, please re-upload images",
            details=f"upload {upload_id} expired on {iso_z(upload.expired_at)}: its images "
            "were deleted after the retention period; upload them again",
        )
    return upload


def upload_data(upload: Upload) -> UploadData:
    """Return the API view of an upload and its files."""
    return UploadData(
        upload_id=upload.id,
        created_at=upload.created_at,
        file_count=upload.file_count,
        total_bytes=upload.total_bytes,
        uploaded_files=[_file_out(f) for f in upload.files],
    )


def _file_out(row: UploadedFile) -> UploadedFileOut:
    return UploadedFileOut(
        filename=row.filename,
        file_id=row.id,
        size_bytes=row.size_bytes,
        format=row.format,
        dimensions=(row.width, row.height),
        content_type=row.content_type,
        mode=row.mode,
        page_count=row.page_count,
        sha256=row.sha256,
    )
