"""Served files are downloads, never documents a browser would render."""

from __future__ import annotations

import io
import zipfile

import httpx

from tests import images

HTML = b"<html><script>alert(document.cookie)</script></html>"


def polyglot_png() -> bytes:
    """Return a valid PNG that is also an HTML page and a ZIP archive (data after IEND)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("page.html", HTML)
    return images.png(96, 80) + HTML + archive.getvalue()


async def test_a_polyglot_original_is_served_as_an_attachment_never_sniffed(
    client: httpx.AsyncClient,
) -> None:
    data = polyglot_png()
    upload = await client.post(
        "/api/v1/inference/upload", files=[("files", ("page.png", data, "text/html"))]
    )
    assert upload.status_code == 200, upload.text
    stored = upload.json()["data"]["uploaded_files"][0]
    assert stored["format"] == "PNG"
    original = await client.get(f"/api/v1/files/{stored['file_id']}/original")
    assert original.status_code == 200
    assert original.content == data
    assert original.headers["content-type"] == "image/png"
    assert original.headers["content-disposition"].startswith("attachment;")
    assert original.headers["x-content-type-options"] == "nosniff"
