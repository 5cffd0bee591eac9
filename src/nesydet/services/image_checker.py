"""A small pool of child processes that run :mod:`nesydet.services.image_check`."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path

from nesydet.services.image_check import (
    ImageInfo,
    ImageProblem,
    inspect_image,
    limit_memory,
)
from nesydet.services.image_check import (
    noop as _noop,
)

log = logging.getLogger(__name__)


class ImageChecker:
    """Decodes images in child processes, with a per-image timeout and a memory cap."""

    def __init__(
        self,
        *,
        workers: int,
        memory_limit_bytes: int,
        timeout_s: float,
        min_dim: int,
        max_dim: int,
    ) -> None:
        self._workers = workers
        self._memory_limit = memory_limit_bytes
        self._timeout = timeout_s
        self._min_dim = min_dim
        self._max_dim = max_dim
        self._pool: ProcessPoolExecutor | None = None
        # A thread lock, not an asyncio one: the checker may serve several event loops.
        self._lock = threading.Lock()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: the child starts clean (no copy of the API's memory, threads or sockets) and
        # is recycled after a while so decode buffers never pile up.
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=limit_memory,
            initargs=(self._memory_limit,),
            max_tasks_per_child=200,
        )

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = self._new_pool()
            return self._pool

    def _reset(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    async def start(self) -> None:
        """Start the child processes now, so the first upload does not wait for them."""
        pool = self._get_pool()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(pool, _noop) for _ in range(self._workers)))

    async def check(self, path: Path, fmt: str) -> ImageInfo | ImageProblem:
        """Return the image's facts, or the problem that makes it unacceptable."""
        pool = self._get_pool()
        job = partial(inspect_image, str(path), fmt, self._min_dim, self._max_dim)
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(pool, job), self._timeout)
        except TimeoutError:
            # The child may be stuck in C code: throw the whole pool away.
            log.warning("image check timed out", extra={"path": path.name})
            self._reset(pool)
            return ImageProblem(
                "CORRUPTED_FILE",
                "Image could not be decoded",
                f"decoding took longer than {self._timeout:g} s",
            )
        except BrokenProcessPool:
            log.warning("image check process died", extra={"path": path.name})
            self._reset(pool)
            return ImageProblem(
                "CORRUPTED_FILE", "Image could not be decoded", "the decoder crashed on this file"
            )

    def close(self) -> None:
        """Stop the child processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
