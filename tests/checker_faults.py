"""Faulty stand-ins for ``inspect_image``, run by the image checker's child processes.

They are module-level functions in a module of their own so that a spawned child can import
them. A file asks for a fault with a marker at its very end, where a sniffer never looks; before
acting on it the child writes its pid next to the file (``pid_file``), so a test can watch it.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from nesydet.services.image_inspect import ImageInfo, ImageProblem, inspect_image

HANG = b"\n#nesydet-fault:hang"
CRASH = b"\n#nesydet-fault:crash"


def pid_file(image: Path) -> Path:
    """Return where the child that takes ``image`` writes its pid."""
    return image.with_name(image.name + ".pid")


def faulty_inspect(path: str, fmt: str, min_dim: int, max_dim: int) -> ImageInfo | ImageProblem:
    """Hang or crash on a marked file; check any other file as ``inspect_image`` does."""
    data = Path(path).read_bytes()
    if data.endswith((HANG, CRASH)):
        target = pid_file(Path(path))
        partial = target.with_name(target.name + ".part")
        partial.write_text(str(os.getpid()))
        os.replace(partial, target)  # a reader never sees half a pid
    if data.endswith(HANG):
        # Like a decoder stuck in C code, where a Python SIGTERM handler never gets to run:
        # nothing but SIGKILL ends this child.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        threading.Event().wait()
    if data.endswith(CRASH):
        os.kill(os.getpid(), signal.SIGKILL)  # a segfault or the OOM killer, as the parent sees it
    return inspect_image(path, fmt, min_dim, max_dim)
