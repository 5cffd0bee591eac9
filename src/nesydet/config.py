"""Service settings: one pydantic-settings class, read from ``NESYDET_*`` variables."""

from __future__ import annotations

import ipaddress
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nesydet.config_groups import BatchSettings, MiB, RegistrySettings, WebhookSettings

_PROCESS_SECRET = secrets.token_urlsafe(32)


class Settings(BatchSettings, WebhookSettings, RegistrySettings, BaseSettings):
    """Every knob of the service; defaults are the embedded, server-less set-up."""

    model_config = SettingsConfigDict(
        env_prefix="NESYDET_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Where state lives. Relative paths are relative to the working directory.
    var_dir: Path = Path("var")
    database_url: str = "sqlite+aiosqlite:///./var/nesydet.db"
    broker_url: str = "filesystem://localhost/"
    redis_url: str | None = Field(
        default=None, description="Redis for the status cache and rate limits; none when embedded"
    )
    storage_backend: Literal["local", "s3"] = "local"
    storage_root: Path = Path("var/storage")
    s3_bucket: str = "nesydet"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None

    # Upload limits (spec, Endpoint 1).
    max_file_size_bytes: int = Field(default=50 * MiB, gt=0)
    max_files_per_upload: int = Field(default=100, gt=0)
    min_image_dimension: int = Field(default=64, gt=0)
    max_image_dimension: int = Field(default=8192, gt=0)
    # Seconds one image may take to decode while it is validated.
    image_check_timeout_s: float = Field(default=60.0, gt=0)
    image_check_workers: int = Field(default=2, ge=1)
    image_check_memory_limit_bytes: int = Field(default=2048 * MiB, gt=0)

    # HTTP.
    env: Literal["development", "production"] = Field(
        default="development",
        description="production refuses to start with authentication off, a missing or "
        "default JWT secret, or the development passwords of docker-compose.yml",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    ssl_certfile: Path | None = Field(default=None, description="serve HTTPS with this cert")
    ssl_keyfile: Path | None = Field(default=None, description="... and this private key")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rate_limit: str | None = Field(
        default="100/minute",
        description="requests per API key or user (per client address when anonymous), "
        "e.g. 100/minute; empty disables",
    )
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="addresses (or networks) of the proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; none by default",
    )

    # Accounts (see services/auth.py).
    auth_mode: Literal["none", "required"] = Field(
        default="none",
        description="none: one trusted user on this machine (loopback only); required: "
        "accounts, API keys and per-owner data",
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="signs access tokens; 32 characters or more"
    )
    jwt_ttl_s: int = Field(default=900, ge=60, le=86400, description="access token lifetime")

    # Retention (spec, Data Protection): uploads and all made from them are deleted this long
    # after their last use.
    retention_days: float = Field(default=7.0, gt=0)
    cleanup_interval_s: float = Field(default=3600.0, ge=0, description="0 disables it")
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    metrics_dir: Path | None = Field(
        default=Path("var/metrics"),
        description="local scratch for prometheus multiprocess files: each `nesydet serve` and "
        "`nesydet worker` keeps its processes' files in a folder of its own under it; never "
        "shared between hosts",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1", description="address of a worker's own /metrics (0.0.0.0 in pods)"
    )
    worker_metrics_port: int = Field(
        default=9091, ge=0, le=65535, description="port of a worker's own /metrics; 0 turns it off"
    )
    otel_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP base URL of an OpenTelemetry collector, e.g. "
        "http://collector:4318 (traces go to <url>/v1/traces); unset: no tracing",
    )

    # Jobs and workers.
    worker_concurrency: int = Field(
        default=1, ge=1, description="worker processes per `nesydet worker`"
    )
    worker_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="scheduling niceness of worker processes: the API stays responsive when it "
        "shares the machine with them",
    )
    saver_nice: int = Field(
        default=9,
        ge=0,
        le=19,
        description="extra niceness of a worker's result-saving thread, so that saving an image "
        "runs on the cores inference leaves idle instead of stalling it",
    )
    cpu_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch CPU threads per worker process; default: the cores shared out "
        "among the worker processes",
    )
    worker_start_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="seconds a new pool process may take to load the model and Prolog before "
        "it is replaced (measured: 6-10 s on 2 CPU cores)",
    )
    worker_max_failed_starts: int = Field(
        default=3,
        ge=1,
        description="pool processes in a row that die before they are ready, after which "
        "`nesydet worker` exits (status 3) for its supervisor to restart it",
    )
    job_time_limit_base_s: float = Field(default=120.0, gt=0)
    job_time_limit_per_image_s: float = Field(default=300.0, gt=0)
    max_job_time_limit_s: float = Field(default=6 * 3600.0, gt=0)
    retry_delays_s: list[float] = Field(default_factory=lambda: [60.0, 300.0, 900.0])
    retry_jitter: float = Field(default=0.1, ge=0, le=1)
    max_delivery_attempts: int = Field(default=5, ge=1, description="claims before a job fails")
    progress_interval_s: float = Field(
        default=1.0, ge=0, description="least seconds between two progress writes of a job"
    )
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    heartbeat_stale_s: float = Field(default=30.0, gt=0)
    sweeper_interval_s: float = Field(default=10.0, ge=0, description="0 disables it")
    resend_queued_after_s: float = Field(default=900.0, gt=0)
    lost_message_after_s: float = Field(
        default=30.0,
        gt=0,
        description="a queued job sent this long ago whose message is not in the broker (seen "
        "at two sweeps in a row) has its task sent again",
    )
    broker_publish_timeout_s: float = Field(default=3.0, gt=0)
    default_seconds_per_image: float = Field(default=10.0, gt=0)
    status_cache_ttl_s: int = Field(default=86400, gt=0)

    # Detection pipeline.
    models_dir: Path = Path("models")
    rules_dir: Path = Path("rules")
    default_model: str = "nesydet-demo-obb.pt"
    device: str = "auto"
    detector_factory: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="`module:callable` that builds a Detector from (model path, device); "
        "the Ultralytics adapter when unset",
    )
    inference_backend: Literal["auto", "torch", "onnx"] = Field(
        default="auto",
        description="what runs a .pt model: auto = onnxruntime on its ONNX export (made at the "
        "worker's first start, offline) when it gives torch's detections on a probe image, else "
        "torch, with a log line saying why; on a GPU the faster of onnxruntime CUDA and torch "
        "half precision, measured at start; torch; onnx = the export or a failed model load",
    )
    onnx_cache_dir: Path | None = Field(
        default=None,
        description="where ONNX exports are cached, by the .pt's sha256; unset: a folder "
        "`.onnx` next to each .pt (the models directory must then be writable)",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().lower() for item in value.split(",") if item.strip()]
        return value

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in {"", "none", "off", "0"}:
            return None
        return value

    @field_validator("otel_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. http://collector:4318")
        return value.strip().rstrip("/")

    def worker_cpu_threads(self, concurrency: int) -> int:
        """Return the torch CPU threads each of ``concurrency`` worker processes should use."""
        if self.cpu_threads:
            return self.cpu_threads
        return max(1, (os.cpu_count() or 1) // max(1, concurrency))

    @property
    def jwt_secret_value(self) -> str:
        """Return the token signing secret; without one (development), a random secret of
        this process: its tokens are good only in this process."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return _PROCESS_SECRET

    @property
    def broker_dir(self) -> Path:
        """Where the filesystem broker keeps its messages (embedded set-up only)."""
        return self.var_dir / "broker"

    @property
    def visibility_timeout_s(self) -> int:
        """Return the broker's redelivery timeout: above the longest job's hard limit (a job
        over a whole batch archive)."""
        longest = max(self.max_files_per_upload, self.batch_max_entries)
        return int(max(self.max_job_time_limit_s, self.job_time_limit_s(longest)) + 600)

    def job_time_limit_s(self, image_count: int) -> float:
        """Return the hard time limit of a job with ``image_count`` images.

        ``max_job_time_limit_s`` caps it, except that a large job keeps at least
        ``job_time_limit_min_per_image_s`` per image.
        """
        limit = self.job_time_limit_base_s + self.job_time_limit_per_image_s * image_count
        cap = max(self.max_job_time_limit_s, self.job_time_limit_min_per_image_s * image_count)
        return min(limit, cap)

    @property
    def asset_cache_root(self) -> Path:
        """Return where workers keep registered files fetched from storage."""
        return self.asset_cache_dir or self.var_dir / "assets"

    @property
    def staging_dir(self) -> Path:
        """Where upload parts are written while they stream in and are checked."""
        return self.var_dir / "staging"

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is the embedded SQLite file."""
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()


# Development values that must never reach production: docker-compose.yml's old defaults and
# secrets found in examples.
DEVELOPMENT_SECRETS = frozenset(
    {"nesydet", "nesydet-secret", "change-me", "changeme", "secret", "password", "dev"}
)
MIN_JWT_SECRET = 32


def is_loopback(host: str) -> bool:
    """Return whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refusals(settings: Settings, *, host: str | None = None) -> list[str]:
    """Return why this process must not start with these settings (empty: it may).

    ``host`` is the address the API binds (None for a worker).
    """
    problems: list[str] = []
    if settings.auth_mode == "none" and host is not None and not is_loopback(host):
        problems.append(
            f"NESYDET_AUTH_MODE=none serves every upload and job to anyone who can reach "
            f"{host}: bind 127.0.0.1, or set NESYDET_AUTH_MODE=required"
        )
    if settings.env != "production":
        return problems
    # Only API processes authenticate clients: a worker host needs no token-signing secret.
    if host is not None and settings.auth_mode != "required":
        problems.append("NESYDET_ENV=production needs NESYDET_AUTH_MODE=required")
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    if host is not None and (len(secret) < MIN_JWT_SECRET or secret.lower() in DEVELOPMENT_SECRETS):
        problems.append(
            f"NESYDET_JWT_SECRET must be set to a random value of {MIN_JWT_SECRET} characters "
            "or more (e.g. `openssl rand -base64 48`)"
        )
    password = urlsplit(settings.database_url.replace("+asyncpg", "")).password
    if password is not None and password.lower() in DEVELOPMENT_SECRETS:
        problems.append("the database password is a development default: set POSTGRES_PASSWORD")
    for name, value in (
        ("NESYDET_S3_ACCESS_KEY_ID", settings.s3_access_key_id),
        ("NESYDET_S3_SECRET_ACCESS_KEY", settings.s3_secret_access_key),
    ):
        if value is not None and value.lower() in DEVELOPMENT_SECRETS:
            problems.append(f"{name} is a development default: set MINIO_ROOT_USER/PASSWORD")
    return problems
