"""The one error envelope: domain errors, FastAPI's own errors, 404/405/413/429/500, headers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Query

from nesydet.api.app import create_app
from nesydet.config import Settings
from nesydet.services.image_checker import ImageChecker
from tests import images
from tests.api.test_uploads import assert_envelope


async def test_unknown_route_is_enveloped_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing/here")
    assert response.status_code == 404
    body = response.json()
    assert_envelope(body, "NOT_FOUND")
    assert body["details"] == "no route for GET /api/v1/nothing/here"


async def test_wrong_method_is_enveloped_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/v1/inference/upload")
    assert response.status_code == 405
    assert_envelope(response.json(), "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"


async def test_every_response_carries_request_id_and_version(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/healthz"),
        await client.get("/nope"),
        await client.post(
            "/api/v1/inference/upload", files=[("files", ("a.png", images.png(), "image/png"))]
        ),
    ):
        assert response.headers["x-api-version"] == "1.0"
        assert response.headers["x-request-id"].startswith("req_")


async def test_client_request_id_is_echoed_when_well_formed(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope", headers={"X-Request-ID": "client-abc.123"})
    assert response.headers["x-request-id"] == "client-abc.123"
    assert response.json()["request_id"] == "client-abc.123"
    bad = await client.get("/nope", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert bad.headers["x-request-id"].startswith("req_")
    too_long = await client.get("/healthz", headers={"X-Request-ID": "a" * 200})
    assert too_long.headers["x-request-id"].startswith("req_")


@pytest.fixture
async def trap_client(
    settings: Settings, checker: ImageChecker
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an app with two extra routes: one that crashes, one with a typed query."""
    app = create_app(settings, checker=checker)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail /etc/shadow")

    @app.get("/typed")
    async def typed(limit: int = Query(ge=1, le=100)) -> dict[str, int]:
        return {"limit": limit}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_unexpected_exception_is_500_without_trace(
    trap_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await trap_client.get("/boom", headers={"X-Request-ID": "trace-me-1"})
    assert response.status_code == 500
    body = response.json()
    assert body["status"] == "error"
    assert body["error_code"] == "INTERNAL_ERROR"
    assert body["error"]["code"] == "INTERNAL_ERROR"
    assert body["request_id"] == "trace-me-1"
    assert response.headers["x-request-id"] == "trace-me-1"
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert logged
    assert logged[0].exc_info is not None
    assert "secret internal detail" in caplog.text


async def test_fastapi_validation_error_uses_envelope(trap_client: httpx.AsyncClient) -> None:
    response = await trap_client.get("/typed", params={"limit": "0"})
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "VALIDATION_ERROR"
    assert body["errors"][0]["field"] == "limit"
    assert body["errors"][0]["location"] == "query"
    missing = await trap_client.get("/typed")
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "limit"


async def test_request_body_over_the_batch_limit_is_413(
    settings: Settings, checker: ImageChecker
) -> None:
    small = settings.model_copy(update={"max_files_per_upload": 1, "max_file_size_bytes": 1024})
    app = create_app(small, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post(
                "/api/v1/inference/upload",
                files=[("files", ("x.png", b"\x89PNG" + b"\x00" * 3_000_000, "image/png"))],
            )
    assert response.status_code == 413
    assert_envelope(response.json(), "REQUEST_TOO_LARGE")
    assert list((small.storage_root).rglob("*.png")) == []


async def test_rate_limit_is_429_with_retry_after(
    settings: Settings, checker: ImageChecker
) -> None:
    limited = settings.model_copy(update={"rate_limit": "3/minute"})
    app = create_app(limited, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            codes = [
                (await http.get("/api/v1/uploads/upl_000000000000")).status_code for _ in range(4)
            ]
            over = await http.get("/api/v1/uploads/upl_000000000000")
            health = await http.get("/healthz")
            metrics = await http.get("/metrics")
    assert codes == [404, 404, 404, 429]
    assert over.status_code == 429
    assert_envelope(over.json(), "RATE_LIMIT_EXCEEDED")
    assert int(over.headers["retry-after"]) >= 1
    assert over.headers["x-request-id"].startswith("req_")
    assert health.status_code == 200
    assert metrics.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", "/api/v1/jobs/%00/status", "JOB_NOT_FOUND"),
        ("GET", "/api/v1/jobs/job_%00%00/results", "JOB_NOT_FOUND"),
        ("POST", "/api/v1/jobs/" + "x" * 5000 + "/cancel", "JOB_NOT_FOUND"),
        ("GET", "/api/v1/uploads/upl_%27%3B--", "UPLOAD_NOT_FOUND"),
        ("GET", "/api/v1/files/%00/original", "FILE_NOT_FOUND"),
        ("GET", "/api/v1/jobs/%00/results/%00/labels.txt", "JOB_NOT_FOUND"),
    ],
)
async def test_a_malformed_id_in_a_path_answers_like_an_unknown_one(
    client: httpx.AsyncClient, method: str, path: str, code: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 404
    assert_envelope(response.json(), code)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"upload_id": "\u0000"}, "upload_id"),
        ({"upload_id": "upl_" + "a" * 100}, "upload_id"),
        ({"upload_id": "upl_a1b2c3d4e5f6", "file_ids": ["img_\u0000" * 20]}, "file_ids.0"),
    ],
)
async def test_a_malformed_id_in_a_body_is_a_400_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post("/api/v1/inference/predict", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert_envelope(payload, "VALIDATION_ERROR")
    assert [e["field"] for e in payload["errors"]] == [field]


@pytest.mark.parametrize("query", ["job_id=%00", "job_id=job_" + "f" * 40])
async def test_a_malformed_id_in_a_query_is_a_400(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/api/v1/files/img_000000000000/annotated?{query}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "job_id"


async def test_a_trailing_slash_redirects_relative_never_to_the_host_header(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/jobs/?limit=5", headers={"Host": "evil.example"})
    assert response.status_code == 307
    assert response.headers["location"] == "/api/v1/jobs?limit=5"
    followed = await client.get(response.headers["location"])
    assert followed.status_code == 200


@pytest.mark.parametrize("path", ["//evil.example/", "/nothing/here/", "/"])
async def test_no_redirect_off_the_routes(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers={"Host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/api/v1/jobs", "/nowhere", "/docs"):
        response = await client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY", path


async def test_an_unreachable_database_answers_503_with_retry_after(
    settings: Settings, checker: ImageChecker, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.integration.prom import free_port

    down = settings.model_copy(
        update={"database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test"}
    )
    app = create_app(down, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            for method, path in [
                ("GET", "/api/v1/jobs"),
                ("GET", "/api/v1/jobs/job_000000000000/status"),
                ("GET", "/api/v1/uploads/upl_000000000000"),
                ("POST", "/api/v1/jobs/job_000000000000/cancel"),
            ]:
                response = await http.request(method, path)
                assert response.status_code == 503, (path, response.text)
                assert response.headers["retry-after"] == "5"
                assert_envelope(response.json(), "SERVICE_UNAVAILABLE")
            assert (await http.get("/healthz")).status_code == 200
    assert not any(r.exc_info for r in caplog.records), "no stack trace for an outage"
