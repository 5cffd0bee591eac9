"""Set up Prometheus multiprocess mode before any metric exists.

prometheus_client picks its value storage when it is first imported, so this must run before
any module that defines metrics is imported. Each process's files are named after the host and
the pid: containers sharing one metrics volume all run as pid 1 and must not share files.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client splits file names on "_": the identifier must not contain one.
_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())


def process_identifier(pid: int | None = None) -> str:
    """Return this process's (or ``pid``'s) name in metric file names: host and pid."""
    return f"{_HOST}-{pid if pid is not None else os.getpid()}"


def prepare(path: Path, *, wipe: bool) -> None:
    """Create (and when asked, empty) the directory and point prometheus_client at it."""
    if wipe and path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path.resolve())
    from prometheus_client import values  # only now: the env var is set

    values.ValueClass = values.MultiProcessValue(process_identifier)  # type: ignore[no-untyped-call]
