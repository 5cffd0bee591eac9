"""A gate around the real detector: an end-to-end test decides when each image is inferred.

A worker started with ``NESYDET_DETECTOR_FACTORY=tests.gates:gated_detector`` and
``NESYDET_TEST_GATE_DIR=<dir>`` (see :meth:`Gate.env`) loads the real Ultralytics detector
(end-to-end tests never use a fake model) and wraps it. Every ``predict_batch`` call on a
non-blank image is numbered, from 1, per worker process, and call ``k``:

1. writes ``at-<k>`` in the gate directory: the worker is now held before inference;
2. waits until the test writes ``go-<k>`` (or ``open``, which lets every call through);
3. runs the real model, then writes ``done-<k>``.

The warm-up call (an all-zero image) passes freely and is not counted. Submit gated jobs with
``"config": {"sahi": {"enabled": false}}``: the whole image then goes to the model in one call,
so call ``k`` is the ``k``-th image the process works on. With SAHI on, an image is as many
calls as it has batches of slices.

A gate that a test forgets to open lets its call through after ``NESYDET_TEST_GATE_TIMEOUT_S``
(default 600 s, longer than any test waits), so a worker never hangs for ever.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from nesydet.pipeline.detector import Detector, ImageSize, Task, load_detector
from nesydet.pipeline.types import RawDetections

FACTORY = "tests.gates:gated_detector"
DIR_ENV = "NESYDET_TEST_GATE_DIR"
TIMEOUT_ENV = "NESYDET_TEST_GATE_TIMEOUT_S"
REPO = Path(__file__).resolve().parents[1]

_calls = itertools.count(1)
_calls_lock = threading.Lock()


class GatedDetector:
    """A `Detector` that holds each call on a real image until its gate file exists."""

    def __init__(self, inner: Detector, gate_dir: Path, timeout_s: float) -> None:
        self.inner = inner
        self.gate_dir = gate_dir
        self.timeout_s = timeout_s

    @property
    def names(self) -> Mapping[int, str]:
        """Return the real model's class names."""
        return self.inner.names

    @property
    def task(self) -> Task:
        """Return the real model's task."""
        return self.inner.task

    @property
    def imgsz(self) -> int:
        """Return the real model's input size."""
        return self.inner.imgsz

    def predict_batch(
        self, images: Sequence[npt.NDArray[np.uint8]], conf: float, *, iou: float, imgsz: ImageSize
    ) -> list[RawDetections]:
        """Return the real model's detections, once the test has opened this call's gate."""
        if not any(image.any() for image in images):  # the warm-up's blank image
            return self.inner.predict_batch(images, conf, iou=iou, imgsz=imgsz)
        with _calls_lock:
            k = next(_calls)
        (self.gate_dir / f"at-{k}").touch()
        deadline = time.monotonic() + self.timeout_s
        while not self._released(k) and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            return self.inner.predict_batch(images, conf, iou=iou, imgsz=imgsz)
        finally:
            (self.gate_dir / f"done-{k}").touch()

    def _released(self, k: int) -> bool:
        return (self.gate_dir / f"go-{k}").exists() or (self.gate_dir / "open").exists()


def gated_detector(model_path: Path, device: str) -> Detector:
    """Return the real detector for ``model_path``, gated by ``NESYDET_TEST_GATE_DIR``."""
    gate_dir = Path(os.environ[DIR_ENV])
    timeout_s = float(os.environ.get(TIMEOUT_ENV, "600"))
    return GatedDetector(load_detector(model_path, device), gate_dir, timeout_s)


class Gate:
    """The test's side of a gate directory: release calls one by one, or all at once."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        """Return the worker environment that plugs this gate in front of the real model."""
        path = os.environ.get("PYTHONPATH")
        return {
            "NESYDET_DETECTOR_FACTORY": FACTORY,
            DIR_ENV: str(self.dir),
            # The worker runs in a temporary directory: make ``tests.gates`` importable there.
            "PYTHONPATH": os.pathsep.join([str(REPO), *([path] if path else [])]),
        }

    def release(self, k: int) -> None:
        """Let call ``k`` through."""
        (self.dir / f"go-{k}").touch()

    def open(self) -> None:
        """Let every call through, now and later."""
        (self.dir / "open").touch()

    def reached(self, k: int) -> bool:
        """Return whether call ``k`` has started (it is held, or was let through)."""
        return (self.dir / f"at-{k}").exists()

    def passed(self, k: int) -> bool:
        """Return whether call ``k`` has been let through and the model has answered it."""
        return (self.dir / f"done-{k}").exists()
