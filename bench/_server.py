"""Start a real ``nesydet serve`` process on a free port for a benchmark, and watch its memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    var: Path

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def serve(var: Path, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run migrations and the API on SQLite under ``var``; yield once it answers."""
    port = free_port()
    env = {
        **os.environ,
        "NESYDET_VAR_DIR": str(var),
        "NESYDET_DATABASE_URL": f"sqlite+aiosqlite:///{var}/bench.db",
        "NESYDET_STORAGE_ROOT": str(var / "storage"),
        "NESYDET_METRICS_DIR": str(var / "metrics"),
        "NESYDET_RATE_LIMIT": "",
        "NESYDET_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "nesydet", "migrate"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [bin_dir / "nesydet", "serve", "--port", str(port), "--wipe-metrics"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield Server(url=url, process=proc, var=var)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class RssWatcher:
    """Samples a process's RSS (and its children's, separately) every few milliseconds."""

    pid: int
    interval: float = 0.005
    peak: int = 0
    children_peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def _children_rss(self) -> int:
        total = 0
        for child in psutil.Process(self.pid).children(recursive=True):
            try:
                total = max(total, child.memory_info().rss)
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self.children_peak = max(self.children_peak, self._children_rss())
            time.sleep(self.interval)

    def __enter__(self) -> RssWatcher:
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
