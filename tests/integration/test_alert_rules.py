"""The Prometheus configuration, its alerting rules and their unit tests pass ``promtool``.

``promtool`` comes with the Debian package ``prometheus``; without it the promtool tests are
skipped, and under ``CI=true`` they fail. The structure of the rules (what every alert carries,
that each is tested both firing and silent) is checked from the YAML itself.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.prom import unavailable

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
# Other checks (the multi-host tests, the runbooks) refer to these names.
ALERT_NAMES = {
    "InferenceQueueTooLong",
    "InferenceWorkersTooFew",
    "InferenceJobFailureRatioHigh",
    "ApiLatencyP95High",
    "TargetDown",
}
SEVERITIES = {"warning", "critical"}
ANNOTATIONS = {"summary", "description", "runbook"}


def load(path: Path) -> dict[str, Any]:
    """Return the YAML mapping in ``path``."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def alerting_rules() -> list[dict[str, Any]]:
    """Return every alerting rule of alerts.yml (recording rules left out)."""
    return [rule for group in load(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


def promtool(*args: str | Path, cwd: Path) -> None:
    """Run ``promtool ARGS`` in ``cwd``; fail with its output unless it exits with 0."""
    binary = shutil.which("promtool")
    if binary is None:
        unavailable("promtool is not installed (Debian package `prometheus`)")
    assert binary is not None
    result = subprocess.run(
        [binary, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = f"{result.stdout}\n{result.stderr}".strip()
    assert result.returncode == 0, (
        f"promtool {' '.join(map(str, args))}: rc {result.returncode}\n{output}"
    )


# Run from elsewhere than deploy/prometheus: the files they name must resolve beside the file
# that names them, as they do when Prometheus reads the mounted folder.
@pytest.mark.parametrize(
    "args",
    [("check", "config", CONFIG), ("check", "rules", ALERTS), ("test", "rules", ALERTS_TEST)],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool_accepts(args: tuple[str, str, Path], tmp_path: Path) -> None:
    promtool(*args, cwd=tmp_path)


def test_the_configuration_scrapes_the_api_and_every_worker_and_loads_the_alerts() -> None:
    config = load(CONFIG)
    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["evaluation_interval"] == "15s"
    assert config["rule_files"] == [ALERTS.name]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"inference_api", "celery_workers", "prometheus"}
    assert jobs["inference_api"]["static_configs"] == [{"targets": ["api:8000"]}]
    assert jobs["inference_api"]["metrics_path"] == "/metrics"
    (workers,) = jobs["celery_workers"]["dns_sd_configs"]
    assert (workers["names"], workers["type"], workers["port"]) == (["worker"], "A", 9091)
    assert load(ALERTS_TEST)["rule_files"] == [ALERTS.name]


def test_every_alert_has_a_duration_a_severity_and_a_runbook() -> None:
    groups = load(ALERTS)["groups"]
    assert all(group.get("interval") for group in groups), "every group sets its interval"
    rules = alerting_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    assert set(names) == ALERT_NAMES
    for rule in rules:
        name = rule["alert"]
        assert rule.get("for"), f"{name}: no `for`, so one bad sample would fire it"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        missing = ANNOTATIONS - {key for key, text in annotations.items() if str(text).strip()}
        assert not missing, f"{name}: no {missing}"


def test_every_alert_is_tested_firing_and_silent() -> None:
    outcomes: defaultdict[str, set[bool]] = defaultdict(set)
    for case in load(ALERTS_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            outcomes[check["alertname"]].add(bool(check.get("exp_alerts")))
    untested = {
        name: sorted({"firing", "silent"} - {"firing" if fired else "silent" for fired in found})
        for name in ALERT_NAMES
        if (found := outcomes.get(name, set())) != {True, False}
    }
    assert not untested, f"alerts without a case: {untested}"
    assert set(outcomes) <= ALERT_NAMES, f"tests of unknown alerts: {set(outcomes) - ALERT_NAMES}"
