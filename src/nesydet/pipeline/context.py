"""Scene context from pixels alone: which surface (land, water, road, ...) lies under each cell.

The image is shrunk by `FACTOR` (area averaging) and every cell of the small image gets a
feature vector of colours, textures and their surroundings at three scales. A tiny two-layer
perceptron (`SurfaceModel`, a few kilobytes of numpy arrays made by
``scripts/train_context_model.py``) turns the features into one of `SURFACES`. Nothing here
sees ground truth or detections: the map is the same whatever the detector found.

Cost is linear in pixels and small next to inference (see ``bench/quality.py``).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SURFACES = ("land", "water", "road", "runway", "paved", "roof")
WATER = SURFACES.index("water")
DEFAULT_CONTEXT_MODEL = "nesydet-context.npz"
FACTOR = 4  # pixels per map cell along each axis
FEATURE_VERSION = 1
# Water patches smaller than this many cells (about 40 x 40 px) are taken for dark roofs or
# shadows rather than a pond: a shore that is not there would mislead every shore rule.
MIN_WATER_CELLS = 100
# Per-thread scratch memory of ContextMap (its summed-area tables and surface masks), reused
# image after image; each kept up to 16 MiB, the tables of a 3,300 x 3,300 px image.
_SCRATCH = threading.local()
SCRATCH_MAX_BYTES = 16 * 1024 * 1024

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


def _cv2() -> Any:
    import cv2  # deferred like the rest of the heavy imports; shipped with ultralytics

    return cv2


def downscale(arr: npt.NDArray[np.uint8], factor: int = FACTOR) -> F32:
    """Returns the RGB image shrunk by `factor` (area average), as float32 in [0, 1]."""
    h, w = arr.shape[:2]
    size = (max(1, w // factor), max(1, h // factor))
    small = _cv2().resize(arr, size, interpolation=_cv2().INTER_AREA)
    out: F32 = small.astype(np.float32) / 255.0
    return out


def features(small: F32) -> F32:
    """Returns (h, w, F) features of a shrunk image (see `downscale`).

    Colour at 1, 5, 15 and 41 cells; brightness texture (local standard deviation) at 5 and
    15; two chroma ratios, which gain and offset of the sensor change little; gradient
    energy; and the colour relative to the image's median, so one scene's lighting does not
    move every cell to another class.
    """
    cv2 = _cv2()

    def mean(x: F32, k: int) -> F32:
        out: F32 = cv2.blur(x, (k, k), borderType=cv2.BORDER_REFLECT)
        return out

    lum = _channel_mean(small)
    colours = [small, mean(small, 5), mean(small, 15), mean(small, 41)]
    planes: list[F32] = [plane for c in colours for plane in cv2.split(c)]
    for k in (5, 15):
        m = mean(lum, k)
        planes.append(np.sqrt(np.maximum(mean(lum * lum, k) - m * m, 0.0)))
    c5 = colours[1]
    l5 = _channel_mean(c5) + 0.05
    planes.append((c5[..., 2] - c5[..., 0]) / l5)
    planes.append((c5[..., 1] - (c5[..., 0] + c5[..., 2]) / 2) / l5)
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3)
    planes.append(mean(np.sqrt(gx * gx + gy * gy), 5))
    med = np.median(small.reshape(-1, 3)[:: max(1, small.size // 60000)], axis=0)
    med = med.astype(np.float32)
    planes += [np.full(lum.shape, v, dtype=np.float32) for v in med]
    planes += [c5[..., k] - med[k] for k in range(3)]
    # One interleaving pass in OpenCV: numpy's concatenate along the last axis copies one to
    # three floats at a time and took about half of this function on a 7 MP scene.
    out: F32 = cv2.merge([np.ascontiguousarray(p, dtype=np.float32) for p in planes])
    return out


def _channel_mean(rgb: F32) -> F32:
    """Returns the mean of the three channels, bit for bit ``rgb.mean(axis=2)`` (float32),
    without numpy's slow reduction over a 3-long axis."""
    out: F32 = (rgb[..., 0] + rgb[..., 1] + rgb[..., 2]) / np.float32(3)
    return out


@dataclass(frozen=True, slots=True)
class SurfaceModel:
    """A two-layer perceptron over `features`: standardise, ReLU hidden layer, softmax."""

    mean: F32
    std: F32
    w1: F32
    b1: F32
    w2: F32
    b2: F32
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> SurfaceModel:
        """Returns the model saved at `path` (an .npz written by `save`)."""
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k].astype(np.float32) for k in ("mean", "std", "w1", "b1", "w2", "b2")}
            meta = json.loads(str(z["meta"]))
        if meta.get("surfaces") != list(SURFACES) or meta.get("features") != FEATURE_VERSION:
            raise ValueError(f"{path.name}: surfaces or feature version do not match this code")
        return cls(**arrays, meta=meta)

    def save(self, path: Path) -> None:
        """Writes the model as a compressed .npz (arrays plus JSON metadata)."""
        np.savez_compressed(
            path,
            mean=self.mean,
            std=self.std,
            w1=self.w1,
            b1=self.b1,
            w2=self.w2,
            b2=self.b2,
            meta=np.array(json.dumps(self.meta, sort_keys=True)),
        )

    def logits(self, feats: F32) -> F32:
        """Returns (..., len(SURFACES)) class scores for (..., F) features."""
        x = (feats - self.mean) / self.std
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        out: F32 = hidden @ self.w2 + self.b2
        return out

    def predict(self, feats: F32, chunk: int = 32768) -> U8:
        """Returns the most likely surface of each row of (n, F) features.

        Same result as ``logits(...).argmax(1)``, about three times faster: the
        standardisation is folded into the first layer, and rows go through in chunks that
        stay in the CPU cache.
        """
        w1 = (self.w1 / self.std[:, None]).astype(np.float32)
        b1 = (self.b1 - (self.mean / self.std) @ self.w1).astype(np.float32)
        out: U8 = np.empty(len(feats), dtype=np.uint8)
        for start in range(0, len(feats), chunk):
            hidden = feats[start : start + chunk] @ w1
            hidden += b1
            np.maximum(hidden, 0.0, out=hidden)
            scores = hidden @ self.w2
            scores += self.b2
            out[start : start + chunk] = scores.argmax(axis=1)
        return out


