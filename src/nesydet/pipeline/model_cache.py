"""Loaded models of one process, least recently used first out, bounded in memory.

A model's cost is what loading it grew the process by (resident memory, which covers torch's
weights and onnxruntime's arena alike), at least its file's size: measured, not guessed from
the file, since an ONNX session with its arena takes several times its file.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import psutil

log = logging.getLogger(__name__)
T = TypeVar("T")
MiB = 1024 * 1024


def resident_bytes() -> int:
    """Returns this process's resident memory."""
    return int(psutil.Process().memory_info().rss)


@dataclass(slots=True)
class Entry(Generic[T]):
    stamp: int
    value: T
    cost: int


class ModelCache(Generic[T]):
    """Models by file path; a changed file (its mtime) is loaded again.

    Args:
        cap_mb: Most memory the cached models may take together; None or 0: no bound. The
            model just loaded always stays, even alone over the bound.
        measure: Returns the process's memory (tests pass a fake).
    """

    def __init__(
        self, cap_mb: float | None = None, *, measure: Callable[[], int] = resident_bytes
    ) -> None:
        self.cap = int(cap_mb * MiB) if cap_mb else None
        self._measure = measure
        self._entries: OrderedDict[Path, Entry[T]] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    def get(self, path: Path, load: Callable[[Path], T]) -> T:
        """Returns the model of `path`, loading it (and evicting others) when needed."""
        stamp = path.stat().st_mtime_ns
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and entry.stamp == stamp:
                self._entries.move_to_end(path)
                return entry.value
            self._entries.pop(path, None)
            before = self._measure()
            value = load(path)
            cost = max(self._measure() - before, path.stat().st_size)
            self._entries[path] = Entry(stamp, value, cost)
            self._evict()
            return value

    def _evict(self) -> None:
        while self.cap is not None and len(self._entries) > 1 and self.total() > self.cap:
            path, entry = self._entries.popitem(last=False)
            self.evictions += 1
            log.info(
                "model unloaded (least recently used)",
                extra={"model": path.name, "cost_mb": round(entry.cost / MiB, 1)},
            )

    def total(self) -> int:
        """Returns the summed cost of the cached models, in bytes."""
        return sum(e.cost for e in self._entries.values())

    def loaded(self) -> list[tuple[str, int]]:
        """Returns (file name, cost in bytes) of each cached model, least recent first."""
        with self._lock:
            return [(p.name, e.cost) for p, e in self._entries.items()]

    def __contains__(self, path: object) -> bool:
        return path in self._entries
