"""Helpers for tests against real processes: a ``nesydet`` API server and a real Prometheus.

Reusable beyond the API: ``nesydet_env`` gives any ``nesydet`` subcommand (``worker`` too) the
same isolated settings; a worker serves its own ``/metrics`` only where a test gives it a port
(``NESYDET_WORKER_METRICS_PORT``, 0 here by default), and ``Prometheus.query`` reads
targets back through PromQL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI

PROMETHEUS_ENV = "PROMETHEUS_MULTIPROC_DIR"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unavailable(message: str) -> None:
    """Skip the test with ``message``; under ``CI=true`` fail it instead (as conftest does)."""
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


def prometheus_binary() -> str:
    """Return the path of the ``prometheus`` server, or skip (fail under CI) without one."""
    path = shutil.which("prometheus")
    if path is None:
        unavailable("the prometheus server is not installed (Debian package `prometheus`)")
    assert path is not None
    return path


def nesydet_command(*args: str) -> list[str]:
    """Return the command line of ``nesydet ARGS`` from this interpreter's environment."""
    script = Path(sys.executable).with_name("nesydet")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "nesydet.cli", *args]


def nesydet_env(root: Path, **overrides: str) -> dict[str, str]:
    """Return an environment for ``nesydet`` processes with all their state under ``root``.

    The database is a SQLite file, storage is local, the broker is the filesystem transport
    under ``root/var``, metrics go to ``root/metrics`` (multiprocess mode, set up by the CLI;
    a worker serves none unless given a port), models and rules are the checkout's, rate
    limits are off and logs are plain text. The test process's ``PROMETHEUS_MULTIPROC_DIR``
    is dropped so the child uses ``NESYDET_METRICS_DIR``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("NESYDET_")}
    env.pop(PROMETHEUS_ENV, None)
    env.update(
        {
            "NESYDET_DATABASE_URL": f"sqlite+aiosqlite:///{root / 'db.sqlite'}",
            "NESYDET_VAR_DIR": str(root / "var"),
            "NESYDET_STORAGE_BACKEND": "local",
            "NESYDET_STORAGE_ROOT": str(root / "storage"),
            "NESYDET_BROKER_URL": "filesystem://localhost/",
            "NESYDET_MODELS_DIR": str(REPO / "models"),
            "NESYDET_RULES_DIR": str(REPO / "rules"),
            "NESYDET_METRICS_DIR": str(root / "metrics"),
            "NESYDET_WORKER_METRICS_PORT": "0",
            "NESYDET_RATE_LIMIT": "",
            "NESYDET_LOG_FORMAT": "text",
            "NESYDET_LOG_LEVEL": "INFO",
            "NESYDET_IMAGE_CHECK_WORKERS": "1",
            # Registering the bundled files inspects and exports the model (tens of CPU
            # seconds): test_registry_flow.py turns it on, the other deployments need none.
            "NESYDET_REGISTER_BUNDLED": "false",
            "YOLO_OFFLINE": "1",
            "YOLO_AUTOINSTALL": "0",
            "YOLO_CONFIG_DIR": str(root / "yolo_cfg"),
        }
    )
    env.update(overrides)
    return env


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Stop a process started with ``start_new_session=True``, and every child in its group.

    SIGTERM goes to the leader only, as a container runtime or systemd sends it. A Celery
    worker whose pool processes get it too can hang in its warm shutdown: the pool waits on
    a queue lock that a child held when it died (seen here: 15 s, then SIGKILL, where the
    leader alone stops in 2-7 s).
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # Children that outlived their leader (e.g. a checker pool) are still in its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Process:
    """A child process in its own session, its output in ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_url: str | None = None  # a worker's own /metrics, when it serves one

    def output(self) -> str:
        """Return the end of what the process wrote."""
        return _tail(self.log)

    def log_text(self) -> str:
        """Return everything the process wrote so far."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raise if the process has exited, with its output."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")

    def stop(self) -> None:
        """Stop the process and its children."""
        stop_process(self.proc)


def spawn(name: str, cmd: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> Process:
    """Start ``cmd`` in a new session, output to ``cwd/<name>.log``."""
    log = cwd / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, proc, log)


def wait_until(
    probe: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    process: Process | None = None,
) -> None:
    """Call ``probe`` until it returns true; raise after ``timeout`` s or if ``process`` dies."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None:
            process.check_alive()
        with contextlib.suppress(httpx.HTTPError, OSError):
            if probe():
                return
        if time.monotonic() > deadline:
            extra = f"\n{process.name} output:\n{process.output()}" if process else ""
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(interval)


