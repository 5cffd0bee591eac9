"""``nesydet submit`` against a live service: one ``nesydet serve`` and one ``nesydet worker``
(the demo model, 384 px scenes, so a job takes seconds) on free ports with their state in a
temporary folder, accounts required, and the command run as a user would run it, in a process
of its own, with an API key made by ``nesydet keys create``.

Nothing here needs PostgreSQL or Redis (SQLite and the filesystem broker), so nothing is
skipped: a service that does not start fails the tests, under ``CI=true`` or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.prom import (
    REPO,
    ApiServer,
    free_port,
    nesydet_command,
    start_api_server,
)
from tests.integration.test_e2e import Deployment, scene_png

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

IMAGES = ["site_a/one.png", "site_a/two.png", "site_b/three.png"]
SUMMARY = re.compile(
    r"^(job_[0-9a-f]{12}): completed, (\d+) images?, (\d+) detections? in [\d.]+ s -> (.+)$"
)


@dataclass
class Service:
    """The running deployment, and an API key of a user of it."""

    deployment: Deployment
    key: str

    @property
    def url(self) -> str:
        return self.deployment.url


def _api_key(api: ApiServer) -> str:
    """Return a new API key of a new user (what an admin would hand out)."""
    for args in (["users", "create", "surveyor"], ["keys", "create", "--user", "surveyor"]):
        made = subprocess.run(
            nesydet_command(*args), env=api.env, cwd=api.root, capture_output=True, text=True,
            timeout=120, check=True,
        )  # fmt: skip
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Return a running API with one worker and a user's key; the models are the demo model
    and a broken one."""
    base = tmp_path_factory.mktemp("submit")
    models = base / "models"
    models.mkdir()
    shutil.copyfile(REPO / "models" / "nesydet-demo-obb.pt", models / "nesydet-demo-obb.pt")
    (models / "broken.pt").write_bytes(b"this is not a model")
    root = base / "deploy"
    api = start_api_server(
        root,
        NESYDET_MODELS_DIR=str(models),
        NESYDET_AUTH_MODE="required",
        NESYDET_JWT_SECRET="submit-" + "k" * 40,
    )
    deployment = Deployment("embedded", api, root, f"sqlite+aiosqlite:///{root / 'db.sqlite'}")
    try:
        key = _api_key(api)
        deployment.start_worker()
        yield Service(deployment, key)
    finally:
        # A warm shutdown: SIGTERM to the worker's main process only (see the README).
        for worker in deployment.workers:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(timeout=30)
        deployment.stop()


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder of three demo scenes in two sub-folders, and a note that is no image."""
    folder = tmp_path_factory.mktemp("survey")
    for seed, name in enumerate(IMAGES, start=3):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(scene_png(seed, 384)[0])
    (folder / "notes.txt").write_text("flown 2026-02-02")
    return folder


def submit(cwd: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """Run ``nesydet submit ARGS`` as a user would; its output is printed for the log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NESYDET_")}
    env.update(env_vars)
    done = subprocess.run(
        nesydet_command("submit", *args), cwd=cwd, env=env, capture_output=True, text=True,
        timeout=240, check=False,
    )  # fmt: skip
    shown = " ".join("KEY" if a.startswith("nsd_") else a for a in args)
    print(f"$ nesydet submit {shown}\n{done.stderr}{done.stdout}(exit {done.returncode})")
    return done


