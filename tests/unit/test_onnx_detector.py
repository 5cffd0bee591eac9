"""The onnxruntime adapter's pre- and post-processing, on hand-built arrays (no model)."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from nesydet.pipeline.onnx_detector import OnnxRuntimeDetector, raw_from_rows


@pytest.mark.parametrize(
    ("shapes", "imgsz"), [([(640, 640)] * 3, 640), ([(500, 640), (640, 500)], (640, 640))]
)
def test_preprocess_is_ultralytics_letterbox_over_255(
    shapes: list[tuple[int, int]], imgsz: Any
) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    x = OnnxRuntimeDetector._preprocess(SimpleNamespace(stride=32), images, imgsz)  # type: ignore[arg-type]
    augment: Any = importlib.import_module("ultralytics.data.augment")
    same = len(set(shapes)) == 1
    letterbox = augment.LetterBox([640, 640], auto=same, stride=32)
    batch = np.stack([letterbox(image=im) for im in images]).transpose(0, 3, 1, 2)
    ref = np.ascontiguousarray(batch, dtype=np.float32)
    ref /= 255
    assert x.dtype == np.float32
    assert x.flags.c_contiguous
    assert np.array_equal(x, ref)


def test_raw_scales_oriented_rows_back_to_the_image() -> None:
    # A 320 x 320 image letterboxed to 640 x 640 is doubled with no padding: a row at
    # (200, 100) in the network input is at (100, 50) in the image.
    pred = np.array([[200.0, 100.0, 40.0, 20.0, 0.9, 2.0, 0.0]], dtype=np.float32)
    raw = raw_from_rows(pred, (640, 640), (320, 320, 3), oriented=True)
    assert raw.obb is not None
    assert np.allclose(raw.obb, [[100, 50, 20, 10, 0]])
    assert np.allclose(raw.boxes, [[90, 45, 110, 55]])
    assert raw.classes.tolist() == [2]
    assert raw.scores.dtype == np.float64
    assert np.allclose(raw.scores, [0.9])


def test_raw_axis_aligned_rows_are_clipped() -> None:
    pred = np.array([[-10.0, 5.0, 700.0, 60.0, 0.5, 1.0]], dtype=np.float32)
    raw = raw_from_rows(pred, (640, 640), (640, 640, 3), oriented=False)
    assert raw.obb is None
    assert np.allclose(raw.boxes, [[0, 5, 640, 60]])


def test_raw_of_nothing_is_empty() -> None:
    raw = raw_from_rows(np.zeros((0, 7), np.float32), (640, 640), (640, 640, 3), oriented=True)
    assert len(raw) == 0
    assert raw.obb is not None


class FakeSession:
    """Doubles its input; fails on a batch holding a negative value."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, _names: None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = feed.values()
        self.batches.append(len(x))
        if (x < 0).any():
            raise RuntimeError("bad input")
        return [x * 2]


def forwarder(parts: int) -> tuple[OnnxRuntimeDetector, FakeSession]:
    det = OnnxRuntimeDetector.__new__(OnnxRuntimeDetector)
    session = FakeSession()
    det._parts, det._session, det._input = parts, session, "images"
    return det, session


@pytest.mark.parametrize(("parts", "sizes"), [(1, [5]), (2, [3, 2]), (8, [1] * 5)])
def test_forward_splits_the_batch_and_keeps_its_order(parts: int, sizes: list[int]) -> None:
    det, session = forwarder(parts)
    x = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)
    assert np.array_equal(det._forward(x), x * 2)
    assert sorted(session.batches, reverse=True) == sizes


def test_forward_raises_a_failing_part() -> None:
    det, _ = forwarder(2)
    x = np.ones((4, 2), dtype=np.float32)
    x[3] = -1
    with pytest.raises(RuntimeError, match="bad input"):
        det._forward(x)
