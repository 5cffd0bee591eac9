"""File storage behind one small protocol: the local filesystem, or an S3-compatible bucket."""

from __future__ import annotations

from nesydet.config import Settings
from nesydet.storage.base import Storage, StorageFailure, StoredObject, validate_key
from nesydet.storage.local import LocalStorage

__all__ = [
    "LocalStorage",
    "Storage",
    "StorageFailure",
    "StoredObject",
    "create_storage",
    "validate_key",
]


def create_storage(settings: Settings) -> Storage:
    """Return the storage backend the settings name."""
    if settings.storage_backend == "s3":
        from nesydet.storage.s3 import S3Storage  # boto3 only when asked for

        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        )
    return LocalStorage(settings.storage_root)
