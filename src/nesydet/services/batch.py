"""Use case: a batch submission. One ZIP archive in, an upload out (and a job, with a config).

The archive streams to a staging file; its shape is checked before anything is expanded
(:mod:`nesydet.services.archive`); each entry is then expanded to a flat staging file and
checked exactly as an uploaded file is (magic bytes, size, a full decode in the checker pool),
while the next one is expanded. If any entry fails, the request is refused with every failure
listed and nothing is kept, as for an upload; else the entries are stored as one upload, their
relative paths kept as file names, and with a ``config`` a job over all of them is created in
the same transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.config import Settings
from nesydet.db.models import Job, Upload
from nesydet.errors import ArchiveTooLarge, InvalidArchive, InvalidConfig, InvalidRequest, NoFiles
from nesydet.ids import UPLOAD, new_id
from nesydet.observability import metrics
from nesydet.schemas.jobs import JobConfig, PredictRequest
from nesydet.services import archive as zip_archive
from nesydet.services import idempotency, job_assets
from nesydet.services import jobs as job_service
from nesydet.services import uploads as upload_service
from nesydet.services.batch_form import ReceivedForm, receive_form
from nesydet.services.dispatch import Dispatcher
from nesydet.services.idempotency import IdempotentRequest, Replay
from nesydet.services.image_checker import ImageChecker
from nesydet.services.image_inspect import ImageInfo, ImageProblem, sniff_format
from nesydet.services.multipart import ReceivedFile, remove_tree
from nesydet.services.status_cache import StatusCache
from nesydet.storage import Storage

log = logging.getLogger(__name__)

ARCHIVE_FIELD = "archive"
CONFIG_FIELD = "config"
_ARCHIVE_PART = "part-0000"  # where the form receiver stages the first file part

Verdict = ImageInfo | ImageProblem


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """Everything besides the body that a batch submission needs."""

    content_type: str | None
    client_address: str | None
    owner_id: str | None  # who the upload belongs to
    owner: str | None  # whose uploads the caller may use (None: any)
    idempotent: IdempotentRequest | None = None


@dataclass(frozen=True, slots=True)
class BatchServices:
    """The app's resources a batch submission uses."""

    settings: Settings
    storage: Storage
    checker: ImageChecker
    dispatcher: Dispatcher
    sessionmaker: async_sessionmaker[AsyncSession]
    cache: StatusCache


@dataclass(slots=True)
class BatchOutcome:
    """A stored batch: the upload, the job when a config came with it, what was skipped."""

    upload: Upload
    job: Job | None = None
    config: JobConfig | None = None
    skipped: list[str] = field(default_factory=list)


def archive_limits(settings: Settings) -> zip_archive.ArchiveLimits:
    """Return the limits one archive is held to."""
    return zip_archive.ArchiveLimits(
        max_entries=settings.batch_max_entries,
        max_total_bytes=settings.batch_max_total_bytes,
        max_ratio=settings.batch_max_compression_ratio,
        max_file_size=settings.max_file_size_bytes,
    )


def parse_config(raw: str | None) -> JobConfig | None:
    """Return the ``config`` form field as a job config (None when absent).

    Raises:
        InvalidConfig: not JSON, not an object, or not a valid config; each field listed.
    """
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _config_error([("config", f"not valid JSON: {exc}")]) from exc
    if not isinstance(value, dict):
        raise _config_error([("config", "must be a JSON object, like the predict body's config")])
    try:
        return JobConfig.model_validate(value)
    except ValidationError as exc:
        items = [
            (".".join(["config", *map(str, err["loc"])]), str(err["msg"])) for err in exc.errors()
        ]
        raise _config_error(items) from exc


def _config_error(items: list[tuple[str, str]]) -> InvalidConfig:
    errors = [
        {"field": name, "location": "form", "error_code": "INVALID_VALUE", "error": message}
        for name, message in items
    ]
    details = "; ".join(f"{name}: {message}" for name, message in items[:10])
    return InvalidConfig("Invalid configuration", errors=errors, details=details)


