"""POST /api/v1/inference/upload and GET /api/v1/uploads/{id}: every input the spec names."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from nesydet.config import Settings
from nesydet.db.models import Upload, UploadedFile
from tests import images

UPLOAD = "/api/v1/inference/upload"
MB = 1024 * 1024


async def post(
    client: httpx.AsyncClient,
    *files: tuple[str, bytes],
    content_type: str = "application/octet-stream",
) -> httpx.Response:
    parts = [("files", (name, data, content_type)) for name, data in files]
    return await client.post(UPLOAD, files=parts)


def stored(settings: Settings) -> list[Path]:
    root = settings.storage_root / "uploads"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def staging_leftovers(settings: Settings) -> list[Path]:
    root = settings.staging_dir
    return sorted(root.rglob("*")) if root.exists() else []


async def row_counts(client: httpx.AsyncClient) -> tuple[int, int]:
    async with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        uploads = await session.scalar(select(func.count()).select_from(Upload))
        files = await session.scalar(select(func.count()).select_from(UploadedFile))
    return int(uploads or 0), int(files or 0)


async def assert_nothing_kept(client: httpx.AsyncClient, settings: Settings) -> None:
    assert stored(settings) == []
    assert staging_leftovers(settings) == []
    assert await row_counts(client) == (0, 0)


def assert_envelope(body: dict[str, Any], code: str) -> None:
    assert body["status"] == "error"
    assert body["error_code"] == code
    assert body["message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["timestamp"])
    assert body["request_id"].startswith("req_")
    assert body["error"]["code"] == code


def single_error(response: httpx.Response, code: str, filename: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert_envelope(body, code)
    assert len(body["errors"]) == 1
    item = body["errors"][0]
    assert item["filename"] == filename
    assert item["error_code"] == code
    assert item["error"]
    return item


ACCEPTED = [
    ("photo.jpg", images.jpeg(320, 240), "JPEG", (320, 240), "RGB"),
    ("gray.jpg", images.jpeg(200, 100, "L"), "JPEG", (200, 100), "L"),
    ("cmyk.jpg", images.jpeg(160, 120, "CMYK"), "JPEG", (160, 120), "CMYK"),
    ("scene.png", images.png(320, 200), "PNG", (320, 200), "RGB"),
    ("alpha.png", images.png(128, 64, "RGBA"), "PNG", (128, 64), "RGBA"),
    ("palette.png", images.png(100, 80, "P"), "PNG", (100, 80), "P"),
    ("rgb8.tif", images.tiff(256, 192), "TIFF", (256, 192), "RGB"),
    ("lzw.tiff", images.tiff(256, 192, compression="tiff_lzw"), "TIFF", (256, 192), "RGB"),
    ("gray8.tif", images.tiff(100, 90, "L"), "TIFF", (100, 90), "L"),
    ("gray16.tif", images.tiff(300, 200, "I;16"), "TIFF", (300, 200), "I;16"),
    ("rgb16.tif", images.tiff_rgb16(128, 96), "TIFF", (128, 96), "RGB"),
    ("cmyk.tif", images.tiff(120, 100, "CMYK"), "TIFF", (120, 100), "CMYK"),
    ("alpha.tif", images.tiff(96, 96, "RGBA"), "TIFF", (96, 96), "RGBA"),
    ("min.png", images.png(64, 64), "PNG", (64, 64), "RGB"),
]


@pytest.mark.parametrize(
    ("name", "data", "fmt", "dims", "mode"), ACCEPTED, ids=[a[0] for a in ACCEPTED]
)
async def test_accepts_each_format(
    client: httpx.AsyncClient,
    settings: Settings,
    name: str,
    data: bytes,
    fmt: str,
    dims: tuple[int, int],
    mode: str,
) -> None:
    response = await post(client, (name, data))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    assert body["message"] == "1 image uploaded successfully"
    upload_id = body["data"]["upload_id"]
    assert re.fullmatch(r"upl_[0-9a-f]{12}", upload_id)
    [item] = body["data"]["uploaded_files"]
    assert re.fullmatch(r"img_[0-9a-f]{12}", item["file_id"])
    assert item["filename"] == name
    assert item["format"] == fmt
    assert item["size_bytes"] == len(data)
    assert tuple(item["dimensions"]) == dims
    assert item["mode"] == mode
    assert item["sha256"] == hashlib.sha256(data).hexdigest()
    ext = {"JPEG": "jpg", "PNG": "png", "TIFF": "tiff"}[fmt]
    path = settings.storage_root / "uploads" / upload_id / f"{item['file_id']}.{ext}"
    assert path.read_bytes() == data
    assert stored(settings) == [path]
    assert staging_leftovers(settings) == []
    assert await row_counts(client) == (1, 1)


async def test_multipage_tiff_reports_pages(client: httpx.AsyncClient) -> None:
    response = await post(client, ("pages.tif", images.multipage_tiff(3)))
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]["uploaded_files"]
    assert item["format"] == "TIFF"
    assert item["page_count"] == 3


async def test_batch_keeps_order_and_reads_back(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    files = [
        ("image1.jpg", images.jpeg()),
        ("image2.png", images.png()),
        ("image3.tif", images.tiff()),
    ]
    response = await post(client, *files)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert response.json()["message"] == "3 images uploaded successfully"
    assert [f["filename"] for f in data["uploaded_files"]] == [
        "image1.jpg",
        "image2.png",
        "image3.tif",
    ]
    assert len({f["file_id"] for f in data["uploaded_files"]}) == 3
    assert data["file_count"] == 3
    assert data["total_bytes"] == sum(len(d) for _, d in files)
    assert len(stored(settings)) == 3
    again = await client.get(f"/api/v1/uploads/{data['upload_id']}")
    assert again.status_code == 200
    assert again.json()["data"] == data


async def test_png_named_jpg_is_accepted_as_png(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await post(client, ("actually_png.jpg", images.png()), content_type="image/jpeg")
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]["uploaded_files"]
    assert item["format"] == "PNG"
    assert item["content_type"] == "image/png"
    assert item["filename"] == "actually_png.jpg"
    [path] = stored(settings)
    assert path.suffix == ".png"


async def test_pdf_is_invalid_format(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await post(client, ("document.pdf", images.pdf()), content_type="image/png")
    item = single_error(response, "INVALID_FORMAT", "document.pdf")
    assert "JPEG, PNG, TIFF" in item["error"]
    await assert_nothing_kept(client, settings)


async def test_zero_byte_file_is_invalid_format(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    item = single_error(await post(client, ("empty.png", b"")), "INVALID_FORMAT", "empty.png")
    assert item["details"] == "file is empty"
    await assert_nothing_kept(client, settings)


async def test_truncated_png_is_corrupted(client: httpx.AsyncClient, settings: Settings) -> None:
    single_error(
        await post(client, ("cut.png", images.truncated_png())), "CORRUPTED_FILE", "cut.png"
    )
    await assert_nothing_kept(client, settings)


async def test_truncated_jpeg_is_corrupted(client: httpx.AsyncClient, settings: Settings) -> None:
    data = images.jpeg(640, 480)
    single_error(
        await post(client, ("cut.jpg", data[: len(data) // 2])), "CORRUPTED_FILE", "cut.jpg"
    )
    await assert_nothing_kept(client, settings)


async def test_png_with_bad_crc_is_corrupted(client: httpx.AsyncClient, settings: Settings) -> None:
    data = bytearray(images.png(100, 100))
    data[len(data) // 2] ^= 0xFF  # inside IDAT: the chunk CRC no longer matches
    single_error(await post(client, ("flipped.png", bytes(data))), "CORRUPTED_FILE", "flipped.png")
    await assert_nothing_kept(client, settings)


async def test_decompression_bomb_is_refused(client: httpx.AsyncClient, settings: Settings) -> None:
    data = images.decompression_bomb()
    assert len(data) < 100_000
    item = single_error(await post(client, ("bomb.png", data)), "INVALID_DIMENSIONS", "bomb.png")
    assert "decompression bomb" in item["details"]
    await assert_nothing_kept(client, settings)


@pytest.mark.parametrize(("width", "height"), [(63, 100), (100, 63), (8193, 64), (64, 8193)])
async def test_dimensions_out_of_range(
    client: httpx.AsyncClient, settings: Settings, width: int, height: int
) -> None:
    data = images.encode(images.Image.new("L", (width, height)), "PNG")
    item = single_error(await post(client, ("odd.png", data)), "INVALID_DIMENSIONS", "odd.png")
    assert f"{width}x{height}" in item["details"]
    await assert_nothing_kept(client, settings)


async def test_largest_dimensions_accepted(client: httpx.AsyncClient) -> None:
    data = images.encode(images.Image.new("L", (8192, 8192)), "PNG")
    response = await post(client, ("max.png", data))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["uploaded_files"][0]["dimensions"] == [8192, 8192]


async def test_file_over_50_mb_is_too_large(client: httpx.AsyncClient, settings: Settings) -> None:
    data = images.big_padded(50 * MB + 1)
    item = single_error(await post(client, ("huge.png", data)), "FILE_TOO_LARGE", "huge.png")
    assert "50 MB" in item["error"]
    await assert_nothing_kept(client, settings)


async def test_file_of_exactly_50_mb_is_accepted(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # A valid PNG followed by padding: bytes after the image's end are kept, as decoders
    # (and cameras that append data to their files) do.
    data = images.big_padded(50 * MB)
    response = await post(client, ("edge.png", data))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["uploaded_files"][0]["size_bytes"] == 50 * MB
    [path] = stored(settings)
    assert path.stat().st_size == 50 * MB


async def test_101_files_are_too_many(client: httpx.AsyncClient, settings: Settings) -> None:
    small = images.png(64, 64)
    response = await post(client, *[(f"f{i}.png", small) for i in range(101)])
    assert response.status_code == 400
    body = response.json()
    assert_envelope(body, "TOO_MANY_FILES")
    assert "101" in body["details"]
    await assert_nothing_kept(client, settings)


async def test_100_files_are_accepted(client: httpx.AsyncClient, settings: Settings) -> None:
    small = images.png(64, 64)
    response = await post(client, *[(f"f{i}.png", small) for i in range(100)])
    assert response.status_code == 200, response.text
    assert response.json()["data"]["file_count"] == 100
    assert len(stored(settings)) == 100
    assert await row_counts(client) == (1, 100)


async def test_path_traversal_filename_is_metadata_only(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    response = await post(client, ("../../etc/passwd.png", images.png()))
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]["uploaded_files"]
    assert item["filename"] == "passwd.png"
    [path] = stored(settings)
    assert path.parent.parent == settings.storage_root / "uploads"
    assert path.name == f"{item['file_id']}.png"
    assert not (tmp_path / "etc").exists()
    assert not any("passwd" in p.name for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("..\\..\\windows\\evil.png", "evil.png"),
        ("/abs/path/x.png", "x.png"),
        ("...", "file-1"),
        ("", "file-1"),
    ],
)
async def test_filenames_are_sanitised(client: httpx.AsyncClient, raw: str, clean: str) -> None:
    response = await client.post(UPLOAD, files=[("files", (raw, images.png(), "image/png"))])
    assert response.status_code == 200, response.text
    assert response.json()["data"]["uploaded_files"][0]["filename"] == clean


async def test_control_characters_are_dropped_from_filenames(client: httpx.AsyncClient) -> None:
    # httpx would percent-encode these, so the body is written by hand.
    body = (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="files"; filename="ctrl\x07na\x1bme.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + images.png() + b"\r\n--b0undary--\r\n"
    )
    response = await client.post(
        UPLOAD, content=body, headers={"content-type": "multipart/form-data; boundary=b0undary"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["uploaded_files"][0]["filename"] == "ctrlname.png"


async def test_one_bad_file_rejects_the_whole_batch(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await post(
        client,
        ("good.jpg", images.jpeg()),
        ("document.pdf", images.pdf()),
        ("cut.png", images.truncated_png()),
        ("good.png", images.png()),
    )
    assert response.status_code == 400
    body = response.json()
    assert_envelope(body, "VALIDATION_ERROR")
    assert [(e["filename"], e["error_code"]) for e in body["errors"]] == [
        ("document.pdf", "INVALID_FORMAT"),
        ("cut.png", "CORRUPTED_FILE"),
    ]
    assert body["message"] == "2 of 4 files failed validation"
    await assert_nothing_kept(client, settings)


async def test_same_code_failures_share_the_top_level_code(client: httpx.AsyncClient) -> None:
    response = await post(client, ("a.pdf", images.pdf()), ("b.txt", b"hello"))
    body = response.json()
    assert_envelope(body, "INVALID_FORMAT")
    assert [e["filename"] for e in body["errors"]] == ["a.pdf", "b.txt"]


async def test_not_multipart_is_invalid_request(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post(UPLOAD, json={"files": []})
    assert response.status_code == 400
    assert_envelope(response.json(), "INVALID_REQUEST")
    assert "multipart/form-data" in response.json()["message"]
    await assert_nothing_kept(client, settings)


async def test_missing_files_field(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.post(UPLOAD, files=[("file", ("x.png", images.png(), "image/png"))])
    assert response.status_code == 400
    body = response.json()
    assert_envelope(body, "NO_FILES")
    assert "file" in body["details"]
    await assert_nothing_kept(client, settings)


async def test_malformed_multipart_body(client: httpx.AsyncClient, settings: Settings) -> None:
    body = (
        b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
        + images.png()
    )
    response = await client.post(
        UPLOAD, content=body, headers={"content-type": "multipart/form-data; boundary=xyz"}
    )
    assert response.status_code == 400
    assert_envelope(response.json(), "INVALID_REQUEST")
    await assert_nothing_kept(client, settings)


async def test_unknown_upload_is_404(client: httpx.AsyncClient) -> None:
    for upload_id in ("upl_000000000000", "nonsense", "upl_../../x"):
        response = await client.get(f"/api/v1/uploads/{upload_id}")
        assert response.status_code == 404
        assert_envelope(response.json(), "UPLOAD_NOT_FOUND")


async def test_thousands_of_form_fields_are_refused_early_without_echoing_them(
    client: httpx.AsyncClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    fields = b"".join(
        b'--xyz\r\nContent-Disposition: form-data; name="field-%05d-%s"\r\n\r\nv\r\n'
        % (i, b"x" * 200)
        for i in range(10_000)
    )
    body = fields + b"--xyz--\r\n"
    response = await client.post(
        "/api/v1/inference/upload",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 400
    payload = response.json()
    assert_envelope(payload, "INVALID_REQUEST")
    assert payload["message"] == "Too many form fields"
    assert len(response.content) < 2_000, "the reply must not echo the fields"
    assert max((len(r.getMessage()) for r in caplog.records), default=0) < 2_000
    await assert_nothing_kept(client, settings)


async def test_no_files_names_at_most_a_few_fields(client: httpx.AsyncClient) -> None:
    body = b"".join(
        b'--xyz\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i for i in range(12)
    )
    response = await client.post(
        "/api/v1/inference/upload",
        content=body + b"--xyz--\r\n",
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 400
    details = response.json()["details"]
    assert "f0, f1, f2, f3, f4 and 7 more" in details
    assert "f11" not in details