@dataclass(frozen=True, slots=True)
class ContextMap:
    """The surface under each cell of an image, and how far each cell is from a shore.

    Attributes:
        labels: (h, w) index into `SURFACES` per cell.
        cell: (cell width, cell height) in image pixels.
        shore: (h, w) distance in pixels from each cell to the nearest cell of the other
            side of a shoreline (water for land cells, land for water cells); None when the
            image holds no water.
    """

    labels: U8
    cell: tuple[float, float]
    shore: F32 | None

    def integral(self) -> list[npt.NDArray[np.int32]]:
        """Returns one (h + 1, w + 1) summed-area table per surface, in `SURFACES` order.

        The tables are views of memory this thread reuses (`_scratch`): they hold until its
        next call.
        """
        cv2 = _cv2()
        h, w = self.labels.shape
        tables = _scratch("tables", (len(SURFACES), h + 1, w + 1), np.int32)
        for k, mask in enumerate(self._masks()):
            cv2.integral(mask.view(np.uint8), sum=tables[k], sdepth=cv2.CV_32S)
        return list(tables)

    def shares(self) -> dict[str, float]:
        """Returns the fraction of the image covered by each surface."""
        # count_nonzero per surface: bincount widens every uint8 label first (6x slower)
        counts = [np.count_nonzero(mask) for mask in self._masks()]
        total = max(self.labels.size, 1)
        return {name: float(c) / total for name, c in zip(SURFACES, counts, strict=True)}

    def _masks(self) -> Iterator[npt.NDArray[np.bool_]]:
        """Yields each surface's cells, in `SURFACES` order, in one reused scratch mask (each
        is overwritten by the next)."""
        mask = _scratch("mask", self.labels.shape, np.bool_)
        for k in range(len(SURFACES)):
            np.equal(self.labels, k, out=mask)
            yield mask


def _scratch(name: str, shape: tuple[int, ...], dtype: type[np.generic]) -> npt.NDArray[Any]:
    """Returns an uninitialised array of `shape`, in memory this thread keeps under `name` and
    reuses for any size up to SCRATCH_MAX_BYTES (a larger one is made afresh each time).

    Fresh arrays of a context map's size cost more to fault in than to fill: the six
    summed-area tables of a 512 x 512 map took 4.9 ms in new memory and 1.1 ms reused.
    """
    size = math.prod(shape)
    flat: npt.NDArray[Any] | None = getattr(_SCRATCH, name, None)
    if flat is None or flat.size < size or flat.dtype != dtype:
        flat = np.empty(size, dtype=dtype)
        if flat.nbytes <= SCRATCH_MAX_BYTES:
            setattr(_SCRATCH, name, flat)
    return flat[:size].reshape(shape)


def _clean_water(labels: U8) -> U8:
    """Returns labels where water patches under MIN_WATER_CELLS cells become land."""
    cv2 = _cv2()
    water = (labels == WATER).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(water, connectivity=4)
    small = np.nonzero(stats[1:, cv2.CC_STAT_AREA] < MIN_WATER_CELLS)[0] + 1
    if len(small) == 0 or n <= 1:
        return labels
    out = labels.copy()
    out[np.isin(comp, small)] = SURFACES.index("land")
    return out


def _shore_distance(labels: U8, cell: float) -> F32 | None:
    cv2 = _cv2()
    water = (labels == WATER).astype(np.uint8)
    if not water.any() or water.all():
        return None
    to_water = cv2.distanceTransform(1 - water, cv2.DIST_L2, 3)
    to_land = cv2.distanceTransform(water, cv2.DIST_L2, 3)
    out: F32 = (np.where(water > 0, to_land, to_water) * cell).astype(np.float32)
    return out


def context_map(arr: npt.NDArray[np.uint8], model: SurfaceModel) -> ContextMap:
    """Returns the context map of an HxWx3 uint8 RGB image."""
    h, w = arr.shape[:2]
    small = downscale(arr)
    feats = features(small)
    labels = model.predict(feats.reshape(-1, feats.shape[-1])).reshape(small.shape[:2])
    labels = _clean_water(labels)
    cell = (w / small.shape[1], h / small.shape[0])
    return ContextMap(labels, cell, _shore_distance(labels, (cell[0] + cell[1]) / 2))