async def create_batch(
    *,
    session: AsyncSession,
    services: BatchServices,
    request: BatchRequest,
    body: AsyncIterator[bytes],
) -> BatchOutcome | Replay:
    """Receive, check and store one archive's images as an upload, and start a job on them
    when the request has a ``config``; all of it is accepted, or none of it.

    Raises:
        NoFiles, InvalidRequest, RequestTooLarge: the request as a whole is wrong.
        InvalidArchive, TooManyFiles, ArchiveTooLarge, SuspectedZipBomb: the archive is.
        UploadRejected: entries failed; ``errors`` lists each with its path and code.
        InvalidConfig: the config is not valid, or names a model or rules file not there.
        IdempotencyKeyReused: the key was first used for another archive or config.
        StorageError: the accepted images could not be stored.
    """
    upload_id = new_id(UPLOAD)
    staging = services.settings.staging_dir / upload_id
    try:
        archive_part, config = await _receive(body, request, staging, services.settings)
        accepted, skipped = await _checked_entries(archive_part.path, staging, services)
        replay = await _claim_key(session, request.idempotent, accepted, config)
        if replay is not None:
            return replay
        upload = await upload_service._store(
            session=session,
            storage=services.storage,
            upload_id=upload_id,
            accepted=accepted,
            client_address=request.client_address,
            owner_id=request.owner_id,
        )
        outcome = BatchOutcome(upload=upload, config=config, skipped=skipped)
        if config is not None:
            outcome.job = await _start_job(session, services, request, upload, config)
        log.info(
            "batch accepted",
            extra={
                "upload_id": upload.id,
                "files": upload.file_count,
                "job_id": outcome.job.id if outcome.job else None,
            },
        )
        return outcome
    finally:
        await anyio.to_thread.run_sync(remove_tree, staging)


async def _receive(
    body: AsyncIterator[bytes], request: BatchRequest, staging: Path, settings: Settings
) -> tuple[ReceivedFile, JobConfig | None]:
    """Stream the body; return the staged archive and the config, checked, if one was sent."""
    form = await receive_form(
        body,
        content_type=request.content_type,
        field_name=ARCHIVE_FIELD,
        staging=staging,
        max_file_size=settings.batch_max_archive_bytes,
        max_body_size=settings.batch_max_archive_bytes + 2 * 1024 * 1024,
        value_names=frozenset({CONFIG_FIELD}),
    )
    archive_part = _one_archive(form, settings)
    config = parse_config(form.values.get(CONFIG_FIELD))
    if config is not None:  # a missing model or rules file is refused before the work
        job_assets.check_assets(config, settings)
    return archive_part, config


async def _start_job(
    session: AsyncSession,
    services: BatchServices,
    request: BatchRequest,
    upload: Upload,
    config: JobConfig,
) -> Job:
    """Create the job over every file of the new upload; its task is sent after the commit."""
    return await job_service.create_job(
        session=session,
        settings=services.settings,
        dispatcher=services.dispatcher,
        sessionmaker=services.sessionmaker,
        cache=services.cache,
        request=PredictRequest(upload_id=upload.id, config=config),
        owner=request.owner,
    )


def _one_archive(form: ReceivedForm, settings: Settings) -> ReceivedFile:
    """Return the archive part; NoFiles, InvalidRequest or RequestTooLarge when it is not one."""
    if form.file_count == 0:
        shown = ", ".join(form.other_fields[:5])
        hint = f" (fields received: {shown})" if shown else ""
        raise NoFiles(
            f"No archive in the multipart field '{ARCHIVE_FIELD}'",
            details=f"send one ZIP archive as '{ARCHIVE_FIELD}'{hint}",
        )
    if form.file_count > 1:
        raise InvalidRequest(
            "One archive per request",
            details=f"{form.file_count} files were sent as '{ARCHIVE_FIELD}'; send one ZIP",
        )
    [part] = form.files
    if part.too_large:
        raise ArchiveTooLarge(
            "The archive is too large",
            details=f"an archive may have at most {settings.batch_max_archive_bytes} bytes",
        )
    if not zip_archive.is_zip(part.head):
        kind = sniff_format(part.head)
        raise InvalidArchive(
            "The archive is not a ZIP archive",
            details=f"send a ZIP archive as '{ARCHIVE_FIELD}'"
            + (f" (this is a {kind} image: send images to /inference/upload)" if kind else ""),
        )
    return part


