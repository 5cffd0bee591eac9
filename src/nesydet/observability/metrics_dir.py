"""Set up Prometheus multiprocess mode before any metric exists.

prometheus_client picks its value storage when it is first imported, so this must run before
any module that defines metrics is imported. Each ``nesydet serve`` and each ``nesydet worker``
keeps the files of its processes in a folder of its own (``<role>-<host>-<pid>`` under the
metrics directory), so a scrape of one of them never counts another's samples: a worker's
``/metrics`` and the API's ``/metrics`` can be summed without double counting, on one host or
many. The folder is removed on exit, and folders of this host's dead runs at the next start.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
from pathlib import Path

import psutil

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client splits file names on "_": the identifier must not contain one.
_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())


_own: tuple[int, str] = (0, "")


def process_identifier(pid: int | None = None) -> str:
    """Return this process's (or ``pid``'s) name in metric file names: host and pid.

    prometheus_client asks on every sample written, so this process's name is kept.
    """
    global _own
    if pid is not None:
        return f"{_HOST}-{pid}"
    current = os.getpid()
    if _own[0] != current:  # first call, or a forked child
        _own = (current, f"{_HOST}-{current}")
    return _own[1]


def own_folder(base: Path, role: str) -> Path:
    """Return the folder of this process group's metric files under ``base``."""
    return base / f"{role}-{_HOST}-{os.getpid()}"


def main_pid(folder: Path) -> int | None:
    """Return the pid of the process that made ``folder`` (its group's main process)."""
    tail = folder.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _remove_dead_runs(base: Path, role: str) -> None:
    """Remove the folders of this host's earlier runs whose main process is gone."""
    prefix = f"{role}-{_HOST}-"
    for folder in base.glob(f"{prefix}*"):
        pid = main_pid(folder)
        if pid is not None and not psutil.pid_exists(pid):
            shutil.rmtree(folder, ignore_errors=True)


def prepare(base: Path, role: str) -> Path:
    """Create this process group's own folder, point prometheus_client at it and return it.

    Child processes (uvicorn workers, the Celery pool) inherit the environment and so the
    folder; the folder goes when this process exits.
    """
    base.mkdir(parents=True, exist_ok=True)
    _remove_dead_runs(base, role)
    folder = own_folder(base, role)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    os.environ[MULTIPROC_ENV] = str(folder.resolve())
    from prometheus_client import values  # only now: the env var is set

    values.ValueClass = values.MultiProcessValue(process_identifier)  # type: ignore[no-untyped-call]
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # not in forked children that exit
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)

    atexit.register(remove)
    return folder
