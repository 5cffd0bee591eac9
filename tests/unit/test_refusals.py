"""Unsafe settings stop the service before it serves anything, saying why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from nesydet.config import Settings, is_loopback, refusals

GOOD_SECRET = SecretStr("a" * 24 + "Zq9-" + "b" * 20)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.8.9.10"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.4", "api.example.com"])  # noqa: S104
def test_other_hosts(host: str) -> None:
    assert not is_loopback(host)


def test_without_authentication_only_loopback_is_served() -> None:
    assert refusals(Settings(auth_mode="none"), host="127.0.0.1") == []
    [why] = refusals(Settings(auth_mode="none"), host="0.0.0.0")  # noqa: S104
    assert "NESYDET_AUTH_MODE=none" in why
    assert "bind 127.0.0.1" in why
    assert refusals(Settings(auth_mode="required"), host="0.0.0.0") == []  # noqa: S104


def production(**values: object) -> Settings:
    base: dict[str, object] = {
        "env": "production",
        "auth_mode": "required",
        "jwt_secret": GOOD_SECRET,
        "database_url": "postgresql+asyncpg://nesydet:Xq2-long-random@postgres:5432/nesydet",
        "s3_access_key_id": "minio-prod",
        "s3_secret_access_key": "Vb8-long-random-secret",
    }
    return Settings(**{**base, **values})  # type: ignore[arg-type]


def test_production_with_good_settings_starts() -> None:
    assert refusals(production(), host="0.0.0.0") == []  # noqa: S104


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"auth_mode": "none"}, "NESYDET_AUTH_MODE=required"),
        ({"jwt_secret": None}, "NESYDET_JWT_SECRET"),
        ({"jwt_secret": SecretStr("short")}, "NESYDET_JWT_SECRET"),
        ({"jwt_secret": SecretStr("change-me")}, "NESYDET_JWT_SECRET"),
        (
            {"database_url": "postgresql+asyncpg://nesydet:nesydet@postgres:5432/nesydet"},
            "POSTGRES_PASSWORD",
        ),
        ({"s3_secret_access_key": "nesydet-secret"}, "NESYDET_S3_SECRET_ACCESS_KEY"),
        ({"s3_access_key_id": "nesydet"}, "NESYDET_S3_ACCESS_KEY_ID"),
    ],
)
def test_production_refuses_development_settings(change: dict[str, object], says: str) -> None:
    problems = refusals(production(**change), host="127.0.0.1")
    assert any(says in p for p in problems), problems


def test_a_worker_host_needs_no_token_secret_but_no_development_passwords() -> None:
    assert refusals(production(jwt_secret=None, auth_mode="none"), host=None) == []
    dev_db = "postgresql+asyncpg://nesydet:nesydet@postgres:5432/nesydet"
    [why] = refusals(production(jwt_secret=None, database_url=dev_db), host=None)
    assert "POSTGRES_PASSWORD" in why


def test_nesydet_serve_on_all_interfaces_without_auth_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NESYDET_")}
    env.update(NESYDET_AUTH_MODE="none", NESYDET_VAR_DIR=str(tmp_path), NESYDET_METRICS_DIR="")
    done = subprocess.run(
        [sys.executable, "-m", "nesydet.cli", "serve", "--host", "0.0.0.0", "--port", "1"],  # noqa: S104
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "CONFIG_ERROR: NESYDET_AUTH_MODE=none serves every upload and job" in done.stderr
