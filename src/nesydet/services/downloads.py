"""Use case: the bulk download of a completed job, a ZIP archive built while it is sent.

:func:`plan_download` checks the request (the job is the caller's and completed, the parts
asked for exist) and reads the job's files, before the response starts: every refusal is an
ordinary error response. :func:`stream_download` then yields the archive block by block; see
:mod:`nesydet.services.download_layout` for what is in it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio
import anyio.from_thread
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.db.repositories import downloads as download_repo
from nesydet.errors import ValidationFailed
from nesydet.pipeline.types import Detection
from nesydet.schemas.common import iso_z
from nesydet.services.download_layout import (
    INCLUDES,
    DownloadFormat,
    Plan,
    generate,
    items,
)
from nesydet.services.registry.resolve import public
from nesydet.services.results import completed_job, to_detection
from nesydet.storage import Storage, StorageFailure

log = logging.getLogger(__name__)

DEFAULT_INCLUDE = "labels"
# Bytes handed to the server per block: large enough that thread hops cost nothing, small
# enough that memory never notices.
BLOCK_BYTES = 256 * 1024


def parse_include(raw: str | None) -> frozenset[str]:
    """Return the parts a download includes, from ``include=labels,annotated,...``.

    Raises:
        ValidationFailed: a name that is not one of labels, annotated, originals, thumbnails.
    """
    names = [n.strip().lower() for n in (DEFAULT_INCLUDE if raw is None else raw).split(",")]
    chosen = {n for n in names if n}
    unknown = sorted(chosen - set(INCLUDES))
    if unknown:
        shown = ", ".join(u[:40] for u in unknown[:5])
        raise ValidationFailed(
            "Invalid include",
            errors=[
                {
                    "field": "include",
                    "location": "query",
                    "error_code": "INVALID_VALUE",
                    "error": f"unknown part(s): {shown}; choose from {', '.join(INCLUDES)}",
                }
            ],
            details=f"include: choose from {', '.join(INCLUDES)} (comma-separated)",
        )
    return frozenset(chosen)


async def plan_download(
    *,
    session: AsyncSession,
    job_id: str,
    fmt: DownloadFormat,
    include: frozenset[str],
    owner: str | None,
) -> Plan:
    """Return what the download of a job holds.

    Raises:
        JobNotFound: no such job, or another owner's.
        ResultsNotReady: the job has not completed.
    """
    job = await completed_job(session=session, job_id=job_id, owner=owner)
    rows = await download_repo.job_files(session=session, job_id=job.id)
    classes = await download_repo.class_names(session=session, job_id=job.id)
    header: dict[str, Any] = {
        "job_id": job.id,
        "upload_id": job.upload_id,
        "status": job.status,
        "created_at": iso_z(job.created_at),
        "completed_at": iso_z(job.completed_at or job.updated_at),
        "model": public(job.model_ref),
        "rules": public(job.rules_ref),
        "config": job.config,
        "summary": {
            "total_detections": job.total_detections or 0,
            "average_confidence": job.average_confidence,
            "processing_time_seconds": job.processing_time_seconds or 0.0,
        },
        "classes": {str(k): v for k, v in classes.items()},
    }
    return Plan(
        job_id=job.id,
        fmt=fmt,
        include=include,
        header=header,
        classes=classes,
        items=items(rows),
    )


def archive_filename(plan: Plan) -> str:
    """Return the name the archive is offered under."""
    return f"{plan.job_id}.zip"


async def _detections(
    sessionmaker: async_sessionmaker[AsyncSession], job_id: str, file_ids: Sequence[str]
) -> Mapping[str, list[Detection]]:
    """Return the detections of some files of a job, in a session of their own."""
    async with sessionmaker() as session:
        rows = await download_repo.detections_of(session=session, job_id=job_id, file_ids=file_ids)
    found: dict[str, list[Detection]] = {}
    for row in rows:
        found.setdefault(row.file_id, []).append(to_detection(row))
    return found


async def stream_download(
    plan: Plan, *, sessionmaker: async_sessionmaker[AsyncSession], storage: Storage
) -> AsyncIterator[bytes]:
    """Yield the archive in blocks of about ``BLOCK_BYTES``.

    Each block is made on a worker thread (storage reads and compression block); the
    detections it needs are read on the event loop, a batch at a time, in short sessions, so
    a slow client never holds a database connection. A storage failure midway ends the
    stream early: the client gets a truncated archive, which no unzip tool accepts.
    """

    def fetch(file_ids: Sequence[str]) -> Mapping[str, list[Detection]]:
        return anyio.from_thread.run(_detections, sessionmaker, plan.job_id, file_ids)

    chunks = generate(plan, fetch=fetch, storage=storage)

    def next_block() -> bytes:
        block: list[bytes] = []
        size = 0
        for chunk in chunks:
            block.append(chunk)
            size += len(chunk)
            if size >= BLOCK_BYTES:
                break
        return b"".join(block)

    sent = 0
    try:
        while block := await anyio.to_thread.run_sync(next_block):
            sent += len(block)
            yield block
    except StorageFailure as exc:
        log.error(
            "download cut short: a stored file could not be read",
            extra={"job_id": plan.job_id, "error": str(exc), "bytes_sent": sent},
        )
        raise
    finally:
        chunks.close()
    log.info("download sent", extra={"job_id": plan.job_id, "bytes": sent})
