"""ORM models. API schemas live in ``nesydet.schemas``; these are storage only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nesydet.db.base import Base, JSONType, utcnow
from nesydet.domain import JobStatus


class User(Base):
    """An account: a person, a script or a dashboard."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # argon2; None for an account that only uses API keys.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]


class ApiKey(Base):
    """An API key of a user; only its SHA-256 is kept (the key is shown once, at creation)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Upload(Base):
    """One accepted upload request: a batch of image files."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # None: made while authentication was off (only admins see it once it is on).
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Set when retention deleted its files and results: the row stays to say so.
    expired_at: Mapped[datetime | None]
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


class Job(Base):
    """One inference job over some files of an upload; the database is its source of truth."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created_at", "status", "created_at"),
        Index("ix_jobs_created_at_id", "created_at", "id"),
        Index("ix_jobs_model_name_model_version", "model_name", "model_version"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    model_name: Mapped[str] = mapped_column(String(128))
    # What the job runs, resolved when it was created: {name, version, sha256} and, for a
    # registered asset, its storage key and format; None for rules when reasoning is off.
    model_version: Mapped[str | None] = mapped_column(String(32))
    model_ref: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    rules_ref: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    file_count: Mapped[int] = mapped_column(Integer)
    processed_count: Mapped[int] = mapped_column(Integer, default=0)
    current_stage: Mapped[str | None] = mapped_column(String(64))

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    estimated_completion: Mapped[datetime | None]

    # Delivery: when the task was last handed to the broker, and who holds it now.
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    worker_id: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    time_limit_s: Mapped[float] = mapped_column(Float)

    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_details: Mapped[str | None] = mapped_column(Text)

    # Bumped by every write that changes what the status endpoint shows, so that a cached
    # status is only ever replaced by a newer one.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    total_detections: Mapped[int | None] = mapped_column(Integer)
    average_confidence: Mapped[float | None] = mapped_column(Float)
    processing_time_seconds: Mapped[float | None] = mapped_column(Float)

    files: Mapped[list[JobFile]] = relationship(
        back_populates="job", order_by="JobFile.position", cascade="all, delete-orphan"
    )


class JobFile(Base):
    """One image of a job: its progress, counts and the keys of its artefacts."""

    __tablename__ = "job_files"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    file_id: Mapped[str] = mapped_column(
        ForeignKey("uploaded_files.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    detection_count: Mapped[int | None] = mapped_column(Integer)
    dropped_count: Mapped[int | None] = mapped_column(Integer)
    # {class: {rule: count}} of the detections the rules dropped (the rule that dropped each).
    dropped_by: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    labels_key: Mapped[str | None] = mapped_column(String(255))
    annotated_key: Mapped[str | None] = mapped_column(String(255))
    thumbnail_key: Mapped[str | None] = mapped_column(String(255))
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    processed_at: Mapped[datetime | None]

    job: Mapped[Job] = relationship(back_populates="files")
    file: Mapped[UploadedFile] = relationship(lazy="joined")


class Detection(Base):
    """One detected object, kept after reasoning; queryable per job, file and class."""

    __tablename__ = "detections"
    __table_args__ = (
        UniqueConstraint("job_id", "file_id", "idx"),
        Index("ix_detections_job_id_class_name", "job_id", "class_name"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    file_id: Mapped[str] = mapped_column(ForeignKey("uploaded_files.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    class_id: Mapped[int] = mapped_column(Integer)
    class_name: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    x_min: Mapped[float] = mapped_column(Float)
    y_min: Mapped[float] = mapped_column(Float)
    x_max: Mapped[float] = mapped_column(Float)
    y_max: Mapped[float] = mapped_column(Float)
    obb: Mapped[list[float] | None] = mapped_column(JSONType)
    polygon: Mapped[list[Any] | None] = mapped_column(JSONType)
    reasoning: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Worker(Base):
    """A worker process that is (or was) alive; its heartbeat counts the active workers."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    current_job_id: Mapped[str | None] = mapped_column(String(32))


class IdempotencyKey(Base):
    """The first response to a request sent with an ``Idempotency-Key`` header, kept 24 h."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(96), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Webhook(Base):
    """A webhook endpoint of an owner: a subscription to job events, or the ``webhook_url`` of
    one job (``job_id`` set). The secret signs every delivery, so it is kept as it was shown
    (once, at creation); it is never listed."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # None: made while authentication was off (the local user's).
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSONType)
    description: Mapped[str] = mapped_column(String(200), default="")
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook (its id is the ``webhook-id`` header), tried until it is
    delivered or its retry horizon passes."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_webhook_id_created_at", "webhook_id", "created_at"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # pending (an attempt is due at next_attempt_at), sending, succeeded or failed.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None]
    retry_until: Mapped[datetime]
    # When its task was last handed to the broker, and when an attempt was taken.
    sent_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))

    attempts: Mapped[list[WebhookAttempt]] = relationship(
        order_by="WebhookAttempt.number", cascade="all, delete-orphan", passive_deletes=True
    )


class WebhookAttempt(Base):
    """One HTTP request of a delivery: the address it went to, the answer and how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "number"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    address: Mapped[str | None] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(500))


class Comparison(Base):
    """Two completed jobs compared image by image (their detections matched by rotated IoU);
    the result is kept whole, so the comparison reads back and draws as it was made."""

    __tablename__ = "comparisons"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # None: made while authentication was off (the local user's).
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # A comparison is made from both jobs: it goes when either of them is deleted.
    job_a_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    job_b_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    iou_threshold: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Per image: files paired, matched pairs, class changes, detections in one job only.
    images: Mapped[list[Any]] = mapped_column(JSONType)
    unpaired: Mapped[dict[str, Any]] = mapped_column(JSONType)


class Asset(Base):
    """A registered model or rules set (``kind``) by name: its default version and, for a
    model, the weights that route jobs naming only the name to its versions."""

    __tablename__ = "assets"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    default_version: Mapped[str | None] = mapped_column(String(32))
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AssetVersion(Base):
    """One version of an asset: a file stored by content (``sha256``) and what its inspection
    read from it (``meta``: task, classes and input size of a model; predicates of rules)."""

    __tablename__ = "asset_versions"
    __table_args__ = (
        UniqueConstraint("kind", "name", "version"),
        Index("ix_asset_versions_kind_sha256", "kind", "sha256"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(8))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(255))
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # The ONNX export of a .pt: {status: pending|ready|failed, storage_key, sha256, error}.
    export: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deprecated_at: Mapped[datetime | None]
