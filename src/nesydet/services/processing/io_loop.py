"""One event loop per worker process, on a thread of its own, for all database and cache I/O.

The worker's main thread runs the model and Prolog (synchronous, CPU-bound) and its saving
thread writes artefacts; both hand their database work to this loop and wait for the result.
One loop means one connection pool (asyncpg connections belong to the loop that opened them),
and the heartbeat, a task on this loop, keeps beating while the main thread sits in the model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class IoLoop:
    """An asyncio loop running forever on a daemon thread."""

    def __init__(self, name: str = "nesydet-io") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """Return the loop (to schedule callbacks on it from other threads)."""
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Return the coroutine's result, run on the loop; blocks the calling thread.

        Never call it from the loop's own thread (it would wait for itself).
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("IoLoop.run called from its own thread")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def start(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Start the coroutine on the loop and return at once with its future."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        """Stop the loop, wait for its thread and close it."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
