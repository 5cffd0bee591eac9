"""Saves one image's results on a thread of its own while the worker computes the next image.

Encoding the annotated image, writing the artefacts and committing the detections take tens of
milliseconds per image; overlapping them with the next image's inference (which releases the
GIL) keeps the worker close to the pipeline's own speed. One save at a time, in order: a save
starts only after the previous one has finished, and its failure surfaces in the worker's
main thread at the next hand-over.

The saving thread runs at a lower priority than inference (``nice``): torch's threads meet at
a barrier after every layer, so a save that takes a core from one of them stalls them all
(measured: inference 20-30 % slower on two cores). At a lower priority a save runs on what
inference leaves idle, and it still finishes before the next hand-over waits for it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)


class BackgroundSaver:
    """A one-thread executor for saves; database work goes to the worker's I/O loop."""

    def __init__(self, *, nice: int = 0) -> None:
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="nesydet-save", initializer=_lower_priority, initargs=(nice,)
        )
        self._pending: Future[None] | None = None

    def submit(self, save: Callable[[], None]) -> None:
        """Start ``save`` once the previous save is done; its error is raised here if it failed."""
        self.wait()
        self._pending = self._executor.submit(save)

    def wait(self) -> None:
        """Wait for the save in progress and raise what it raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def drain(self) -> None:
        """Wait for the save in progress, logging instead of raising its error."""
        try:
            self.wait()
        except Exception as exc:  # the caller is already handling a failure of its own
            log.info("a pending save did not complete", extra={"error": repr(exc)})

    def close(self) -> None:
        """Finish the pending save and release the thread."""
        self.drain()
        self._executor.shutdown(wait=True)


def _lower_priority(nice: int) -> None:
    """Raise the calling thread's niceness by ``nice`` (Linux: niceness is per thread).

    Threads it starts later inherit it.
    """
    if nice <= 0 or sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
    except OSError as exc:  # a sandbox may forbid it; saving works the same, only slower
        log.info("could not lower the saving thread's priority", extra={"error": repr(exc)})
