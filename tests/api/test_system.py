"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from nesydet.api.app import create_app
from nesydet.config import Settings
from nesydet.services.image_checker import ImageChecker
from tests import images
from tests.api.test_uploads import assert_envelope


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readyz_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["database"]["ok"]
    assert checks["storage"]["ok"]


async def test_readyz_names_a_dead_database(settings: Settings, checker: ImageChecker) -> None:
    broken = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none"}
    )
    app = create_app(broken, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert_envelope(body, "NOT_READY")
    assert body["message"] == "Not ready: database"
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["storage"]["ok"] is True


async def test_readyz_names_unwritable_storage(settings: Settings, checker: ImageChecker) -> None:
    blocker = settings.storage_root.parent / "a-file"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory")
    broken = settings.model_copy(update={"storage_root": blocker / "storage"})
    app = create_app(broken, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["message"] == "Not ready: storage"


async def test_metrics_use_route_templates_and_count_uploads(client: httpx.AsyncClient) -> None:
    before = (await client.get("/metrics")).text
    upload = await client.post(
        "/api/v1/inference/upload",
        files=[("files", (f"{i}.png", images.png(), "image/png")) for i in range(3)],
    )
    assert upload.status_code == 200
    upload_id = upload.json()["data"]["upload_id"]
    await client.get(f"/api/v1/uploads/{upload_id}")
    await client.get("/api/v1/uploads/upl_000000000000")
    await client.post(
        "/api/v1/inference/upload", files=[("files", ("x.pdf", images.pdf(), "application/pdf"))]
    )
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    assert upload_id not in after
    template = "/api/v1/uploads/{upload_id}"

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("api_requests_total", method="GET", endpoint=template, status="200") == 1
    assert delta("api_requests_total", method="GET", endpoint=template, status="404") == 1
    assert (
        delta(
            "api_requests_total", method="POST", endpoint="/api/v1/inference/upload", status="200"
        )
        == 1
    )
    assert (
        delta(
            "api_requests_total", method="POST", endpoint="/api/v1/inference/upload", status="400"
        )
        == 1
    )
    assert delta("api_request_duration_seconds_count", method="GET", endpoint=template) == 2
    assert delta("uploaded_files_total") == 3
    assert delta("upload_rejected_files_total", error_code="INVALID_FORMAT") == 1
    await client.get("/no/such/path/12345")
    final = (await client.get("/metrics")).text
    assert "/no/such/path" not in final
    assert value(final, "api_requests_total", method="GET", endpoint="unmatched", status="404") >= 1
