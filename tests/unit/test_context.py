"""The context features are the readable numpy formulas, bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from nesydet.pipeline.context import _channel_mean, downscale, features

F32 = npt.NDArray[np.float32]


def reference_features(small: F32) -> F32:
    """The features as first written: numpy means and one concatenate along the last axis."""

    def mean(x: F32, k: int) -> F32:
        out: F32 = cv2.blur(x, (k, k), borderType=cv2.BORDER_REFLECT)
        return out

    lum = small.mean(axis=2)
    parts = [small, mean(small, 5), mean(small, 15), mean(small, 41)]
    for k in (5, 15):
        m = mean(lum, k)
        parts.append(np.sqrt(np.maximum(mean(lum * lum, k) - m * m, 0.0))[..., None])
    c5 = parts[1]
    l5 = c5.mean(axis=2) + 0.05
    parts.append(((c5[..., 2] - c5[..., 0]) / l5)[..., None])
    parts.append(((c5[..., 1] - (c5[..., 0] + c5[..., 2]) / 2) / l5)[..., None])
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3)
    parts.append(mean(np.sqrt(gx * gx + gy * gy), 5)[..., None])
    med = np.median(small.reshape(-1, 3)[:: max(1, small.size // 60000)], axis=0)
    parts.append(np.broadcast_to(med.astype(np.float32), small.shape))
    parts.append(c5 - med.astype(np.float32))
    out: F32 = np.concatenate(parts, axis=2).astype(np.float32, copy=False)
    return out


@pytest.mark.parametrize("shape", [(300, 420), (97, 61), (8, 8)])
def test_features_are_the_reference_bit_for_bit(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    arr[: shape[0] // 2] //= 3  # a darker half, so the features are not all alike
    small = downscale(arr)
    ours, ref = features(small), reference_features(small)
    assert ours.dtype == ref.dtype == np.float32
    assert ours.shape == ref.shape == (*small.shape[:2], 23)
    assert np.array_equal(ours, ref)


def test_channel_mean_is_numpys_mean() -> None:
    rgb = np.random.default_rng(0).random((50, 70, 3), dtype=np.float32)
    assert np.array_equal(_channel_mean(rgb), rgb.mean(axis=2))
