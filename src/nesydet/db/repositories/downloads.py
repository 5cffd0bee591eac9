"""Queries for the bulk download: a job's files as plain rows, detections a few files at a time.

Lean on purpose: a download of thousands of images reads one small row per file and never
holds more than one batch of detections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.db.models import Detection, JobFile, UploadedFile


@dataclass(frozen=True, slots=True)
class FileRow:
    """What a download needs of one file of a job."""

    file_id: str
    filename: str
    format: str
    width: int
    height: int
    size_bytes: int
    storage_key: str
    detection_count: int
    annotated_key: str | None
    thumbnail_key: str | None


async def job_files(*, session: AsyncSession, job_id: str) -> list[FileRow]:
    """Return the job's files in job order, each with its upload's name and stored keys."""
    stmt = (
        select(
            JobFile.file_id,
            UploadedFile.filename,
            UploadedFile.format,
            JobFile.width,
            JobFile.height,
            UploadedFile.width,
            UploadedFile.height,
            UploadedFile.size_bytes,
            UploadedFile.storage_key,
            JobFile.detection_count,
            JobFile.annotated_key,
            JobFile.thumbnail_key,
        )
        .join(UploadedFile, UploadedFile.id == JobFile.file_id)
        .where(JobFile.job_id == job_id)
        .order_by(JobFile.position)
    )
    rows = (await session.execute(stmt)).all()
    return [
        FileRow(
            file_id=r[0],
            filename=r[1],
            format=r[2],
            width=r[3] or r[5],
            height=r[4] or r[6],
            size_bytes=r[7],
            storage_key=r[8],
            detection_count=r[9] or 0,
            annotated_key=r[10],
            thumbnail_key=r[11],
        )
        for r in rows
    ]


async def detections_of(
    *, session: AsyncSession, job_id: str, file_ids: Sequence[str]
) -> list[Detection]:
    """Return the detections of some files of a job, by file and index."""
    stmt = (
        select(Detection)
        .where(Detection.job_id == job_id, Detection.file_id.in_(list(file_ids)))
        .order_by(Detection.file_id, Detection.idx)
    )
    return list((await session.execute(stmt)).scalars())


async def class_names(*, session: AsyncSession, job_id: str) -> dict[int, str]:
    """Return the classes found in a job, by class id."""
    stmt = (
        select(Detection.class_id, Detection.class_name)
        .where(Detection.job_id == job_id)
        .distinct()
        .order_by(Detection.class_id)
    )
    out: dict[int, str] = {}
    for class_id, name in (await session.execute(stmt)).all():
        out.setdefault(int(class_id), str(name))
    return out
