"""The SWI-Prolog version the rules driver relies on is checked, with the version found."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nesydet.pipeline import RulesError
from nesydet.pipeline.reasoning.engine import check_version, installed_version, version_name


def test_version_names() -> None:
    assert version_name(90004) == "9.0.4"
    assert version_name(100102) == "10.1.2"


@pytest.mark.parametrize("plversion", [90000, 90004, 90312])
def test_version_9_is_accepted(plversion: int) -> None:
    check_version(plversion)


@pytest.mark.parametrize(("plversion", "named"), [(80502, "8.5.2"), (100000, "10.0.0")])
def test_other_versions_are_refused_naming_the_one_found(plversion: int, named: str) -> None:
    with pytest.raises(RulesError) as err:
        check_version(plversion)
    assert err.value.code == "RULES_ERROR"
    assert f"found SWI-Prolog {named}" in err.value.details
    assert "9.0.0" in err.value.details


def test_the_installed_swi_prolog_is_read_without_loading_it() -> None:
    check_version(installed_version())


def test_a_missing_swi_prolog_is_a_rules_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="SWI-Prolog not found"):
        installed_version(str(tmp_path / "no-such-swipl"))


def test_a_worker_on_an_unsupported_swi_prolog_exits_non_zero_saying_why(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "swipl"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'PLVERSION=\"80203\";'\n")
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "NESYDET_VAR_DIR": str(tmp_path / "var"),
        "NESYDET_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        "NESYDET_METRICS_DIR": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "nesydet.cli", "worker"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "RULES_ERROR: unsupported SWI-Prolog version: found SWI-Prolog 8.2.3" in done.stderr


def test_the_command_line_creates_no_metric_before_multiprocess_mode_is_set() -> None:
    """``nesydet`` builds its parser before it sets up Prometheus' multiprocess mode: importing
    it must not create a metric (one made earlier would count in memory, never scraped)."""
    probe = (
        "import sys, nesydet.cli; "
        "print(sorted(m for m in sys.modules if m.startswith('prometheus_client') "
        "or m == 'nesydet.observability.metrics'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"
