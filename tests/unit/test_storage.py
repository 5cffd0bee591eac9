"""Local storage: safe keys, atomic writes, deletes; the S3 backend against a moto server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nesydet.storage import LocalStorage, Storage, StorageFailure, validate_key


@pytest.mark.parametrize(
    "key", ["../x", "a/../../b", "/abs", "a//b", "", ".hidden", "a/.", "a\\b", "a/b/"]
)
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        validate_key(key)


def exercise(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"hello world")
    storage.put_file("uploads/upl_1/img_1.png", source)
    assert not source.exists()
    assert storage.get_bytes("uploads/upl_1/img_1.png") == b"hello world"
    assert b"".join(storage.iter_chunks("uploads/upl_1/img_1.png", 3)) == b"hello world"
    stat = storage.stat("uploads/upl_1/img_1.png")
    assert stat is not None
    assert stat.size == 11
    assert stat.etag
    storage.put_bytes("uploads/upl_1/img_2.png", b"two")
    assert storage.stat("missing/key") is None
    assert storage.delete_prefix("uploads/upl_1") == (2, 14)
    assert storage.delete_prefix("uploads/upl_1") == (0, 0)
    assert storage.stat("uploads/upl_1/img_1.png") is None
    assert storage.stat("uploads/upl_1/img_2.png") is None
    storage.delete("uploads/never")
    storage.check()


def test_local_storage(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    exercise(storage, tmp_path)
    storage.put_bytes("a/b.txt", b"x")
    assert (tmp_path / "root" / "a" / "b.txt").stat().st_mode & 0o777 == 0o640
    assert list((tmp_path / "root" / "a").iterdir()) == [tmp_path / "root" / "a" / "b.txt"]


def test_local_storage_refuses_symlink_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="escapes"):
        LocalStorage(root).put_bytes("link/evil.txt", b"x")


def test_local_storage_failure_is_storage_failure(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageFailure):
        LocalStorage(tmp_path / "file" / "root").put_bytes("a.txt", b"x")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the moto S3 server did not start") from None
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_s3_storage(moto_url: str, tmp_path: Path) -> None:
    import boto3

    from nesydet.storage.s3 import S3Storage

    boto3.client(
        "s3", endpoint_url=moto_url, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    ).create_bucket(Bucket="nesydet-test")  # fmt: skip
    storage = S3Storage(
        bucket="nesydet-test", endpoint_url=moto_url, region="us-east-1",
        access_key_id="test", secret_access_key="test",
    )  # fmt: skip
    exercise(storage, tmp_path)
    assert storage.local_path("x") is None
    missing = S3Storage(
        bucket="no-such-bucket", endpoint_url=moto_url, region="us-east-1",
        access_key_id="test", secret_access_key="test",
    )  # fmt: skip
    with pytest.raises(StorageFailure):
        missing.check()