def test_a_directory_goes_up_as_one_batch_and_its_results_come_back_unpacked(
    service: Service, survey: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    done = submit(
        tmp_path, str(survey), "--server", service.url, "--out", str(out),
        NESYDET_API_KEY=service.key,
    )  # fmt: skip
    assert done.returncode == 0
    [line] = done.stdout.splitlines()
    match = SUMMARY.match(line)
    assert match is not None, line
    job_id, count, detections, folder = match.groups()
    assert (count, Path(folder)) == ("3", out / job_id)
    manifest = json.loads((out / job_id / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert [f["filename"] for f in manifest["files"]] == IMAGES  # the folders are kept
    assert sum(f["detection_count"] for f in manifest["files"]) == int(detections) > 0
    for name in IMAGES:
        stem = name.removesuffix(".png")
        assert (out / job_id / "labels" / f"{stem}.json").is_file()
        assert (out / job_id / "annotated" / f"{stem}.jpg").is_file()
    assert sorted(p.name for p in out.iterdir()) == [job_id]  # the archive is gone
    err = done.stderr
    assert "submit: 3 images (" in err
    assert "(1 other file left out)" in err
    assert "upload: 100% (" in err
    assert re.search(rf"^submit: upload upl_[0-9a-f]{{12}}, job {job_id} started$", err, re.M)
    assert f"{job_id}: 100% (3/3 images), completed" in err


def test_chunked_uploads_start_a_job_each_and_keep_the_archives(
    service: Service, survey: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    done = submit(
        tmp_path, str(survey), "--server", service.url, "--out", str(out), "--chunked",
        "--chunk-size", "2", "--zip", "--format", "yolo", "--include", "labels",
        "--api-key", service.key,
    )  # fmt: skip
    assert done.returncode == 0
    matches = [SUMMARY.match(line) for line in done.stdout.splitlines()]
    assert [m.group(2) for m in matches if m] == ["2", "1"], done.stdout
    for m in matches:
        assert m is not None
        archive = Path(m.group(4))
        assert archive == out / f"{m.group(1)}.zip"
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
        assert f"{m.group(1)}/classes.txt" in names
        assert f"{m.group(1)}/manifest.json" in names
        assert any(n.startswith(f"{m.group(1)}/labels/") and n.endswith(".txt") for n in names)
    assert "2 jobs: 100% (3/3 images)" in done.stderr


def test_a_failed_job_prints_its_code_and_exits_non_zero(
    service: Service, survey: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    done = submit(
        tmp_path, str(survey / "site_b"), "--server", service.url, "--out", str(out),
        "--config", '{"model_path": "broken.pt", "sahi": {"enabled": false}}',
        "--api-key", service.key,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert re.search(r"^MODEL_LOAD_ERROR: Failed to load YOLO model: ", done.stderr, re.M)
    assert re.search(r"\(job job_[0-9a-f]{12}\)$", done.stderr.strip())
    assert list(out.iterdir()) == []


def test_a_config_the_server_refuses_prints_its_code_and_each_field(
    service: Service, survey: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    config = '{"symbolic_reasoning": {"rules_file": "missing.pl"}}'
    done = submit(tmp_path, str(survey), "--server", service.url, "--out", str(out), "--config",
                  config, "--api-key", service.key)  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-2] == "INVALID_CONFIG: Invalid configuration"
    assert lines[-1].startswith("  config.symbolic_reasoning.rules_file: RULES_NOT_FOUND: ")
    assert "missing.pl" in lines[-1]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("key", "code"), [(None, "AUTHENTICATION_REQUIRED"), ("nsd_wrong", "INVALID_CREDENTIALS")]
)
def test_credentials_the_server_turns_away_are_told_before_any_image_is_sent(
    service: Service, survey: Path, tmp_path: Path, key: str | None, code: str
) -> None:
    out = tmp_path / "results"
    given = ["--api-key", key] if key else []
    done = submit(tmp_path, str(survey), "--server", service.url, "--out", str(out), *given)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"{code}: ")
    assert "upload:" not in done.stderr


def test_a_server_that_is_not_there_is_named_and_the_exit_status_is_3(
    survey: Path, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = submit(tmp_path, str(survey), "--server", url, "--out", str(tmp_path / "results"))
    assert done.returncode == 3
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"SERVICE_UNAVAILABLE: cannot reach the server at {url}: ")
    assert "Traceback" not in done.stderr
