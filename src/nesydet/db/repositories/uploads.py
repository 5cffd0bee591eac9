"""Queries on uploads and their files."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from nesydet.db.models import Upload, UploadedFile


async def add(*, session: AsyncSession, upload: Upload) -> None:
    """Stage an upload and its files and flush them."""
    session.add(upload)
    await session.flush()


async def get(*, session: AsyncSession, upload_id: str) -> Upload | None:
    """Return the upload with its files, or None."""
    stmt = select(Upload).where(Upload.id == upload_id).options(selectinload(Upload.files))
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_file(*, session: AsyncSession, file_id: str) -> UploadedFile | None:
    """Return one uploaded file, or None."""
    return await session.get(UploadedFile, file_id)
