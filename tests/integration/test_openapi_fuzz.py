"""Schemathesis against a live API with authentication on: cases generated from the OpenAPI
document, bounded and seeded; no server error, no response outside its documented schema.

With ``NESYDET_FUZZ_REPORT=<file>`` the run's summary is appended there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.prom import nesydet_command, start_api_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SEED = "20261130"
EXAMPLES = "10"  # per operation and phase; about a thousand cases in all
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


def test_generated_requests_find_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    api = start_api_server(
        tmp_path / "api",
        NESYDET_AUTH_MODE="required",
        NESYDET_JWT_SECRET="fuzz-" + "k" * 40,
        NESYDET_LOG_LEVEL="WARNING",
    )
    try:
        env = api.env
        for args in (["users", "create", "root", "--role", "admin"],):
            subprocess.run(nesydet_command(*args), env=env, cwd=api.root, check=True,
                           capture_output=True, timeout=120)  # fmt: skip
        made = subprocess.run(
            nesydet_command("keys", "create", "--user", "root", "--label", "fuzz"),
            env=env, cwd=api.root, check=True, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        key = made.stdout.strip().splitlines()[-1]
        schemathesis = str(Path(sys.executable).with_name("schemathesis"))
        run = subprocess.run(
            [schemathesis, "run", f"{api.url}/openapi.json", "-H", f"X-API-Key: {key}",
             "--max-examples", EXAMPLES, "--seed", SEED, "--checks", CHECKS,
             "--generation-allow-x00", "true", "--request-timeout", "30"],
            capture_output=True, text=True, timeout=800, cwd=tmp_path,
        )  # fmt: skip
        log = api.process.log_text()
    finally:
        api.stop()
    out = run.stdout
    counts = re.search(r"(\d+) generated, (\d+) passed", out)
    assert run.returncode == 0, out[-6000:]
    assert counts is not None, out[-3000:]
    generated, passed = int(counts.group(1)), int(counts.group(2))
    assert generated == passed
    assert generated > 500
    assert "Traceback" not in log
    assert " 500 " not in log
    assert "unhandled error" not in log
    summary = (
        f"schemathesis seed {SEED}, {EXAMPLES} examples per operation: {generated} cases, "
        f"{passed} passed, 0 server errors, 0 schema violations"
    )
    print(summary)
    report = os.environ.get("NESYDET_FUZZ_REPORT")
    if report:
        with Path(report).open("a") as fh:
            fh.write(summary + "\n")
