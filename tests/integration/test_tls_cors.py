"""HTTPS with a real certificate chain, HSTS, security headers, and CORS preflights, against a
real ``nesydet serve`` process."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from tests.integration.prom import (
    free_port,
    migrate,
    nesydet_command,
    nesydet_env,
    spawn,
    wait_until,
)

ALLOWED = "app://nesydet"  # the desktop app's origin (a custom protocol, see README)
DEV = "http://localhost:5173"


@dataclass
class TlsServer:
    url: str
    ca_file: Path

    def trust(self) -> ssl.SSLContext:
        """Return a client context that trusts the test CA (and verifies, as by default)."""
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, chain, key = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    root = tmp_path / "srv"
    root.mkdir()
    env = nesydet_env(root, NESYDET_CORS_ORIGINS=f"{ALLOWED},{DEV}")
    migrate(env, root)
    port = free_port()
    proc = spawn(
        "api",
        nesydet_command("serve", "--port", str(port), "--ssl-certfile", str(chain),
                        "--ssl-keyfile", str(key)),
        env=env, cwd=root,
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(ca_file))
    try:
        wait_until(
            lambda: httpx.get(f"{url}/healthz", verify=trusted).status_code == 200,
            timeout=60, what="the HTTPS API", process=proc,
        )  # fmt: skip
        yield TlsServer(url, ca_file)
    finally:
        proc.stop()


def test_https_with_verification_hsts_and_security_headers(tls_server: TlsServer) -> None:
    with httpx.Client(base_url=tls_server.url, verify=tls_server.trust()) as client:
        response = client.get("/api/v1/jobs")
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "server" not in response.headers, "no server name or version"
    # A client that does not trust the CA refuses the connection: verification is real.
    with pytest.raises(httpx.ConnectError) as refused:
        httpx.get(f"{tls_server.url}/healthz", verify=ssl.create_default_context())
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)


def preflight(client: httpx.Client, origin: str) -> httpx.Response:
    return client.options(
        "/api/v1/inference/predict",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


def test_cors_preflights_allow_the_listed_origins_only(tls_server: TlsServer) -> None:
    with httpx.Client(base_url=tls_server.url, verify=tls_server.trust()) as client:
        for origin in (ALLOWED, DEV):
            allowed = preflight(client, origin)
            assert allowed.status_code == 200, allowed.text
            assert allowed.headers["access-control-allow-origin"] == origin
            assert "POST" in allowed.headers["access-control-allow-methods"]
            assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
        other = preflight(client, "https://evil.example")
        assert "access-control-allow-origin" not in other.headers
        assert other.status_code == 400
        simple = client.get("/api/v1/jobs", headers={"Origin": ALLOWED})
        assert simple.headers["access-control-allow-origin"] == ALLOWED
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
        foreign = client.get("/api/v1/jobs", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in foreign.headers
