"""Storage in an S3-compatible bucket (MinIO in production)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from nesydet.storage.base import StorageFailure, StoredObject, validate_key


class S3Storage:
    """Objects in one bucket, keyed exactly like the local backend's relative paths."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
    ) -> None:
        self.bucket = bucket
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"}
            ),
        )

    def _call(self, what: str, key: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise StorageFailure(f"could not {what} {key}: {exc}") from exc

    def put_file(self, key: str, source: Path) -> None:
        """Upload the file, then remove the local source."""
        validate_key(key)
        try:
            self._client.upload_file(str(source), self.bucket, key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageFailure(f"could not store {key}: {exc}") from exc
        source.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Put one object."""
        self._call("store", key, self._client.put_object, Key=validate_key(key), Body=data)

    def get_bytes(self, key: str) -> bytes:
        """Return the whole object."""
        body = self._call("read", key, self._client.get_object, Key=validate_key(key))["Body"]
        data: bytes = body.read()
        return data

    def iter_chunks(self, key: str, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """Yield the object's body in chunks."""
        body = self._call("read", key, self._client.get_object, Key=validate_key(key))["Body"]
        yield from body.iter_chunks(chunk_size)

    def stat(self, key: str) -> StoredObject | None:
        """Return the object's size and etag, or None."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=validate_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise StorageFailure(f"could not stat {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageFailure(f"could not stat {key}: {exc}") from exc
        return StoredObject(
            key=key,
            size=int(head["ContentLength"]),
            etag=str(head["ETag"]).strip('"'),
            modified=head["LastModified"].timestamp(),
        )

    def local_path(self, key: str) -> Path | None:
        """S3 objects have no local path."""
        return None

    def delete(self, key: str) -> None:
        """Delete one object."""
        self._call("delete", key, self._client.delete_object, Key=validate_key(key))

    def delete_prefix(self, prefix: str) -> tuple[int, int]:
        """Delete every object under ``prefix/``; return how many objects and bytes."""
        validate_key(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        objects = size = 0
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/"):
                items = page.get("Contents", [])
                if items:
                    self._client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": [{"Key": i["Key"]} for i in items]}
                    )
                    objects += len(items)
                    size += sum(int(i.get("Size", 0)) for i in items)
        except (BotoCoreError, ClientError) as exc:
            raise StorageFailure(f"could not delete {prefix}/: {exc}") from exc
        return objects, size

    def check(self) -> None:
        """Raise unless the bucket is reachable."""
        self._call("reach bucket", self.bucket, self._client.head_bucket)
