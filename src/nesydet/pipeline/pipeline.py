"""The detection pipeline: sliced inference, cross-slice NMS, Prolog reasoning, visualization."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from nesydet.pipeline import geometry as geo
from nesydet.pipeline.backends import BackendLoader
from nesydet.pipeline.config import PipelineConfig
from nesydet.pipeline.context import DEFAULT_CONTEXT_MODEL, ContextMap, SurfaceModel, context_map
from nesydet.pipeline.decide import Candidates, apply_decisions, unreasoned
from nesydet.pipeline.detector import (
    Detector,
    resolve_model_path,
    set_cpu_threads,
)
from nesydet.pipeline.errors import InferenceError, ModelLoadError
from nesydet.pipeline.image_io import as_rgb_array
from nesydet.pipeline.model_cache import ModelCache
from nesydet.pipeline.nms import BORDER_IOS, merge_slices
from nesydet.pipeline.reasoning.engine import PrologReasoner
from nesydet.pipeline.reasoning.facts import CONTEXT_FACTS, build_facts
from nesydet.pipeline.types import (
    BoolArray,
    Detection,
    IntArray,
    PipelineResult,
    RawDetections,
)
from nesydet.pipeline.visualize import annotate, annotate_suppressed, thumbnail

STAGE_INFERENCE = "Running SAHI inference"
STAGE_NMS = "Applying NMS"
STAGE_REASONING = "Symbolic reasoning"
STAGE_VISUALIZATION = "Generating visualizations"
STAGES = (STAGE_INFERENCE, STAGE_NMS, STAGE_REASONING, STAGE_VISUALIZATION)

DetectorFactory = Callable[[Path, str], Detector]


class Pipeline:
    """Runs detection jobs; one instance per worker process, models kept resident.

    Args:
        models_dir: Directory of model files; job model names resolve inside it only.
        rules_dir: Directory of Prolog rules files; same confinement.
        default_model: Model file name used when a job gives no model_path.
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda:0", ...
        rules_time_limit_s: Time limit for loading a rules file and for each reasoning call.
        batch_size: Slices per model call. Batches pay off on GPUs; on the 2-core
            development CPU, batches of 4 and single slices ran equally fast.
        candidate_factor: With reasoning on, the detector keeps candidates down to
            factor x confidence_threshold so supporting context can lift them above it.
            Default 1.0 (rules only re-score and drop): on a dev set of synthetic scenes,
            0.5 gained 0.4 points of recall but cost 2.5 points of precision, since most
            weak candidates next to real objects are fragments and look-alikes.
        border_ios: Border merge threshold (see `nms.merge_slices`): a box cut at a slice
            border inside the full box from a neighbouring slice, or two same-class boxes
            from different slices, merge when the intersection covers this fraction of the
            smaller box. None disables it (plain IoU NMS only).
        backend: What runs a ``.pt``: "auto" (onnxruntime on its ONNX export when the export
            gives torch's detections on a probe, else torch; on a GPU the faster of the two,
            measured), "torch" or "onnx" (see `backends`). Unused with a detector_factory.
        onnx_cache_dir: Where ONNX exports are cached by the .pt's sha256; None: a folder
            ``.onnx`` next to the .pt.
        detector_factory: Builds a `Detector` for a model path (tests inject fakes here);
            None: a `BackendLoader` for `backend`.
        cpu_threads: CPU threads for inference (torch, and each onnxruntime session); None
            leaves torch its own setting and onnxruntime every core.
        context_model: File name in models_dir of the surface classifier behind the context
            facts (scene/2, on/3, shore_distance/2; see `context`). When the file is
            missing, or None, those facts are not sent and the rules reading them see none.
        extra_models_dir, extra_rules_dir: Further folders model and rules names resolve in
            (after models_dir and rules_dir): where a worker keeps registered files.
        model_cache_mb: Memory the loaded models may take together (see `ModelCache`);
            None: no bound.
    """

    def __init__(
        self,
        models_dir: Path,
        rules_dir: Path,
        *,
        default_model: str,
        device: str = "auto",
        rules_time_limit_s: float = 5.0,
        batch_size: int = 4,
        candidate_factor: float = 1.0,
        border_ios: float | None = BORDER_IOS,
        backend: str = "auto",
        onnx_cache_dir: Path | None = None,
        detector_factory: DetectorFactory | None = None,
        cpu_threads: int | None = None,
        context_model: str | None = DEFAULT_CONTEXT_MODEL,
        extra_models_dir: Path | None = None,
        extra_rules_dir: Path | None = None,
        model_cache_mb: float | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.rules_dir = Path(rules_dir)
        self.default_model = default_model
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.candidate_factor = float(candidate_factor)
        self.border_ios = border_ios
        # The loader records which backend runs each model and why (`backends.choices`).
        self.backends: BackendLoader | None = None
        if detector_factory is None:
            self.backends = detector_factory = BackendLoader(
                backend, cache_dir=onnx_cache_dir, threads=cpu_threads or 0
            )
        self._factory: DetectorFactory = detector_factory
        self.cpu_threads = cpu_threads
        self.model_dirs = [self.models_dir, *([Path(extra_models_dir)] if extra_models_dir else [])]
        self.models: ModelCache[Detector] = ModelCache(model_cache_mb)
        self._models_lock = threading.Lock()
        # Detectors already run once; weak, so a replaced model's id is never mistaken for it.
        self._warm: weakref.WeakSet[Detector] = weakref.WeakSet()
        self.reasoner = PrologReasoner(
            self.rules_dir,
            time_limit_s=rules_time_limit_s,
            extra_dirs=[Path(extra_rules_dir)] if extra_rules_dir else [],
        )
        self.context_model = context_model
        self._surface: tuple[int, SurfaceModel] | None = None

    def model_name(self, model_path: str | None = None) -> str:
        """Returns a label for metrics: the model file's stem (no loading involved)."""
        return Path(model_path or self.default_model).stem

    def detector(self, model_path: str | None = None) -> Detector:
        """Returns the (cached) detector for a model name inside models_dir.

        Raises:
            ModelLoadError: When the name is unsafe or the model cannot be loaded.
        """
        path = resolve_model_path(self.model_dirs, model_path or self.default_model)
        return self.models.get(path, lambda p: self._factory(p, self.device))

    def surface_model(self) -> SurfaceModel | None:
        """Returns the (cached) context model, or None when there is none to load.

        Raises:
            ModelLoadError: When the file exists but is not a context model of this version.
        """
        if self.context_model is None:
            return None
        path = self.models_dir / self.context_model
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        with self._models_lock:
            if self._surface is None or self._surface[0] != mtime:
                try:
                    self._surface = (mtime, SurfaceModel.load(path))
                except (OSError, ValueError, KeyError) as exc:
                    raise ModelLoadError("cannot load the context model", str(exc)) from exc
            return self._surface[1]

    def warmup(self, model_path: str | None = None) -> None:
        """Runs a job's paths once (model, NMS, decoding, slicing), loads the context model,
        starts Prolog; in each worker after fork, before it freezes its heap, so what they
        import (~1,000 modules) is not walked by every full collection in jobs (60-90 ms).

        Raises:
            ModelLoadError: When the model cannot be resolved or loaded.
        """
        det = self.detector(model_path)
        if det not in self._warm:
            blank = np.zeros((det.imgsz, det.imgsz, 3), dtype=np.uint8)
            det.predict_batch([blank], 1e-9, iou=0.45, imgsz=det.imgsz)  # below any score
            self._warm.add(det)
        geo.slice_windows(1, 1, 1, 1, 0.0)
        self.surface_model()
        self.reasoner.start()

    def run(
        self,
        image: Image.Image | npt.NDArray[np.uint8],
        config: PipelineConfig | None = None,
        *,
        on_stage: Callable[[str], None] | None = None,
    ) -> PipelineResult:
        """Returns detections, reasoning traces, timings and images for one image.

        Args:
            image: PIL image (any mode) or HxWx3 uint8 RGB array.
            config: Job settings; defaults when None.
            on_stage: Called with each stage name as the stage starts.

        Raises:
            ModelLoadError: The model cannot be resolved or loaded.
            RulesError: The rules file is invalid, unsafe, too slow or misbehaves.
            InferenceError: The model failed on this image.
        """
        cfg = config or PipelineConfig()
        notify = on_stage or (lambda _stage: None)
        arr = as_rgb_array(image)
        h, w = arr.shape[:2]
        det = self.detector(cfg.model_path)
        if self.cpu_threads:
            set_cpu_threads(self.cpu_threads)
        reasoning = cfg.symbolic_reasoning
        # Loads the rules (failing fast, before inference) and says which facts they read.
        wanted = self.reasoner.facts_used(reasoning.rules_file) if reasoning.enabled else None
        timings: dict[str, float] = {}
        parts: dict[str, float] = {}

        with _stage(timings, "inference", notify, STAGE_INFERENCE):
            floor = cfg.confidence_threshold * (self.candidate_factor if reasoning.enabled else 1.0)
            raw, truncated, source, n_slices = self._infer(det, arr, cfg, floor)
        with _stage(timings, "nms", notify, STAGE_NMS):
            cands = self._merge(raw, truncated, source, cfg, (w, h), sliced=n_slices > 1)
        with _stage(timings, "reasoning", notify, STAGE_REASONING if reasoning.enabled else None):
            kept, dropped = self._decide(det, cands, cfg, arr, parts, wanted)
        with _stage(timings, "visualization", notify, None):
            annotated, thumb = _draw(image, arr, kept, dropped, cfg, notify)

        return PipelineResult(
            detections=kept,
            dropped=dropped,
            timings=timings,
            image_size=(w, h),
            model_name=self.model_name(cfg.model_path),
            annotated=annotated,
            thumbnail=thumb,
            stats={
                "slices": n_slices,
                "raw": len(raw),
                "candidates": len(cands.raw),
                "kept": len(kept),
                "dropped": len(dropped),
            },
            reasoning_timings=parts,
        )

    def _infer(
        self, det: Detector, arr: npt.NDArray[np.uint8], cfg: PipelineConfig, conf: float
    ) -> tuple[RawDetections, BoolArray, IntArray, int]:
        h, w = arr.shape[:2]
        oriented = det.task == "obb"
        s = cfg.sahi
        if not s.enabled:
            out = det.predict_batch([arr], conf, iou=cfg.iou_threshold, imgsz=det.imgsz)
            raw = out[0] if out else RawDetections.empty(oriented)
            return raw, np.zeros(len(raw), dtype=bool), np.zeros(len(raw), dtype=np.int64), 1
        windows = geo.slice_windows(w, h, s.slice_width, s.slice_height, s.overlap_ratio)
        # Slices are cut here and sent to the model in batches instead of going through SAHI's
        # get_sliced_prediction: SAHI's model wrapper stores each result on itself, wraps every
        # box in Python objects, and merges OBB output with axis-aligned boxes. SAHI's own
        # window geometry (get_slice_bboxes) is kept, and image_size = slice size.
        parts: list[RawDetections] = []
        flags: list[BoolArray] = []
        sources: list[IntArray] = []
        for start in range(0, len(windows), self.batch_size):
            chunk = windows[start : start + self.batch_size]
            crops = [arr[y0:y1, x0:x1] for x0, y0, x1, y1 in chunk]
            results = det.predict_batch(
                crops, conf, iou=cfg.iou_threshold, imgsz=(s.slice_height, s.slice_width)
            )
            if len(results) != len(crops):
                raise InferenceError(
                    "model returned a wrong number of results", f"{len(results)} != {len(crops)}"
                )
            for win, res in zip(chunk, results, strict=True):
                shifted = res.shifted(win[0], win[1])
                parts.append(shifted)
                envelope = (
                    geo.polygon_envelopes(geo.obb_to_polygons(shifted.obb))
                    if shifted.obb is not None
                    else shifted.boxes
                )
                flags.append(geo.edge_truncated(envelope, win, w, h))
                sources.append(np.full(len(shifted), len(sources), dtype=np.int64))
        raw = RawDetections.concat(parts, oriented)
        truncated = np.concatenate(flags) if flags else np.zeros(0, dtype=bool)
        source = np.concatenate(sources) if sources else np.zeros(0, dtype=np.int64)
        return raw, truncated, source, len(windows)

    def _merge(
        self,
        raw: RawDetections,
        truncated: BoolArray,
        source: IntArray,
        cfg: PipelineConfig,
        size: tuple[int, int],
        *,
        sliced: bool,
    ) -> Candidates:
        if sliced or cfg.class_agnostic_nms:
            keep = merge_slices(
                raw,
                iou_threshold=cfg.iou_threshold,
                class_agnostic=cfg.class_agnostic_nms,
                truncated=truncated if sliced else None,
                border_ios=self.border_ios,
                sources=source if sliced else None,
            )
        else:
            keep = np.argsort(-raw.scores, kind="stable")
        kept = raw.take(keep)
        w, h = size
        polys = geo.obb_to_polygons(kept.obb) if kept.obb is not None else None
        boxes = geo.polygon_envelopes(polys) if polys is not None else kept.boxes
        boxes = np.clip(boxes, 0, [w, h, w, h])
        return Candidates(kept, polys, boxes)

    def scene_context(self, arr: npt.NDArray[np.uint8]) -> ContextMap | None:
        """Returns the context map of an RGB image, None without a context model."""
        model = self.surface_model()
        return context_map(arr, model) if model is not None else None

    def _decide(
        self,
        det: Detector,
        c: Candidates,
        cfg: PipelineConfig,
        arr: npt.NDArray[np.uint8],
        parts: dict[str, float],
        wanted: frozenset[str] | None,
    ) -> tuple[list[Detection], list[Detection]]:
        size = (arr.shape[1], arr.shape[0])
        names = det.names
        thr = cfg.confidence_threshold
        n = len(c.raw)
        class_names = [names.get(int(k), str(int(k))) for k in c.raw.classes]
        reasoning = cfg.symbolic_reasoning
        if wanted is None or n == 0:
            return unreasoned(c, class_names, thr), []
        ctx = None
        t0 = time.perf_counter()
        if wanted & CONTEXT_FACTS:
            ctx = self.scene_context(arr)
            parts["context"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        own: dict[int, list[str]] = {}
        facts = build_facts(
            class_names,
            c.raw.scores,
            c.boxes,
            c.polys,
            size,
            thr,
            context=ctx,
            wanted=wanted,
            index=own,
        )
        ids = {v: k for k, v in names.items()}
        t2 = time.perf_counter()
        decisions = self.reasoner.decide(reasoning.rules_file, facts, n, set(ids))
        parts["facts"], parts["prolog"] = t2 - t1, time.perf_counter() - t2
        return apply_decisions(c, decisions, class_names, ids, thr, own)


@contextmanager
def _stage(
    timings: dict[str, float], name: str, notify: Callable[[str], None], stage: str | None
) -> Iterator[None]:
    """Announce ``stage`` (when given) and record the block's duration as ``timings[name]``."""
    if stage is not None:
        notify(stage)
    started = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - started


def _draw(
    image: Image.Image | npt.NDArray[np.uint8],
    arr: npt.NDArray[np.uint8],
    kept: list[Detection],
    dropped: list[Detection],
    cfg: PipelineConfig,
    notify: Callable[[str], None],
) -> tuple[Image.Image | None, Image.Image]:
    """Return the annotated image (None when visualization is off) and the thumbnail."""
    pil = (
        image
        if isinstance(image, Image.Image) and image.mode == "RGB"
        else Image.fromarray(arr, "RGB")
    )
    annotated = None
    if cfg.visualization.enabled:
        notify(STAGE_VISUALIZATION)
        vis = cfg.visualization
        annotated = annotate(
            pil, kept, show_labels=vis.show_labels, confidence_display=vis.confidence_display
        )
        if vis.show_suppressed and dropped:
            annotate_suppressed(annotated, dropped)
    return annotated, thumbnail(annotated if annotated is not None else pil)
