"""The worker's main process keeps an eye on its pool processes.

Celery replaces a pool process that dies, forever. A process that can never come up (a bad
plugin setting, a crash while loading the model) would then be replaced again and again while
the worker looks alive. Each pool process therefore leaves a marker while it starts and when
it is ready; the main process reads them every few seconds and

- counts the processes that died before they were ready: after ``max_failed_starts`` in a row
  it exits with status 3, so that its supervisor (systemd, Docker, Kubernetes) restarts it and
  an operator sees it;
- drops the live metrics of every process that died (``active_jobs`` must not stay raised by
  a process killed in the middle of a job).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

EXIT_CANNOT_START = 3
_STARTING, _READY = "starting", "ready"


def markers_dir(var_dir: Path, parent_pid: int) -> Path:
    """Return the folder where the pool processes of one worker leave their markers."""
    return var_dir / "workers" / f"main-{parent_pid}"


def mark_starting(folder: Path) -> None:
    """Called by a pool process as it starts (after the fork)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{os.getpid()}.{_STARTING}").touch()


def mark_ready(folder: Path) -> None:
    """Called by a pool process once it can run jobs."""
    pid = os.getpid()
    os.replace(folder / f"{pid}.{_STARTING}", folder / f"{pid}.{_READY}")


class PoolWatch(threading.Thread):
    """The main process's watch over its pool processes (a daemon thread)."""

    def __init__(
        self,
        folder: Path,
        *,
        max_failed_starts: int,
        interval_s: float = 2.0,
        on_dead: Callable[[int], None] = lambda _pid: None,
    ) -> None:
        super().__init__(name="nesydet-pool-watch", daemon=True)
        self.folder = folder
        self.max_failed_starts = max_failed_starts
        self.interval_s = interval_s
        self.on_dead = on_dead
        self.failed_in_a_row = 0
        self._seen_ready: set[int] = set()
        # Not `_stop`: that is a method of Thread, which a fork calls in the child.
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # the watch must not die of a surprise; report it and go on
                log.exception("pool watch failed")
            if self.failed_in_a_row >= self.max_failed_starts:
                self._give_up()

    def check(self) -> None:
        """Read the markers once: count failed starts, forget processes that are gone."""
        for marker in sorted(self.folder.glob("*.*")):
            pid_text, _, state = marker.name.partition(".")
            if not pid_text.isdigit():
                continue
            pid = int(pid_text)
            if state == _READY and pid not in self._seen_ready:
                self._seen_ready.add(pid)
                self.failed_in_a_row = 0
            if _alive(pid):
                continue
            marker.unlink(missing_ok=True)
            self._seen_ready.discard(pid)
            self.on_dead(pid)
            if state == _STARTING:
                self.failed_in_a_row += 1
                log.error(
                    "a pool process died before it was ready",
                    extra={"pid": pid, "failed_in_a_row": self.failed_in_a_row},
                )

    def _give_up(self) -> None:
        log.critical(
            "the worker cannot bring up its pool processes: exiting so that it is restarted",
            extra={"failed_starts": self.failed_in_a_row},
        )
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.send_signal(signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)
        os._exit(EXIT_CANNOT_START)

    def stop(self) -> None:
        """End the watch and remove the markers."""
        self._halt.set()
        shutil.rmtree(self.folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
