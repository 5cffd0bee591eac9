"""docker-compose.yml runs in production mode (authentication on, no default secret), and
Prometheus scrapes each API and worker container from the deploy/prometheus folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from nesydet.config import Settings, refusals

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
WORKER_METRICS_PORT = "9091"
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


def services() -> dict[str, Any]:
    """Return the services of docker-compose.yml, YAML merge keys resolved."""
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def test_prometheus_loads_the_deploy_folder_config_and_alerts() -> None:
    prometheus = services()["prometheus"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in prometheus["volumes"]}
    target = mounts[f"./{PROMETHEUS_DIR.relative_to(REPO)}"]
    config = next(
        a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file=")
    )
    assert Path(config).parent == Path(target)
    assert (PROMETHEUS_DIR / Path(config).name).is_file()
    assert (PROMETHEUS_DIR / "alerts.yml").is_file()
    assert not (REPO / "prometheus.yml").exists(), "the configuration lives in deploy/prometheus"


def test_each_worker_serves_its_metrics_inside_the_compose_network() -> None:
    worker = services()["worker"]
    env = worker["environment"]
    shared = yaml.safe_load(COMPOSE.read_text())["x-nesydet-env"]
    assert shared.items() <= env.items(), "the worker keeps the shared settings"
    assert env["NESYDET_WORKER_METRICS_HOST"] == "0.0.0.0"  # noqa: S104
    assert str(env["NESYDET_WORKER_METRICS_PORT"]) == WORKER_METRICS_PORT
    settings = {f"NESYDET_{name.upper()}" for name in Settings.model_fields}
    assert {"NESYDET_WORKER_METRICS_HOST", "NESYDET_WORKER_METRICS_PORT"} <= settings
    assert WORKER_METRICS_PORT in map(str, worker["expose"])
    assert "ports" not in worker, "a worker's /metrics is not published on the host"


def test_no_container_shares_its_metric_files() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert "NESYDET_METRICS_DIR" not in compose["x-nesydet-env"]
    assert "metrics-data" not in (compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            assert not str(volume).startswith("metrics-data"), name
