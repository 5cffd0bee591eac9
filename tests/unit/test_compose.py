"""docker-compose.yml runs in production mode: authentication on, no default secret."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from nesydet.config import Settings, refusals

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
SECRETS = ("POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD",
           "NESYDET_JWT_SECRET", "GRAFANA_ADMIN_PASSWORD")  # fmt: skip


def test_compose_requires_authentication_and_production_mode() -> None:
    env = yaml.safe_load(COMPOSE.read_text())["x-nesydet-env"]
    assert env["NESYDET_ENV"] == "production"
    assert env["NESYDET_AUTH_MODE"] == "required"


def test_compose_has_no_default_for_any_secret() -> None:
    text = COMPOSE.read_text()
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses, name
        assert all(use.startswith(":?") for use in uses), f"{name} has a default: {uses}"


def test_the_old_development_defaults_would_be_refused() -> None:
    settings = Settings(
        env="production",
        auth_mode="required",
        jwt_secret="nesydet",  # type: ignore[arg-type]
        database_url="postgresql+asyncpg://nesydet:nesydet@postgres:5432/nesydet",
        s3_access_key_id="nesydet",
        s3_secret_access_key="nesydet-secret",
    )
    assert len(refusals(settings, host="0.0.0.0")) == 4  # noqa: S104
