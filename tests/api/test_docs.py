"""Swagger UI and ReDoc work offline; the OpenAPI document describes every endpoint."""

from __future__ import annotations

import re

import httpx


async def test_docs_pages_load_their_assets_from_the_app(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200
        html = response.text
        assert "cdn" not in html.lower()
        assert "googleapis" not in html
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets
        for asset in assets:
            assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
            fetched = await client.get(asset)
            assert fetched.status_code == 200, asset
            assert len(fetched.content) > 100


async def test_openapi_documents_every_endpoint(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/api/v1/inference/upload",
        "/api/v1/uploads/{upload_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths
    for path, methods in paths.items():
        for method, op in methods.items():
            assert op.get("summary"), f"{method} {path} has no summary"
            for status, response in op["responses"].items():
                content = response.get("content") or {"application/json": {"example": None}}
                assert status != "422", f"{method} {path}: validation errors are 400 here"
                assert response.get("content") or status == "204", f"{method} {path} {status}"
                media = next(iter(content.values()), {})
                assert "example" in media or "examples" in media, f"{method} {path} {status}"
                if status.startswith(("4", "5")):
                    assert media["schema"]["$ref"].endswith("ErrorResponse"), (
                        f"{method} {path} {status}"
                    )


async def test_upload_is_documented_as_multipart_with_its_errors(client: httpx.AsyncClient) -> None:
    op = (await client.get("/openapi.json")).json()["paths"]["/api/v1/inference/upload"]["post"]
    schema = op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["files"]["type"] == "array"
    examples = op["responses"]["400"]["content"]["application/json"]["examples"]
    for code in (
        "INVALID_FORMAT",
        "FILE_TOO_LARGE",
        "INVALID_DIMENSIONS",
        "CORRUPTED_FILE",
        "TOO_MANY_FILES",
    ):
        assert examples[code]["value"]["error_code"] == code
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "UploadResponse"
    )


async def test_swaggers_authorize_button_offers_a_login_and_an_api_key(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    [oauth] = [s for s in schemes.values() if s["type"] == "oauth2"]
    assert oauth["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
    [key] = [s for s in schemes.values() if s["type"] == "apiKey"]
    assert (key["in"], key["name"]) == ("header", "X-API-Key")
    jobs = spec["paths"]["/api/v1/jobs"]["get"]
    assert {name for requirement in jobs["security"] for name in requirement} == set(schemes)
    assert "security" not in spec["paths"]["/healthz"]["get"]
