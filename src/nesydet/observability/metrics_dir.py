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


def prepare(path: Path, *, wipe: bool) -> None:
    """Create (and when asked, empty) the directory and point prometheus_client at it."""
    if wipe and path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path.resolve())
    from prometheus_client import values  # only now: the env var is set

    values.ValueClass = values.MultiProcessValue(process_identifier)  # type: ignore[no-untyped-call]