async def _checked_entries(
    path: Path, staging: Path, services: BatchServices
) -> tuple[list[tuple[ReceivedFile, ImageInfo]], list[str]]:
    """Return every entry with what its check learned, and the skipped entries' paths.

    Raises:
        UploadRejected: one or more entries failed; each is listed.
    """
    settings = services.settings
    limits = archive_limits(settings)
    archive = await anyio.to_thread.run_sync(zip_archive.open_archive, path, limits)
    try:
        inspection = await anyio.to_thread.run_sync(zip_archive.inspect, archive, limits)
        if not inspection.entries:
            raise NoFiles(
                "The archive holds no files",
                details=f"{len(inspection.skipped)} entries skipped (hidden files, __MACOSX)"
                if inspection.skipped
                else "the archive is empty",
            )
        verdicts = await _verdicts(archive, inspection, staging, services)
    finally:
        archive.close()
    errors = [
        upload_service._problem(part, verdict)
        for part, verdict in verdicts
        if isinstance(verdict, ImageProblem)
    ]
    if errors:
        for item in errors:
            metrics.REJECTED_FILES.labels(error_code=item["error_code"]).inc()
        raise upload_service._rejection(errors, len(verdicts))
    accepted = [(part, v) for part, v in verdicts if isinstance(v, ImageInfo)]
    return accepted, inspection.skipped


async def _verdicts(
    archive: zipfile.ZipFile,
    inspection: zip_archive.Inspection,
    staging: Path,
    services: BatchServices,
) -> list[tuple[ReceivedFile, Verdict]]:
    """Expand each entry in turn and check it, the checks overlapping the expanding.

    At most a few checks of this request wait in the checker pool at a time, so a batch of
    thousands does not queue ahead of every other upload's files.
    """
    settings = services.settings
    limits = upload_service.UploadLimits(settings.max_file_size_bytes, settings.batch_max_entries)
    gate = asyncio.Semaphore(2 * settings.image_check_workers)
    checks: dict[int, asyncio.Task[Verdict]] = {}
    found: list[tuple[ReceivedFile, Verdict | None]] = []

    async def check(part: ReceivedFile, fmt: str) -> Verdict:
        async with gate:
            return await services.checker.check(part.path, fmt)

    try:
        for position, entry in enumerate(inspection.entries):
            part = ReceivedFile(
                index=position, filename=entry.path, path=staging / f"entry-{position:06d}"
            )
            verdict: Verdict | None = entry.problem or await _expand(archive, entry, part, limits)
            fmt = sniff_format(part.head)
            if verdict is None and fmt is not None:
                await gate.acquire()  # expanding waits while the pool has enough to do
                gate.release()
                checks[position] = asyncio.create_task(check(part, fmt))
            found.append((part, verdict))
        out: list[tuple[ReceivedFile, Verdict]] = []
        for part, verdict in found:
            out.append((part, verdict if verdict is not None else await checks[part.index]))
        return out
    finally:
        for task in checks.values():
            task.cancel()


async def _expand(
    archive: zipfile.ZipFile,
    entry: zip_archive.Entry,
    part: ReceivedFile,
    limits: upload_service.UploadLimits,
) -> ImageProblem | None:
    """Expand one entry into ``part``; return what makes it unacceptable before a decode."""
    expanded = await anyio.to_thread.run_sync(
        zip_archive.expand, archive, entry.info, part.path, limits.max_file_size
    )
    if isinstance(expanded, ImageProblem):
        return expanded
    part.size, part.head, part.too_large = expanded.size, expanded.head, expanded.too_large
    part.sha256 = expanded.sha256
    return upload_service._stream_problem(part, limits)


async def _claim_key(
    session: AsyncSession,
    idempotent: IdempotentRequest | None,
    accepted: list[tuple[ReceivedFile, ImageInfo]],
    config: JobConfig | None,
) -> Replay | None:
    """Claim the idempotency key for these entries and config; the first answer if used."""
    if idempotent is None:
        return None
    content: dict[str, Any] = {
        "files": [(part.filename, part.size, part.sha256) for part, _ in accepted],
        "config": config.model_dump(mode="json") if config is not None else None,
    }
    return await idempotency.claim(
        session=session, request=idempotent, content_fingerprint=idempotency.fingerprint(content)
    )
