"""Which runtime runs a model: torch, or onnxruntime on the model's ONNX export.

`BackendLoader` is the pipeline's default detector factory. With ``backend="auto"`` it runs a
``.pt`` on onnxruntime when the ONNX export exists (or can be made, offline) and gives the
same detections as torch on the probe scenes; otherwise on torch, and it logs why. On a GPU
it measures onnxruntime's CUDA provider, torch in half precision and the batched torch
adapter (`torch_batch`, half and full precision) at load time, each first checked on the
probe scenes (`probes`), and keeps the fastest. ``"torch"`` is the plain ultralytics
``.pt`` path; ``"onnx"`` insists on the export. An ``.onnx`` file always runs on onnxruntime.
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

from nesydet.pipeline.detector import Detector, UltralyticsDetector, resolve_device
from nesydet.pipeline.errors import ModelLoadError
from nesydet.pipeline.onnx_detector import OnnxRuntimeDetector, UnsupportedOnnxError
from nesydet.pipeline.onnx_export import ExportError, cached_export, ensure_export
from nesydet.pipeline.probes import (
    PROBE_IOU,
    compare_detections,
    probe_detections,
    probe_images,
)

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "onnx"]
BACKENDS: tuple[str, ...] = get_args(Backend)

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


def _open_torch_batch(path: Path, device: str, half: bool) -> Detector:
    from nesydet.pipeline.torch_batch import TorchBatchDetector

    return TorchBatchDetector(path, device, half=half)


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
        threads: Cores one onnxruntime call may use (a batch runs in that many parts side by
            side); 0: every core.
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
        open_batched: OpenModel | None = None,
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
        # On a GPU, the adapter that keeps batches on the device (a candidate like the others).
        self._open_batched = open_batched or (None if open_model else _open_torch_batch)
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
        batched, note = self._batched(path, device, reference, probes)
        candidates.update(batched)
        why_not += note
        seconds = {name: self._timer(det, probes) for name, det in candidates.items()}
        best = pick_fastest(seconds)
        measured = ", ".join(f"{n} {s * 1000:.1f} ms/slice" for n, s in seconds.items())
        reason = f"fastest measured: {measured}; {why_not}"
        return self._chose(path, candidates[best], best, reason)

    def _batched(
        self,
        path: Path,
        device: str,
        reference: Detector,
        probes: Sequence[npt.NDArray[np.uint8]],
    ) -> tuple[dict[str, Detector], str]:
        """Returns the batched torch adapters (half and full precision) that give the
        reference's detections on the probes, and a note on those that do not."""
        if self._open_batched is None:
            return {}, ""
        wanted = probe_detections(reference, probes)
        found: dict[str, Detector] = {}
        note = ""
        for name, half in (("torch-batch-half", True), ("torch-batch", False)):
            try:
                det = self._open_batched(path, device, half)
            except ModelLoadError as exc:
                note += f"; {name} does not load: {exc}"
                continue
            match = compare_detections(wanted, probe_detections(det, probes))
            if match.mismatch is None:
                found[name] = det
            else:
                note += f"; {name} differs on the probe: {match.mismatch}"
        return found, note

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
