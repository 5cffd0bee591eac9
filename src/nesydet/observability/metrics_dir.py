"""Set up Prometheus multiprocess mode; imports nothing of prometheus_client on purpose.

prometheus_client picks its value storage when it is first imported, so this must run before
any module that defines metrics is imported.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(path: Path, *, wipe: bool) -> None:
    """Create (and when asked, empty) the directory and point prometheus_client at it."""
    if wipe and path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path.resolve())
