"""Groups of settings, mixed into `nesydet.config.Settings` (same ``NESYDET_`` prefix)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, NoDecode

MiB = 1024 * 1024
GiB = 1024 * MiB


class BatchSettings(BaseSettings):
    """Batch submission and time limits of large jobs."""

    # Batch submission (POST /api/v1/inference/batch: one ZIP archive) and bulk download.
    batch_max_archive_bytes: int = Field(
        default=8 * GiB, gt=0, description="largest ZIP archive one batch request may send"
    )
    batch_max_entries: int = Field(
        default=10_000, gt=0, description="most entries (files and folders) in one archive"
    )
    batch_max_total_bytes: int = Field(
        default=16 * GiB,
        gt=0,
        description="most bytes an archive's entries may expand to, all together",
    )
    batch_max_compression_ratio: float = Field(
        default=100.0,
        gt=1,
        description="most an archive may expand (uncompressed / archive bytes) once it expands "
        "past 64 MiB: above it the archive is taken for a zip bomb",
    )
    job_time_limit_min_per_image_s: float = Field(
        default=60.0,
        gt=0,
        description="seconds per image a job's hard time limit grants at least: a job of "
        "thousands of images is limited by its size, not by max_job_time_limit_s",
    )


class WebhookSettings(BaseSettings):
    """Webhook delivery."""

    # Webhooks (POST /api/v1/webhooks, or a predict body's webhook_url), sent by
    # `nesydet webhook-worker` from the queue "webhooks".
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="host names (exact, or *.suffix), addresses or networks a webhook may "
        "reach although they are loopback, private, link-local or cloud metadata addresses; "
        "none by default",
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, le=60, description="seconds one delivery attempt may take"
    )
    webhook_retry_base_s: float = Field(
        default=10.0, gt=0, description="delay before the first retry; doubled at each retry"
    )
    webhook_retry_max_delay_s: float = Field(
        default=3600.0, gt=0, description="longest delay between two attempts"
    )
    webhook_retry_jitter: float = Field(
        default=0.2, ge=0, le=1, description="each delay is scaled by a random 1 +/- this"
    )
    webhook_retry_horizon_s: float = Field(
        default=86400.0,
        gt=0,
        description="a delivery is retried until this long after its event (or its "
        "redelivery), then marked failed",
    )
    webhook_resend_after_s: float = Field(
        default=120.0,
        gt=0,
        description="a delivery overdue this long (its message never sent, or lost) is sent "
        "again by the webhook worker",
    )
    webhook_progress_interval_s: float = Field(
        default=5.0, ge=0, description="least seconds between two job.progress events of a job"
    )
    webhook_worker_concurrency: int = Field(
        default=4, ge=1, le=64, description="deliveries one `nesydet webhook-worker` sends at once"
    )
    webhook_max_per_owner: int = Field(
        default=20, ge=1, description="subscriptions an owner may have"
    )


class RegistrySettings(BaseSettings):
    """The model and rules registry (``/api/v1/models``, ``/api/v1/rules``)."""

    max_model_bytes: int = Field(
        default=1 * GiB, gt=0, description="largest model file POST /api/v1/models accepts"
    )
    max_rules_bytes: int = Field(
        default=1 * MiB, gt=0, description="largest rules file POST /api/v1/rules accepts"
    )
    inspect_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="seconds the process that inspects an uploaded model or rules file may run",
    )
    inspect_memory_mb: int = Field(
        default=4096,
        ge=256,
        description="address space (MiB) of the process that inspects an uploaded file; a "
        "file that needs more is refused",
    )
    model_cache_mb: float = Field(
        default=3072.0,
        ge=0,
        description="memory (MiB, measured as the process's growth on load) that each worker "
        "process may spend on loaded models; the least recently used go first. 0: no bound",
    )
    asset_cache_dir: Path | None = Field(
        default=None,
        description="where workers keep registered model and rules files fetched from "
        "storage, by sha256; unset: var_dir/assets",
    )
    register_bundled: bool = Field(
        default=True,
        description="register the models and rules directories' files (the default model, "
        "the bundled rules) as version 1 at the first start of the API",
    )
