"""The ready-made clients against a live service: the Postman collection's Workflow 1 under
newman, and the TypeScript client's Node test (Workflow 1 and the spec's error handling).

One ``nesydet serve`` and one ``nesydet worker`` (the demo model, a 512 px scene, so a job
takes seconds) serve every test here. The Node packages come from the lock files
(``make node-deps``); without Node or them the tests are skipped, and under ``CI=true`` they
fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.prom import REPO, start_api_server, unavailable
from tests.integration.test_e2e import Deployment, scene_png

sys.path.insert(0, str(REPO / "scripts"))
import make_clients

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

POSTMAN = REPO / "clients" / "postman"
TYPESCRIPT = REPO / "clients" / "typescript"
NEWMAN = POSTMAN / "node_modules" / ".bin" / "newman"
TSC = TYPESCRIPT / "node_modules" / ".bin" / "tsc"
WORKFLOW_STEPS = [
    "1. Upload an image",
    "2. Start a job",
    "3. Poll its status",
    "4. Fetch results",
    "5. Annotated image links",
]
NODE_TESTS = 6  # the Node test file's test() calls


NODE_MISSING = "Node 18+ and npm are not installed (Debian: apt-get install nodejs npm)"


def _tool(path: Path | str | None, what: str) -> str:
    """Return the path of a Node tool, or skip (fail under CI) without it."""
    if path is None or not Path(path).exists():
        unavailable(f"{what} is not installed: run `make node-deps`")
    return str(path)


def node() -> str:
    """Return the ``node`` binary, 18 or newer."""
    binary = shutil.which("node")
    if binary is None:
        unavailable(NODE_MISSING)
    assert binary is not None
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 18:
        unavailable(f"node {version} is too old: 18 or newer is needed")
    return binary


def run(cmd: list[str], cwd: Path, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``, output captured; never raises on a non-zero exit."""
    return subprocess.run(
        cmd, cwd=cwd, env={**os.environ, "NO_COLOR": "1", **env}, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Return a running API with one worker that has loaded the demo model."""
    node()
    root = tmp_path_factory.mktemp("clients") / "deploy"
    api = start_api_server(root)
    deployment = Deployment("embedded", api, root, f"sqlite+aiosqlite:///{root / 'db.sqlite'}")
    try:
        deployment.start_worker()
        yield deployment
    finally:
        # A warm shutdown: SIGTERM to the worker's main process only (see the README).
        for worker in deployment.workers:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(timeout=30)
        deployment.stop()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the folder holding ``scene.png``, a 512 px demo scene (what Workflow 1 sends)."""
    folder = tmp_path_factory.mktemp("image")
    (folder / make_clients.WORKFLOW_IMAGE).write_bytes(scene_png(3, 512)[0])
    return folder


def test_the_committed_clients_are_generated_from_the_served_openapi_document(
    service: Deployment,
) -> None:
    served = httpx.get(f"{service.url}/openapi.json", timeout=10).json()
    # What the script writes is what the server serves.
    assert served == make_clients.openapi_document(), "create_app().openapi() is not /openapi.json"
    stale = [str(p.relative_to(REPO)) for p in make_clients.stale(served)]
    assert stale == [], f"{stale}: run python scripts/make_clients.py"
    npm = shutil.which("npm")
    if npm is None:
        unavailable(NODE_MISSING)
    assert npm is not None
    _tool(TSC, "the TypeScript client's packages")
    checked = run([npm, "run", "--silent", "check"], TYPESCRIPT, timeout=120)
    assert checked.returncode == 0, (
        f"clients/typescript/src/schema.d.ts is stale: run python scripts/make_clients.py\n"
        f"{checked.stdout}{checked.stderr}"
    )


def _response_json(execution: dict[str, Any]) -> Any:
    return json.loads(bytes(execution["response"]["stream"]["data"]).decode())


def test_postman_workflow_1_passes_under_newman(
    service: Deployment, image: Path, tmp_path: Path
) -> None:
    newman = _tool(NEWMAN, "newman")
    report = tmp_path / "newman.json"
    result = run(
        [node(), newman, "run", str(make_clients.COLLECTION), "--folder", make_clients.WORKFLOW,
         "--env-var", f"baseUrl={service.url}", "--working-dir", str(image),
         "--reporters", "cli,json", "--reporter-json-export", str(report), "--color", "off",
         "--timeout-request", "30000", "--timeout", "180000"],
        POSTMAN, timeout=240,
    )  # fmt: skip
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 0, output
    summary = json.loads(report.read_text())["run"]
    stats = summary["stats"]
    assert summary["failures"] == [], output
    assert stats["assertions"]["failed"] == stats["requests"]["failed"] == 0
    assert stats["testScripts"]["failed"] == stats["prerequestScripts"]["failed"] == 0
    executed = [e["item"]["name"] for e in summary["executions"]]
    # Each step once, in order, but the poll as often as the job needed.
    assert list(dict.fromkeys(executed)) == WORKFLOW_STEPS, executed
    codes = {e["item"]["name"]: e["response"]["code"] for e in summary["executions"]}
    assert [codes[step] for step in WORKFLOW_STEPS] == [200, 202, 200, 200, 200]
    last_poll = [e for e in summary["executions"] if e["item"]["name"] == WORKFLOW_STEPS[2]][-1]
    assert _response_json(last_poll)["data"]["status"] == "completed"
    tested = {a["assertion"] for e in summary["executions"] for a in e.get("assertions", [])}
    assert {"upload answers 200", "predict answers 202", "the job completed"} <= tested
    assert re.search(r"│\s+assertions │\s+\d+ │\s+0 │", output), "no summary table"


def _tap_count(tap: str, name: str) -> int:
    found = re.search(rf"^# {name} (\d+)$", tap, re.MULTILINE)
    assert found is not None, f"no '# {name}' in the TAP report:\n{tap}"
    return int(found.group(1))


def test_typescript_client_runs_workflow_1_and_the_error_example(
    service: Deployment, image: Path, tmp_path: Path
) -> None:
    tsc = _tool(TSC, "the TypeScript client's packages")
    # A build folder of this run's own inside the package, so that node_modules resolves.
    out = TYPESCRIPT / "dist" / f"pytest-{os.getpid()}"
    try:
        built = run([node(), tsc, "-p", ".", "--outDir", str(out)], TYPESCRIPT, timeout=180)
        assert built.returncode == 0, f"tsc:\n{built.stdout}{built.stderr}"
        tap = tmp_path / "node.tap"
        result = run(
            [node(), "--test", "--test-reporter=spec", "--test-reporter-destination=stdout",
             "--test-reporter=tap", f"--test-reporter-destination={tap}",
             str(out / "test" / "workflow.test.js")],
            TYPESCRIPT, timeout=180,
            NESYDET_URL=service.url, NESYDET_TEST_IMAGE=str(image / make_clients.WORKFLOW_IMAGE),
        )  # fmt: skip
    finally:
        shutil.rmtree(out, ignore_errors=True)
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 0, output
    report = tap.read_text()
    counts = {name: _tap_count(report, name) for name in ("tests", "pass", "fail", "skipped")}
    assert counts == {"tests": NODE_TESTS, "pass": NODE_TESTS, "fail": 0, "skipped": 0}, report
    for name in ("INVALID_FORMAT", "JOB_NOT_FOUND", "UPLOAD_NOT_FOUND", "INVALID_CONFIG"):
        assert name in output
