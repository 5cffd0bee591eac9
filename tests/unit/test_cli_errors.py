"""Every ``nesydet`` command that fails says so as the API would: its last line is
``CODE: message`` with the API's error code, its exit status is not 0, and a wrong argument,
a missing file or an unreachable database never shows a traceback.

Each case runs the real ``nesydet`` command in a process of its own, as a user or a script
would (no model is loaded: the failures come before that, or are the model's own).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nesydet.cli_errors import describe, run_reported
from nesydet.errors import UserExists
from nesydet.pipeline.errors import RulesError

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(root: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NESYDET_")}
    env.update(
        NESYDET_DATABASE_URL=f"sqlite+aiosqlite:///{root / 'db.sqlite'}",
        NESYDET_VAR_DIR=str(root / "var"),
        NESYDET_STORAGE_ROOT=str(root / "storage"),
        NESYDET_METRICS_DIR="",
        NESYDET_MODELS_DIR=str(REPO / "models"),
        NESYDET_RULES_DIR=str(REPO / "rules"),
        NESYDET_LOG_FORMAT="text",
        YOLO_OFFLINE="1",
    )
    env.update(overrides)
    return env


def nesydet(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``nesydet ARGS`` in ``root`` (no ``.env`` of the checkout is read)."""
    return subprocess.run(
        [sys.executable, "-m", "nesydet.cli", *args], env=_env(root, **env), cwd=root,
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def assert_fails(done: subprocess.CompletedProcess[str], code: str, status: int = 1) -> str:
    """Assert the command failed with ``code`` on its last line; return that line."""
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{code}: "), done.stderr
    assert done.returncode == status, done.stderr
    return last


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder with a migrated database, one user, a PNG, labelled scenes, a file."""
    folder = tmp_path_factory.mktemp("cli")
    done = nesydet(folder, "migrate")
    assert done.returncode == 0, done.stderr
    done = nesydet(folder, "users", "create", "alice")
    assert done.returncode == 0, done.stderr
    from PIL import Image

    (folder / "scenes" / "images").mkdir(parents=True)
    (folder / "scenes" / "labels").mkdir()
    Image.new("RGB", (128, 128), (90, 120, 80)).save(folder / "scenes" / "images" / "a.png")
    (folder / "scenes" / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (folder / "a_file").write_text("not a directory")
    for side in ("pred", "truth"):
        (folder / side).mkdir()
    (folder / "pred" / "a.txt").write_text("zero 0.5 0.5 0.1 0.1\n")
    (folder / "truth" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    return folder


IMAGE = "scenes/images/a.png"
NO_DATABASE = {"NESYDET_DATABASE_URL": "postgresql+asyncpg://u:p@127.0.0.1:1/none"}


@pytest.mark.parametrize(
    ("args", "env", "code", "status"),
    [
        # bad arguments: the API's VALIDATION_ERROR after the usage, status 2
        (["predict", IMAGE, "--out", "o", "--conf", "abc"], {}, "VALIDATION_ERROR", 2),
        (["eval", "pred"], {}, "VALIDATION_ERROR", 2),
        (["cleanup", "--older-than", "5x"], {}, "VALIDATION_ERROR", 2),
        (["serve", "--port", "0"], {}, "VALIDATION_ERROR", 2),
        (["worker", "--concurrency", "0"], {}, "VALIDATION_ERROR", 2),
        (["keys", "create"], {}, "VALIDATION_ERROR", 2),
        (["frobnicate"], {}, "VALIDATION_ERROR", 2),
        (["migrate", "no_such_revision"], {}, "VALIDATION_ERROR", 2),
        # settings the process must not start with
        (["users", "list"], {"NESYDET_PORT": "abc"}, "CONFIG_ERROR", 2),
        (["serve", "--ssl-certfile", "missing.pem"], {}, "CONFIG_ERROR", 2),
        # predict: the codes the API gives a job
        (["predict", IMAGE, "--out", "o", "--conf", "5"], {}, "INVALID_CONFIG", 2),
        (["predict", "missing.png", "--out", "o"], {}, "FILE_ERROR", 2),
        (["predict", IMAGE, "--out", "a_file"], {}, "FILE_ERROR", 1),
        (["predict", IMAGE, "--out", "o", "--model", "missing.pt"], {}, "MODEL_LOAD_ERROR", 1),
        # eval and rules test
        (["eval", "missing", "truth"], {}, "FILE_ERROR", 2),
        (["eval", "pred", "truth"], {}, "INVALID_FORMAT", 1),
        (["rules", "test", "dota.pl", "--scenes", "a_file"], {}, "FILE_ERROR", 2),
        (["rules", "test", "missing.pl", "--scenes", "scenes"], {}, "RULES_ERROR", 1),
        # accounts, keys, retention: the API's codes, and the database's state
        (["users", "create", "alice"], {}, "USER_EXISTS", 1),
        (["keys", "create", "--user", "bob"], {}, "USER_NOT_FOUND", 1),
        (["keys", "revoke", "key_000000000000"], {}, "KEY_NOT_FOUND", 1),
        (["users", "list"], NO_DATABASE, "SERVICE_UNAVAILABLE", 1),
        (["cleanup"], NO_DATABASE, "SERVICE_UNAVAILABLE", 1),
        (["sweep"], NO_DATABASE, "SERVICE_UNAVAILABLE", 1),
        (["migrate"], NO_DATABASE, "SERVICE_UNAVAILABLE", 1),
        # submit, before anything is sent
        (["submit", "missing", "--server", "http://h", "--out", "o"], {}, "FILE_ERROR", 2),
        (["submit", "scenes", "--server", "localhost:8000", "--out", "o"], {},
         "VALIDATION_ERROR", 2),
        (["submit", "scenes", "--server", "http://h", "--out", "o", "--config", "[1]"], {},
         "INVALID_CONFIG", 2),
        (["submit", "scenes", "--server", "http://h", "--out", "o", "--chunk-size", "101"], {},
         "VALIDATION_ERROR", 2),
    ],
)  # fmt: skip
def test_a_failing_command_prints_the_apis_code(
    root: Path, args: list[str], env: dict[str, str], code: str, status: int
) -> None:
    assert_fails(nesydet(root, *args, **env), code, status)


def test_a_fresh_database_asks_for_migrate(tmp_path: Path) -> None:
    last = assert_fails(nesydet(tmp_path, "users", "list"), "SERVICE_UNAVAILABLE")
    assert "run `nesydet migrate`" in last


def test_serving_everyone_without_authentication_is_refused(tmp_path: Path) -> None:
    done = nesydet(tmp_path, "serve", "--host", "0.0.0.0", "--port", str(free_port()))  # noqa: S104
    assert_fails(done, "CONFIG_ERROR", 2)


def test_the_usage_comes_before_a_refused_argument(root: Path) -> None:
    done = nesydet(root, "predict", IMAGE, "--out", "o", "--format", "png")
    assert done.stderr.startswith("usage: nesydet predict")
    assert_fails(done, "VALIDATION_ERROR", 2)
    assert "argument --format: invalid choice: 'png'" in done.stderr


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (UserExists("A user with this name exists", details="alice"), "USER_EXISTS",
         "A user with this name exists: alice"),
        (RulesError("invalid rules file", "x.pl"), "RULES_ERROR", "invalid rules file: x.pl"),
        (FileNotFoundError(2, "No such file or directory", "x.png"), "FILE_ERROR",
         "No such file or directory: x.png"),
        (ConnectionRefusedError(111, "Connection refused"), "SERVICE_UNAVAILABLE",
         "a server cannot be reached: [Errno 111] Connection refused"),
        (ZeroDivisionError("division by zero"), "INTERNAL_ERROR",
         "ZeroDivisionError: division by zero"),
    ],
)  # fmt: skip
def test_each_failure_has_its_code(error: Exception, code: str, message: str) -> None:
    assert describe(error)[:2] == (code, message)


def test_a_fault_in_the_code_keeps_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    def broken() -> int:
        return 1 // 0

    assert run_reported(broken) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("INTERNAL_ERROR: ZeroDivisionError: ")
