"""ORM models. API schemas live in ``nesydet.schemas``; these are storage only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nesydet.db.base import Base, utcnow


class Upload(Base):
    """One accepted upload request: a batch of image files."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    file_count: Mapped[int] = mapped_column(Integer)
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    client_address: Mapped[str | None] = mapped_column(String(64))

    files: Mapped[list[UploadedFile]] = relationship(
        back_populates="upload",
        order_by="UploadedFile.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class UploadedFile(Base):
    """One stored image of an upload; ``storage_key`` is relative to the storage root."""

    __tablename__ = "uploaded_files"
    __table_args__ = (Index("ix_uploaded_files_upload_id_position", "upload_id", "position"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(8))
    content_type: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(16))
    page_count: Mapped[int] = mapped_column(Integer, default=1)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    upload: Mapped[Upload] = relationship(back_populates="files")
