"""Watch a server process's memory during a benchmark."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


@dataclass
class RssWatcher:
    """Samples a process's RSS (and its children's, separately) every few milliseconds."""

    pid: int
    interval: float = 0.005
    peak: int = 0
    children_peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def _children_rss(self) -> int:
        total = 0
        for child in psutil.Process(self.pid).children(recursive=True):
            try:
                total = max(total, child.memory_info().rss)
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self.children_peak = max(self.children_peak, self._children_rss())
            time.sleep(self.interval)

    def __enter__(self) -> RssWatcher:
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