@dataclass
class ApiServer:
    """A running ``nesydet serve``."""

    process: Process
    port: int
    env: dict[str, str]
    root: Path

    @property
    def url(self) -> str:
        """Return the base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        """Return the ``host:port`` Prometheus scrapes."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()


def migrate(env: Mapping[str, str], cwd: Path) -> None:
    """Run ``nesydet migrate`` with ``env``; raise with its output if it fails."""
    result = subprocess.run(
        nesydet_command("migrate"),
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"nesydet migrate failed:\n{result.stdout}\n{result.stderr}")


def start_api_server(root: Path, *, timeout: float = 60, **env_overrides: str) -> ApiServer:
    """Migrate a fresh database under ``root``, start ``nesydet serve``, wait for ``/healthz``.

    The process runs in ``root`` (so no ``.env`` of the checkout is read); the caller stops it.
    """
    root.mkdir(parents=True, exist_ok=True)
    env = nesydet_env(root, **env_overrides)
    migrate(env, root)
    port = free_port()
    process = spawn(
        "api",
        nesydet_command("serve", "--host", "127.0.0.1", "--port", str(port)),
        env=env,
        cwd=root,
    )
    server = ApiServer(process, port, env, root)
    try:
        wait_until(
            lambda: httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200,
            timeout=timeout,
            what=f"the API on {server.url}/healthz",
            process=process,
        )
    except BaseException:
        server.stop()
        raise
    return server


class PromQLError(RuntimeError):
    """Prometheus answered a query with an error."""


@dataclass
class Prometheus:
    """A running Prometheus server with its own configuration and storage."""

    process: Process
    port: int
    job: str
    targets: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Return the base URL."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Return the instant-vector result of ``expr`` (``[]`` when it is empty)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] != "vector":
            raise PromQLError(f"{expr}: expected a vector, got {data['resultType']}")
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str) -> list[float]:
        """Return the sample values of ``expr``."""
        return [float(item["value"][1]) for item in self.query(expr)]

    def value(self, expr: str) -> float | None:
        """Return the single value of ``expr``, or None when it is empty."""
        found = self.values(expr)
        if len(found) > 1:
            raise PromQLError(f"{expr}: {len(found)} series, expected at most one")
        return found[0] if found else None

    def last_scrape(self) -> float:
        """Return the Unix time of the latest scrape of every target (the oldest of them)."""
        found = self.values(f'timestamp(up{{job="{self.job}"}})')
        if len(found) < len(self.targets):
            return 0.0
        return min(found, default=0.0)

    def wait_for_scrape_after(self, moment: float, timeout: float = 20) -> None:
        """Wait until every target was scraped after Unix time ``moment``."""
        wait_until(
            lambda: self.last_scrape() > moment,
            timeout=timeout,
            what=f"Prometheus to scrape {self.targets} after {moment:.3f}",
            process=self.process,
        )


PROMETHEUS_CONFIG = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: {job}
    metrics_path: /metrics
    static_configs:
      - targets: [{targets}]
"""


def start_prometheus(
    root: Path,
    targets: Sequence[str],
    *,
    job: str = "nesydet",
    interval: str = "1s",
    timeout: float = 30,
) -> Prometheus:
    """Start Prometheus scraping ``targets`` every ``interval``; wait until it is ready.

    Skips the test (fails it under ``CI=true``) when the ``prometheus`` server is not installed.
    """
    binary = prometheus_binary()
    root.mkdir(parents=True, exist_ok=True)
    config = root / "prometheus.yml"
    config.write_text(
        PROMETHEUS_CONFIG.format(
            interval=interval, job=job, targets=", ".join(f'"{t}"' for t in targets)
        )
    )
    port = free_port()
    process = spawn(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        env=os.environ,
        cwd=root,
    )
    prom = Prometheus(process, port, job, list(targets))
    try:
        wait_until(
            lambda: httpx.get(f"{prom.url}/-/ready", timeout=2).status_code == 200,
            timeout=timeout,
            what=f"Prometheus on {prom.url}",
            process=process,
        )
    except BaseException:
        prom.stop()
        raise
    return prom
