"""POST /api/v1/inference/batch: a ZIP archive of a directory tree, on SQLite and PostgreSQL.

Every entry is checked as an uploaded file is; the archive's shape (zip bombs, traversal, links,
duplicates) is checked before anything is expanded; nothing is kept when anything fails.
"""

from __future__ import annotations

import base64
import io
import json
import stat
import struct
import zipfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from nesydet.api.app import create_app
from nesydet.config import Settings
from nesydet.db.models import Job, JobFile
from nesydet.domain import Role
from nesydet.errors import InvalidArchive, SuspectedZipBomb, TooManyFiles
from nesydet.services import archive
from nesydet.services.image_checker import ImageChecker
from tests import images
from tests.api.conftest import AuthApp
from tests.api.test_jobs import queued_messages
from tests.api.test_uploads import assert_envelope, assert_nothing_kept, stored

BATCH = "/api/v1/inference/batch"
MB = 1024 * 1024
FAST_CONFIG = {"sahi": {"enabled": False}, "symbolic_reasoning": {"enabled": False}}
ClientFactory = Callable[..., Any]


def make_zip(
    entries: list[tuple[str, bytes]],
    *,
    links: dict[str, str] | None = None,
    method: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """Return a ZIP archive of ``entries`` (name, data), plus symbolic links name -> target."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries:
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


async def submit(
    client: httpx.AsyncClient,
    data: bytes,
    *,
    config: Any = None,
    name: str = "batch.zip",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    fields = (
        {}
        if config is None
        else {"config": config if isinstance(config, str) else json.dumps(config)}
    )
    return await client.post(
        BATCH,
        files=[("archive", (name, data, "application/zip"))],
        data=fields,
        headers=headers,
    )


def tree() -> bytes:
    return make_zip(
        [
            ("site_a/", b""),
            ("site_a/north.png", images.png(128, 96)),
            ("site_a/2026/south.jpg", images.jpeg(160, 120)),
            ("site_b\\east.tif", images.tiff(100, 90)),
            ("./top.png", images.png(64, 64)),
            ("__MACOSX/site_a/._north.png", b"\x00\x05\x16\x07junk"),
            ("site_a/.DS_Store", b"junk"),
            ("Thumbs.db", b"junk"),
        ]
    )


@asynccontextmanager
async def app_client(
    settings: Settings, checker: ImageChecker, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update=overrides), checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


# --- accepted --------------------------------------------------------------------------------


async def test_a_directory_tree_becomes_one_upload_with_relative_paths(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await submit(client, tree())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    assert body["message"] == "4 images uploaded successfully"
    data = body["data"]
    names = [f["filename"] for f in data["uploaded_files"]]
    # Sorted by path, folders kept, "./" and backslashes normalised.
    assert names == ["site_a/2026/south.jpg", "site_a/north.png", "site_b/east.tif", "top.png"]
    assert [f["format"] for f in data["uploaded_files"]] == ["JPEG", "PNG", "TIFF", "PNG"]
    assert data["uploaded_files"][1]["dimensions"] == [128, 96]
    assert data["skipped_count"] == 3
    assert sorted(data["skipped_entries"]) == [
        "Thumbs.db",
        "__MACOSX/site_a/._north.png",
        "site_a/.DS_Store",
    ]
    assert len(stored(settings)) == 4
    assert list(settings.staging_dir.rglob("*")) == []
    again = await client.get(f"/api/v1/uploads/{data['upload_id']}")
    assert [f["filename"] for f in again.json()["data"]["uploaded_files"]] == names


async def test_with_a_config_the_job_starts_over_every_image(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await submit(client, tree(), config={"confidence_threshold": 0.3, **FAST_CONFIG})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "accepted"
    data = body["data"]
    assert data["job_id"].startswith("job_")
    assert data["upload_id"] == data["upload"]["upload_id"]
    assert data["file_count"] == 4
    assert data["status"] == "queued"
    assert data["config"]["confidence_threshold"] == 0.3
    assert data["config"]["model_path"] == "nesydet-demo-obb.pt"
    assert data["status_url"] == f"/api/v1/jobs/{data['job_id']}/status"
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        job = await session.get(Job, data["job_id"])
        assert job is not None
        assert job.upload_id == data["upload_id"]
        files = await session.scalar(
            select(func.count()).select_from(JobFile).where(JobFile.job_id == job.id)
        )
    assert files == 4
    [message] = queued_messages(settings)
    assert json.loads(base64.b64decode(message["body"]))[0] == [data["job_id"]]
    assert message["headers"]["timelimit"][0] == settings.job_time_limit_s(4)
    status = await client.get(data["status_url"])
    assert status.json()["data"]["progress"]["total_images"] == 4


async def test_the_config_may_come_before_the_archive_and_as_a_file(
    client: httpx.AsyncClient,
) -> None:
    config = json.dumps(FAST_CONFIG).encode()
    response = await client.post(
        BATCH,
        files=[
            ("config", ("config.json", config, "application/json")),
            ("archive", ("a.zip", make_zip([("x.png", images.png(80, 80))]), "application/zip")),
        ],
    )
    assert response.status_code == 202, response.text
    assert response.json()["data"]["config"]["sahi"]["enabled"] is False


# --- refused entry by entry -----------------------------------------------------------------


async def test_bad_entries_are_listed_one_by_one_and_nothing_is_kept(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    good = images.png(96, 96)
    data = make_zip(
        [
            ("ok/fine.png", good),
            ("ok/notes.txt", b"not an image"),
            ("ok/empty.png", b""),
            ("ok/tiny.png", images.png(32, 32)),
            ("ok/broken.png", good[: len(good) // 2]),
            ("../evil.png", good),
            ("/etc/abs.png", good),
            ("C:/windows.png", good),
            ("ok/Fine.PNG", good),
        ],
        links={"ok/link.png": "/etc/passwd"},
    )
    response = await submit(client, data, config=FAST_CONFIG)
    assert response.status_code == 400, response.text
    body = response.json()
    assert_envelope(body, "VALIDATION_ERROR")
    codes = {item["filename"]: item["error_code"] for item in body["errors"]}
    assert codes == {
        "ok/notes.txt": "INVALID_FORMAT",
        "ok/empty.png": "INVALID_FORMAT",
        "ok/tiny.png": "INVALID_DIMENSIONS",
        "ok/broken.png": "CORRUPTED_FILE",
        "../evil.png": "UNSAFE_PATH",
        "/etc/abs.png": "UNSAFE_PATH",
        "C:/windows.png": "UNSAFE_PATH",
        "ok/Fine.PNG": "DUPLICATE_FILE",  # the same path as ok/fine.png, ignoring case
        "ok/link.png": "LINK_NOT_ALLOWED",
    }
    assert all(item["error"] for item in body["errors"])
    assert body["message"] == "9 of 10 files failed validation"
    await assert_nothing_kept(client, settings)
    assert queued_messages(settings) == []


async def test_an_entry_over_the_size_limit_is_not_expanded(
    settings: Settings, checker: ImageChecker
) -> None:
    data = make_zip([("big.png", images.png(64, 64) + b"\0" * (2 * MB)), ("ok.png", images.png())])
    async with app_client(settings, checker, max_file_size_bytes=MB) as client:
        response = await submit(client, data)
        assert response.status_code == 400
        [item] = response.json()["errors"]
        assert (item["filename"], item["error_code"]) == ("big.png", "FILE_TOO_LARGE")
        await assert_nothing_kept(client, settings)


async def test_an_encrypted_or_unsupported_entry_is_refused(client: httpx.AsyncClient) -> None:
    data = bytearray(make_zip([("a.png", images.png()), ("b.png", images.png(70, 70))]))
    # Set b.png's "encrypted" flag in its local header and its central directory entry.
    for signature, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        at = data.find(signature)
        while data[at + name_at : at + name_at + 5] != b"b.png":
            at = data.find(signature, at + 4)
        data[at + flag_at] |= 0x1
    response = await submit(client, bytes(data))
    assert response.status_code == 400, response.text
    [item] = response.json()["errors"]
    assert (item["filename"], item["error_code"]) == ("b.png", "UNSUPPORTED_ENTRY")


# --- refused as a whole ---------------------------------------------------------------------


async def test_not_a_zip_archive(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await submit(client, images.png(), name="photo.png")
    assert response.status_code == 400
    assert_envelope(response.json(), "INVALID_ARCHIVE")
    assert "PNG" in response.json()["details"]
    broken = await submit(client, b"PK\x03\x04" + b"\x00" * 100)
    assert broken.status_code == 400
    assert_envelope(broken.json(), "INVALID_ARCHIVE")
    await assert_nothing_kept(client, settings)


@pytest.mark.parametrize(
    ("entries", "code"),
    [
        ([], "NO_FILES"),
        ([("folder/", b""), ("__MACOSX/._a.png", b"x"), (".hidden.png", b"x")], "NO_FILES"),
    ],
    ids=["empty", "only-skipped"],
)
async def test_an_archive_without_files(
    client: httpx.AsyncClient, entries: list[tuple[str, bytes]], code: str
) -> None:
    response = await submit(client, make_zip(entries))
    assert response.status_code == 400
    assert_envelope(response.json(), code)


async def test_the_request_must_carry_one_archive(client: httpx.AsyncClient) -> None:
    missing = await client.post(BATCH, files=[("files", ("a.png", images.png(), "image/png"))])
    assert missing.status_code == 400
    assert_envelope(missing.json(), "NO_FILES")
    assert "files" in missing.json()["details"]
    one = make_zip([("a.png", images.png())])
    two = await client.post(
        BATCH, files=[("archive", ("a.zip", one, "x")), ("archive", ("b.zip", one, "x"))]
    )
    assert two.status_code == 400
    assert_envelope(two.json(), "INVALID_REQUEST")
    not_multipart = await client.post(
        BATCH, content=one, headers={"content-type": "application/zip"}
    )
    assert not_multipart.status_code == 400
    assert_envelope(not_multipart.json(), "INVALID_REQUEST")
    twice = await client.post(
        BATCH,
        files=[("archive", ("a.zip", one, "x"))],
        data={"config": ["{}", "{}"]},
    )
    assert twice.status_code == 400
    assert_envelope(twice.json(), "INVALID_REQUEST")


async def test_too_many_entries(settings: Settings, checker: ImageChecker) -> None:
    data = make_zip([(f"{n}.png", images.png(64, 64)) for n in range(4)])
    async with app_client(settings, checker, batch_max_entries=3) as client:
        response = await submit(client, data)
        assert response.status_code == 400
        assert_envelope(response.json(), "TOO_MANY_FILES")
        assert "4 entries" in response.json()["details"]
        await assert_nothing_kept(client, settings)


async def test_an_archive_over_the_size_limits(settings: Settings, checker: ImageChecker) -> None:
    data = make_zip([(f"{n}.png", images.png(300, 300)) for n in range(3)], method=0)
    async with app_client(settings, checker, batch_max_archive_bytes=len(data) - 1) as client:
        response = await submit(client, data)
        assert response.status_code == 413
        assert_envelope(response.json(), "ARCHIVE_TOO_LARGE")
        await assert_nothing_kept(client, settings)
    async with app_client(settings, checker, batch_max_total_bytes=len(data) // 2) as client:
        response = await submit(client, data)
        assert response.status_code == 413
        assert_envelope(response.json(), "ARCHIVE_TOO_LARGE")
        await assert_nothing_kept(client, settings)


async def test_a_zip_bomb_is_refused_before_anything_is_expanded(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # 80 entries of 1 MiB of zeros: each within the size limit, 80 MiB from about 80 KiB.
    data = make_zip([(f"{n}.png", b"\0" * MB) for n in range(80)])
    response = await submit(client, data)
    assert response.status_code == 400
    assert_envelope(response.json(), "SUSPECTED_ZIP_BOMB")
    await assert_nothing_kept(client, settings)


async def test_invalid_configs_are_refused_before_the_archive_is_read(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    data = make_zip([("a.png", images.png())])
    cases = [
        ("{not json", "config"),
        ("[1, 2]", "config"),
        (json.dumps({"confidence_threshold": 2}), "config.confidence_threshold"),
        (json.dumps({"confidence_treshold": 0.2}), "config.confidence_treshold"),
        (json.dumps({"model_path": "missing.pt"}), "config.model_path"),
    ]
    for config, field in cases:
        response = await submit(client, data, config=config)
        assert response.status_code == 400, (config, response.text)
        body = response.json()
        assert_envelope(body, "INVALID_CONFIG")
        assert [item["field"] for item in body["errors"]] == [field], body
    await assert_nothing_kept(client, settings)


async def test_a_retry_with_the_same_key_replays_the_first_answer(
    client: httpx.AsyncClient,
) -> None:
    data = tree()
    key = {"Idempotency-Key": "batch-1"}
    first = await submit(client, data, config=FAST_CONFIG, headers=key)
    assert first.status_code == 202, first.text
    again = await submit(client, data, config=FAST_CONFIG, headers=key)
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["data"]["job_id"] == first.json()["data"]["job_id"]
    other = await submit(client, data, config={"confidence_threshold": 0.9}, headers=key)
    assert other.status_code == 409
    assert_envelope(other.json(), "IDEMPOTENCY_KEY_REUSED")


# --- who may ---------------------------------------------------------------------------------


async def test_the_roles_of_the_upload_endpoint_apply(auth_app: AuthApp) -> None:
    user = await auth_app.account("ana")
    other = await auth_app.account("ben")
    viewer = await auth_app.account("grafana", Role.VIEWER)
    data = make_zip([("a.png", images.png())])
    anonymous = await submit(auth_app.client, data)
    assert anonymous.status_code == 401
    assert_envelope(anonymous.json(), "AUTHENTICATION_REQUIRED")
    denied = await submit(auth_app.client, data, headers=viewer.headers)
    assert denied.status_code == 403
    assert_envelope(denied.json(), "ACCESS_DENIED")
    made = await submit(auth_app.client, data, config=FAST_CONFIG, headers=user.headers)
    assert made.status_code == 202, made.text
    job_id = made.json()["data"]["job_id"]
    mine = await auth_app.client.get(f"/api/v1/jobs/{job_id}/status", headers=user.headers)
    assert mine.status_code == 200
    theirs = await auth_app.client.get(f"/api/v1/jobs/{job_id}/status", headers=other.headers)
    assert theirs.status_code == 404


# --- the archive reader on its own ----------------------------------------------------------

LIMITS = archive.ArchiveLimits(
    max_entries=100, max_total_bytes=1 << 30, max_ratio=100.0, max_file_size=50 * MB
)


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "a.zip"
    path.write_bytes(data)
    return path


def test_a_forged_entry_count_is_refused_before_the_directory_is_parsed(tmp_path: Path) -> None:
    data = bytearray(make_zip([("a.png", b"x")]))
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 0xFFFE, 0xFFFE)  # entries on this disk, in total
    with pytest.raises(TooManyFiles):
        archive.open_archive(write(tmp_path, bytes(data)), LIMITS)


def test_a_forged_directory_size_is_refused(tmp_path: Path) -> None:
    data = bytearray(make_zip([("a.png", b"x")]))
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<L", data, end + 12, 50_000_000)  # central directory size
    with pytest.raises(InvalidArchive):
        archive.open_archive(write(tmp_path, bytes(data)), LIMITS)


def test_overlapping_entries_are_refused(tmp_path: Path) -> None:
    """Two directory entries that point at the same data: the overlapping-files bomb."""
    data = make_zip([("a.png", b"\0" * 1000)])
    start = data.rfind(b"PK\x01\x02")
    end = data.rfind(b"PK\x05\x06")
    central = data[start:end]
    twin = central.replace(b"a.png", b"b.png")
    record = bytearray(data[end:])
    struct.pack_into("<HHL", record, 8, 2, 2, len(central) * 2)
    forged = data[:start] + central + twin + bytes(record)
    with pytest.raises(SuspectedZipBomb):
        archive.open_archive(write(tmp_path, forged), LIMITS)


def test_a_declared_size_smaller_than_the_data_fails_its_entry(tmp_path: Path) -> None:
    payload = images.png(80, 80)
    data = bytearray(make_zip([("a.png", payload)], method=zipfile.ZIP_STORED))
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        struct.pack_into("<L", data, at + size_at, 100)  # uncompressed size: a lie
    with archive.open_archive(write(tmp_path, bytes(data)), LIMITS) as zf:
        [entry] = archive.inspect(zf, LIMITS).entries
        out = archive.expand(zf, entry.info, tmp_path / "out", 50 * MB)
    assert isinstance(out, archive.ImageProblem)
    assert out.code == "CORRUPTED_FILE"
    assert not (tmp_path / "out").exists()


def test_time_limits_scale_with_the_image_count() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    small = settings.job_time_limit_s(settings.max_files_per_upload)
    assert small <= settings.max_job_time_limit_s
    huge = settings.job_time_limit_s(5000)
    assert huge == 5000 * settings.job_time_limit_min_per_image_s > settings.max_job_time_limit_s
    longest = settings.job_time_limit_s(settings.batch_max_entries)
    assert settings.visibility_timeout_s > longest
