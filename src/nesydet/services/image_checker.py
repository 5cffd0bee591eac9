"""A small pool of child processes that run :mod:`nesydet.services.image_inspect`."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from pebble import ProcessExpired, ProcessPool

from nesydet.services.image_inspect import (
    ImageInfo,
    ImageProblem,
    inspect_image,
    limit_memory,
)
from nesydet.services.image_inspect import (
    noop as _noop,
)

log = logging.getLogger(__name__)

Inspect = Callable[[str, str, int, int], ImageInfo | ImageProblem]
# A worker is replaced after this many checks, so decode buffers never pile up.
_MAX_TASKS_PER_CHILD = 200


class _Pool:
    """One pebble pool and the futures scheduled on it that are not done yet."""

    def __init__(self, pool: ProcessPool) -> None:
        self.pool = pool
        self.pending: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def schedule(
        self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
    ) -> Future[Any]:
        future = self.pool.schedule(fn, args=args, timeout=timeout)
        with self._lock:
            self.pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self.pending.discard(future)

    def stop(self) -> None:
        """Stop the workers and fail what the pool left unanswered."""
        self.pool.stop()  # type: ignore[no-untyped-call]  # pebble leaves it unannotated
        self.pool.join()
        # pebble never settles a task it had not handed to a worker when it stopped; without
        # this its caller would wait forever. check() retries these on a fresh pool.
        with self._lock:
            left = list(self.pending)
        for future in left:
            try:
                future.set_exception(BrokenProcessPool("the image checker pool was stopped"))
            except InvalidStateError:
                pass


class ImageChecker:
    """Decodes images in child processes, with a per-image timeout and a memory cap.

    A check that runs past the timeout has its child killed and replaced, and a child that dies
    (a decoder crash, the OOM killer) is replaced too; either way only that file fails, and every
    other check in flight goes on. The checker may serve several event loops at once.
    """

    def __init__(
        self,
        *,
        workers: int,
        memory_limit_bytes: int,
        timeout_s: float,
        min_dim: int,
        max_dim: int,
        inspect: Inspect = inspect_image,
    ) -> None:
        """Configure the pool; no process starts before :meth:`start` or the first check.

        Args:
            inspect: what the child runs on each file; a module-level function (the child
                imports it). Tests pass a faulty one.
        """
        self._workers = workers
        self._memory_limit = memory_limit_bytes
        self._timeout = timeout_s
        self._min_dim = min_dim
        self._max_dim = max_dim
        self._inspect = inspect
        self._pool: _Pool | None = None
        # A thread lock, not an asyncio one: the checker may serve several event loops.
        self._lock = threading.Lock()

    def _new_pool(self) -> _Pool:
        # spawn: the child starts clean (no copy of the API's memory, threads or sockets).
        return _Pool(
            ProcessPool(
                max_workers=self._workers,
                max_tasks=_MAX_TASKS_PER_CHILD,
                initializer=limit_memory,
                initargs=(self._memory_limit,),
                context=multiprocessing.get_context("spawn"),
            )
        )

    def _schedule(self, fn: Callable[..., Any], *args: Any, timeout: float | None) -> Future[Any]:
        with self._lock:
            if self._pool is not None and not self._pool.pool.active:
                # Broken (every worker died at once, say): stop it off the event loop.
                broken, self._pool = self._pool, None
                threading.Thread(target=broken.stop, name="image-checker-stop", daemon=True).start()
            if self._pool is None:
                self._pool = self._new_pool()
            try:
                return self._pool.schedule(fn, args, timeout)
            except RuntimeError as exc:  # pebble's word for a pool that broke a moment ago
                raise BrokenProcessPool(str(exc)) from exc

    async def start(self) -> None:
        """Start the child processes now, so the first upload does not wait for them."""
        futures = [self._schedule(_noop, timeout=None) for _ in range(self._workers)]
        await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))

    async def check(self, path: Path, fmt: str) -> ImageInfo | ImageProblem:
        """Return the image's facts, or the problem that makes it unacceptable."""
        try:
            return await self._check_once(path, fmt)
        except BrokenProcessPool:
            # The whole pool went (pebble could not tell whose check killed a child, or the pool
            # was stopped): this file is not to blame yet, so it gets one more try.
            try:
                return await self._check_once(path, fmt)
            except BrokenProcessPool:
                log.warning("image check pool broke twice", extra={"path": path.name})
                return _crashed()

    async def _check_once(self, path: Path, fmt: str) -> ImageInfo | ImageProblem:
        args = (str(path), fmt, self._min_dim, self._max_dim)
        future = self._schedule(self._inspect, *args, timeout=self._timeout)
        try:
            # wrap_future binds the wait to the calling loop only; cancelling it (a client
            # disconnect) cancels this check's future alone, and pebble then stops its child.
            result: ImageInfo | ImageProblem = await asyncio.wrap_future(future)
        except TimeoutError:
            # pebble has killed the child, which may have been stuck in C code, and replaced it.
            log.warning("image check timed out", extra={"path": path.name})
            return ImageProblem(
                "CORRUPTED_FILE",
                "Image could not be decoded",
                f"decoding took longer than {self._timeout:g} s",
            )
        except ProcessExpired as exc:
            log.warning(
                "image check process died", extra={"path": path.name, "exitcode": exc.exitcode}
            )
            return _crashed()
        return result

    def close(self) -> None:
        """Stop the child processes; a later check starts a new pool."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()


def _crashed() -> ImageProblem:
    return ImageProblem(
        "CORRUPTED_FILE", "Image could not be decoded", "the decoder crashed on this file"
    )
