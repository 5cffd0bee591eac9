"""Which runtime runs a model: torch, or onnxruntime on the model's ONNX export.

`BackendLoader` is the pipeline's default detector factory. With ``backend="auto"`` it runs a
``.pt`` on onnxruntime when the ONNX export exists (or can be made, offline) and gives the
same detections as torch on the probe scenes; otherwise on torch, and it logs why. On a GPU
it measures onnxruntime's CUDA provider against torch in half precision at load time and
keeps the faster. ``"torch"`` is the plain ultralytics ``.pt`` path; ``"onnx"`` insists on
the export. An ``.onnx`` file always runs on onnxruntime.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

from nesydet.pipeline.detector import Detector, UltralyticsDetector, resolve_device
from nesydet.pipeline.errors import ModelLoadError
from nesydet.pipeline.onnx_detector import OnnxRuntimeDetector, UnsupportedOnnxError
from nesydet.pipeline.onnx_export import ExportError, cached_export, ensure_export
from nesydet.pipeline.types import RawDetections

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "onnx"]
BACKENDS: tuple[str, ...] = get_args(Backend)

# The probe: detections kept down to PROBE_CONF so that even a model trained on other imagery
# gives boxes to compare. Two runtimes agree when every box scoring at least PROBE_CONF +
# SCORE_TOL in one has a twin in the other (same class, IoU >= IOU_MIN, score within
# SCORE_TOL). Measured for the demo model on these probes: 281 boxes, max score difference
# 1e-6 (float32 rounding), so the tolerance leaves a wide margin for other CPUs' kernels.
PROBE_CONF = 0.05
PROBE_IOU = 0.45
PROBE_SIZE = 640
SCORE_TOL = 0.01
IOU_MIN = 0.9
TIMED_BATCH = 8  # slices per timed call when measuring on a GPU
TIMED_REPEATS = 3

OpenModel = Callable[[Path, str, bool], Detector]  # (file, device, half) -> detector
Exporter = Callable[[Path, Path | None], Path]
Timer = Callable[[Detector, Sequence[npt.NDArray[np.uint8]]], float]


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """What runs a model and why: backend is "torch", "torch-half", "onnxruntime" or
    "onnxruntime-cuda"; `model` is the file it runs (the .pt or its export)."""

    backend: str
    model: Path
    reason: str


@dataclass(frozen=True, slots=True)
class ProbeMatch:
    """How two runtimes' detections on the probe scenes compare; `mismatch` is None when
    they agree within the tolerance."""

    boxes: int
    max_score_diff: float
    mismatch: str | None


def probe_images(
    size: int = PROBE_SIZE, seeds: Sequence[int] = (0, 1)
) -> list[npt.NDArray[np.uint8]]:
    """Returns deterministic aerial-like probe scenes: textured ground, roads, rotated blocks.

    Made here rather than read from a file, so that any model directory can be probed; the
    blocks (vehicle- to building-sized) draw boxes from most aerial detectors at PROBE_CONF.
    """
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        coarse = rng.normal(0, 18, (size // 32, size // 32, 3))
        ground = np.asarray(
            Image.fromarray(np.clip(coarse + 110, 0, 255).astype(np.uint8)).resize(
                (size, size), Image.Resampling.BICUBIC
            ),
            dtype=np.float64,
        )
        ground += rng.normal(0, 6, (size, size, 3))
        img = Image.fromarray(np.clip(ground, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(3):  # roads
            y = int(rng.integers(0, size))
            draw.line([(0, y), (size, y + int(rng.integers(-80, 80)))], fill=(70, 70, 72), width=24)
        for _ in range(60):
            cx, cy = rng.uniform(0, size, 2)
            length = rng.choice([rng.uniform(12, 20), rng.uniform(25, 45), rng.uniform(40, 90)])
            width = length * rng.uniform(0.4, 0.7)
            angle = rng.uniform(0, np.pi)
            c, s = np.cos(angle), np.sin(angle)
            corners = [
                (cx + dx * c - dy * s, cy + dx * s + dy * c)
                for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
                for dx, dy in [(dx * length / 2, dy * width / 2)]
            ]
            colour = tuple(int(v) for v in rng.integers(20, 250, 3))
            draw.polygon(corners, fill=colour, outline=(30, 30, 30))
        out.append(np.asarray(img.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.uint8))
    return out


def probe_detections(det: Detector, images: Sequence[npt.NDArray[np.uint8]]) -> list[RawDetections]:
    """Returns a detector's boxes on the probes: as slices (their own size) and as full
    images (resized to the model's training size), so both inference paths are covered."""
    size = int(images[0].shape[0]) if images else PROBE_SIZE
    sliced = det.predict_batch(images, PROBE_CONF, iou=PROBE_IOU, imgsz=size)
    full = [
        det.predict_batch([img], PROBE_CONF, iou=PROBE_IOU, imgsz=det.imgsz)[0] for img in images
    ]
    return [*sliced, *full]


def compare_detections(
    ref: Sequence[RawDetections],
    other: Sequence[RawDetections],
    *,
    conf: float = PROBE_CONF,
    score_tol: float = SCORE_TOL,
    iou_min: float = IOU_MIN,
) -> ProbeMatch:
    """Returns whether `other` gives `ref`'s detections, image by image, within tolerance.

    A box of either side that scores at least conf + score_tol needs a twin on the other
    side: the same class, axis-aligned IoU >= iou_min and a score within score_tol. Boxes
    just above `conf` may be missing on one side (a rounding difference crosses the floor).
    """
    if len(ref) != len(other):
        return ProbeMatch(0, 0.0, f"{len(ref)} != {len(other)} results")
    boxes, worst = 0, 0.0
    for i, (a, b) in enumerate(zip(ref, other, strict=True)):
        for first, second, side in ((a, b, "reference"), (b, a, "other")):
            for k in np.nonzero(first.scores >= conf + score_tol)[0]:
                diff = _twin_score_diff(first, int(k), second, iou_min)
                if diff is None or diff > score_tol:
                    cls, score = int(first.classes[k]), float(first.scores[k])
                    box = ", ".join(f"{v:.0f}" for v in first.boxes[k])
                    what = "no twin" if diff is None else f"twin's score differs by {diff:.3f}"
                    return ProbeMatch(
                        boxes,
                        worst,
                        f"probe {i}: {side} box of class {cls} at [{box}] "
                        f"(score {score:.3f}) has {what}",
                    )
                worst = max(worst, diff)
                boxes += side == "reference"
    return ProbeMatch(boxes, worst, None)


def _twin_score_diff(a: RawDetections, k: int, b: RawDetections, iou_min: float) -> float | None:
    """Returns the score difference to box k's closest-scoring twin in b, None without one."""
    same = np.nonzero(b.classes == a.classes[k])[0]
    if len(same) == 0:
        return None
    x0, y0, x1, y1 = a.boxes[k]
    bb = b.boxes[same]
    iw = np.clip(np.minimum(x1, bb[:, 2]) - np.maximum(x0, bb[:, 0]), 0, None)
    ih = np.clip(np.minimum(y1, bb[:, 3]) - np.maximum(y0, bb[:, 1]), 0, None)
    inter = iw * ih
    union = (x1 - x0) * (y1 - y0) + (bb[:, 2] - bb[:, 0]) * (bb[:, 3] - bb[:, 1]) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    twins = same[iou >= iou_min]
    if len(twins) == 0:
        return None
    return float(np.min(np.abs(b.scores[twins] - a.scores[k])))


def pick_fastest(seconds: Mapping[str, float]) -> str:
    """Returns the name with the fewest seconds (the first named on a tie)."""
    if not seconds:
        raise ValueError("nothing to choose from")
    return min(seconds, key=lambda name: seconds[name])


def seconds_per_image(det: Detector, images: Sequence[npt.NDArray[np.uint8]]) -> float:
    """Returns the best of TIMED_REPEATS timed batched calls, per image (after a warm-up call)."""
    batch = [images[i % len(images)] for i in range(TIMED_BATCH)]
    size = int(batch[0].shape[0])
    det.predict_batch(batch, 0.25, iou=PROBE_IOU, imgsz=size)
    best = float("inf")
    for _ in range(TIMED_REPEATS):
        started = time.perf_counter()
        det.predict_batch(batch, 0.25, iou=PROBE_IOU, imgsz=size)
        best = min(best, time.perf_counter() - started)
    return best / len(batch)


def onnx_cuda_available() -> bool:
    """Returns whether the installed onnxruntime has the CUDA provider (onnxruntime-gpu)."""
    try:
        import onnxruntime  # type: ignore[import-untyped]
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def open_detector(
    path: Path, device: str, half: bool, *, threads: int = 0, arena: bool = True
) -> Detector:
    """Returns the adapter for a .pt or .onnx file (the default OpenModel): an ultralytics
    export with dynamic axes on the lean onnxruntime adapter, anything else on ultralytics."""
    if path.suffix == ".onnx":
        try:
            return OnnxRuntimeDetector(path, device, threads=threads, arena=arena)
        except UnsupportedOnnxError:
            pass
    return UltralyticsDetector(path, device, half=half)


def _runs_on(det: Detector, default: str) -> str:
    """Returns what a detector reports it runs on (its `backend`), else `default`."""
    return str(getattr(det, "backend", default))


class BackendLoader:
    """A `DetectorFactory` that chooses the runtime of each model it loads (see module doc).

    Args:
        backend: "auto", "torch" or "onnx".
        cache_dir: Where ONNX exports are cached; None: a folder ``.onnx`` next to each .pt.
        export_missing: Whether "auto" makes a missing export (offline, about 6 s for the demo
            model on 2 cores) or only uses one already cached.
        threads: onnxruntime intra-op threads per model; 0: its default (every core).
        onnx_arena: onnxruntime's memory arena: faster, about 250 MiB more per resident model
            (bench/memory.py); off for many resident models.
        open_model, exporter, cuda_provider, timer: The collaborators (tests pass fakes).
    """

    def __init__(
        self,
        backend: str = "auto",
        *,
        cache_dir: Path | None = None,
        export_missing: bool = True,
        threads: int = 0,
        onnx_arena: bool = True,
        open_model: OpenModel | None = None,
        exporter: Exporter = ensure_export,
        cuda_provider: Callable[[], bool] = onnx_cuda_available,
        timer: Timer = seconds_per_image,
        probes: Sequence[npt.NDArray[np.uint8]] | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"inference backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.cache_dir = cache_dir
        self.export_missing = export_missing
        self._open: OpenModel = open_model or (
            lambda path, device, half: open_detector(
                path, device, half, threads=threads, arena=onnx_arena
            )
        )
        self._export = exporter
        self._cuda_provider = cuda_provider
        self._timer = timer
        self._probes = list(probes) if probes is not None else None
        self.choices: dict[Path, BackendChoice] = {}

    def __call__(self, path: Path, device: str) -> Detector:
        """Returns the detector for a model file, run by the backend chosen for it.

        Raises:
            ModelLoadError: When the model cannot be loaded, or "onnx" cannot get its export.
        """
        device = resolve_device(device)
        if path.suffix == ".onnx":
            det = self._open(path, device, False)
            return self._chose(path, det, _runs_on(det, "onnxruntime"), "an .onnx file")
        if self.backend == "torch":
            det = self._open(path, device, False)
            return self._chose(path, det, "torch", "NESYDET_INFERENCE_BACKEND=torch")
        if self.backend == "onnx":
            det = self._open(self._export(path, self.cache_dir), device, False)
            return self._chose(path, det, _runs_on(det, "onnxruntime"), "forced (onnx)")
        return self._auto(path, device)

    def _auto(self, path: Path, device: str) -> Detector:
        reference = self._open(path, device, False)  # a bad .pt fails here, before any export
        onnx_det, why_not = self._checked_onnx(path, device, reference)
        if device == "cpu":
            if onnx_det is not None:
                return self._chose(path, onnx_det, "onnxruntime", why_not)
            return self._chose(path, reference, "torch", why_not)
        # Half precision moves scores by about 1e-3: it must still pass the probe's tolerance.
        half = self._open(path, device, True)
        probes = self._probe_images()
        match = compare_detections(
            probe_detections(reference, probes), probe_detections(half, probes)
        )
        candidates: dict[str, Detector] = (
            {"torch-half": half} if match.mismatch is None else {"torch": reference}
        )
        if match.mismatch is not None:
            why_not += f"; torch half precision differs on the probe: {match.mismatch}"
        if onnx_det is not None:
            candidates["onnxruntime-cuda"] = onnx_det
        seconds = {name: self._timer(det, probes) for name, det in candidates.items()}
        best = pick_fastest(seconds)
        measured = ", ".join(f"{n} {s * 1000:.1f} ms/slice" for n, s in seconds.items())
        reason = f"fastest measured: {measured}; {why_not}"
        return self._chose(path, candidates[best], best, reason)

    def _checked_onnx(
        self, path: Path, device: str, reference: Detector
    ) -> tuple[Detector | None, str]:
        """Returns the ONNX detector when its export exists and agrees with `reference` on
        the probes, else None; and the reason, either way."""
        if device != "cpu" and not self._cuda_provider():
            return None, "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
        try:
            onnx = (
                self._export(path, self.cache_dir)
                if self.export_missing
                else cached_export(path, self.cache_dir)
            )
        except ExportError as exc:
            return None, f"no ONNX export: {exc}"
        if onnx is None:
            return None, "no cached ONNX export (and export_missing is off)"
        try:
            det = self._open(onnx, device, False)
        except ModelLoadError as exc:  # a damaged cache file: say so, run on torch
            return None, f"the ONNX export does not load: {exc}"
        probes = self._probe_images()
        match = compare_detections(
            probe_detections(reference, probes), probe_detections(det, probes)
        )
        if match.mismatch is not None:
            return None, f"the ONNX export differs from torch on the probe: {match.mismatch}"
        return det, (
            f"{onnx.name} matches torch on the probe ({match.boxes} boxes, "
            f"max score difference {match.max_score_diff:.1e})"
        )

    def _probe_images(self) -> list[npt.NDArray[np.uint8]]:
        if self._probes is None:
            self._probes = probe_images()
        return self._probes

    def _chose(self, path: Path, det: Detector, backend: str, reason: str) -> Detector:
        model = getattr(det, "path", path)
        self.choices[path] = BackendChoice(backend, Path(model), reason)
        log.info(
            "inference backend chosen",
            extra={
                "model": path.name,
                "backend": backend,
                "runs": Path(model).name,
                "reason": reason,
            },
        )
        return det
