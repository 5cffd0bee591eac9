"""A lean onnxruntime adapter for ultralytics ONNX exports with dynamic axes.

Ultralytics can run an ``.onnx`` itself, but it builds its session with default options
(every core for each of a worker's processes) and wraps it in its predictor's per-call
set-up. This adapter owns the session (threads, memory arena) and does what
ultralytics' predictor does around it with ultralytics' own functions (``LetterBox``,
``non_max_suppression``, ``scale_boxes``), so its detections are those of the ultralytics
path; `backends` checks that on a probe before it uses it. OBB output goes through
`rotated_nms`, which keeps the same rows as ultralytics' NMS without its dense N x N
overlap matrix, and all post-processing runs in numpy: torch's thread pool stalled each
small tensor op on a busy 2-core machine.
"""

from __future__ import annotations

import ast
import importlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nesydet.pipeline import rotated_nms
from nesydet.pipeline.detector import (
    MAX_DET,
    ImageSize,
    ModelInfo,
    Task,
    inference_failure,
    letterboxed,
)
from nesydet.pipeline.errors import ModelLoadError
from nesydet.pipeline.types import RawDetections

F32 = npt.NDArray[np.float32]


class UnsupportedOnnxError(ModelLoadError):
    """An ONNX file this adapter does not run (static axes, NMS in the graph, not ultralytics'
    detect or OBB); ultralytics' own ONNX path may."""


class OnnxRuntimeDetector(ModelInfo):
    """An ultralytics ONNX export (dynamic axes) on onnxruntime, as a `Detector`.

    Args:
        path: The ``.onnx`` file.
        device: "cpu" or "cuda:N" (the CUDA provider of onnxruntime-gpu).
        threads: CPU cores one call may use; 0: all of them. On the CPU a batch is split
            into that many parts that run side by side, each on one thread: 13 % faster per
            slice than one run on 2 intra-op threads (batches of 4 on 2 busy cores), and
            the same output; a single image runs on one core. On CUDA: the session's
            intra-op threads.
        arena: onnxruntime's CPU memory arena and memory patterns: 10-25 % faster here on
            640 px slices in batches of 4, for about 150 MiB more per resident model.

    Raises:
        ModelLoadError: When the file is not a loadable ultralytics detect/OBB export.
    """

    def __init__(
        self, path: Path, device: str = "cpu", *, threads: int = 0, arena: bool = True
    ) -> None:
        import onnxruntime  # type: ignore[import-untyped]

        self.path = path
        self.device = device
        self._lock = threading.Lock()
        cuda = device.startswith("cuda")
        self._parts = 1 if cuda else max(1, int(threads) or os.cpu_count() or 1)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(0, int(threads)) if cuda else 1
        options.enable_cpu_mem_arena = arena
        options.enable_mem_pattern = arena
        providers: list[Any] = ["CPUExecutionProvider"]
        if cuda:
            index = int(device.partition(":")[2] or 0)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        try:
            self._session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind types
            raise ModelLoadError(
                "cannot load model", f"{path.name}: {type(exc).__name__}: {exc}"
            ) from exc
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        args = _literal(meta.get("args", "")) or {}
        names = _literal(meta.get("names", "")) or {}
        dynamic = all(isinstance(d, str) for d in self._session.get_inputs()[0].shape[::2])
        task = meta.get("task")
        if (
            task not in ("detect", "obb")
            or not isinstance(names, dict)
            or not names
            or not dynamic
            or meta.get("end2end") == "True"
            or (isinstance(args, dict) and args.get("nms"))
        ):
            raise UnsupportedOnnxError(
                "not an ultralytics export with dynamic axes", f"{path.name}: task {task!r}"
            )
        self._names = {int(k): str(v) for k, v in names.items()}
        self._task: Task = "obb" if task == "obb" else "detect"
        sizes = _literal(meta.get("imgsz", "")) or [640]
        self._imgsz = int(max(sizes) if isinstance(sizes, list | tuple) else sizes)
        self.stride = int(meta.get("stride", "32"))
        self._input = self._session.get_inputs()[0].name

    @property
    def backend(self) -> str:
        """Returns "onnxruntime" or "onnxruntime-cuda" (what the session really runs on)."""
        cuda = self._session.get_providers()[0] == "CUDAExecutionProvider"
        return "onnxruntime-cuda" if cuda else "onnxruntime"

    def predict_batch(
        self, images: Sequence[npt.NDArray[np.uint8]], conf: float, *, iou: float, imgsz: ImageSize
    ) -> list[RawDetections]:
        """Returns one RawDetections per image (see `Detector.predict_batch`).

        Raises:
            InferenceError: When the model fails on the input.
        """
        if not images:
            return []
        x = self._preprocess(images, imgsz)
        with self._lock, inference_failure():
            out = self._forward(x)
        oriented = self._task == "obb"
        preds = (
            rotated_nms.non_max_suppression(out, conf, iou, nc=len(self._names), max_det=MAX_DET)
            if oriented
            else _axis_aligned_nms(out, conf, iou)
        )
        shape = x.shape[2:]
        return [
            raw_from_rows(pred, shape, im.shape, oriented=oriented)
            for pred, im in zip(preds, images, strict=True)
        ]

    def _forward(self, x: F32) -> F32:
        """Returns the network's first output for the batch, run in up to `_parts` parts
        side by side (onnxruntime releases the GIL and allows concurrent runs)."""
        parts = np.array_split(x, min(self._parts, len(x)))
        outs: list[Any] = [None] * len(parts)

        def run(k: int) -> None:
            try:
                outs[k] = self._session.run(None, {self._input: parts[k]})[0]
            except Exception as exc:  # raised again in the calling thread
                outs[k] = exc

        others = [threading.Thread(target=run, args=(k,)) for k in range(1, len(parts))]
        for t in others:
            t.start()
        run(0)
        for t in others:
            t.join()
        for out in outs:
            if isinstance(out, Exception):
                raise out
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def _preprocess(
        self, images: Sequence[npt.NDArray[np.uint8]], imgsz: ImageSize
    ) -> npt.NDArray[np.float32]:
        """Returns the batch as the network takes it: letterboxed, NCHW, RGB in [0, 1]."""
        boxed = letterboxed(images, imgsz, self.stride)
        x = np.empty((len(boxed), 3, *boxed[0].shape[:2]), dtype=np.float32)
        for k, im in enumerate(boxed):
            # One pass per image: uint8 to float32, then / 255 in float32 (ultralytics' div_)
            np.divide(im.transpose(2, 0, 1), 255, out=x[k], dtype=np.float32)
        return x


def _axis_aligned_nms(out: npt.NDArray[np.float32], conf: float, iou: float) -> list[F32]:
    """Returns ultralytics' NMS rows (xyxy, score, class) per image of a detect head output."""
    import torch

    # ultralytics' own helper, untyped for our purpose: the point is to call exactly it
    nms: Any = importlib.import_module("ultralytics.utils.nms")
    preds = nms.non_max_suppression(torch.from_numpy(out), conf, iou, None, False, max_det=MAX_DET)
    return [p.numpy() for p in preds]


def raw_from_rows(
    pred: F32, shape: tuple[int, ...], orig_shape: tuple[int, ...], *, oriented: bool
) -> RawDetections:
    """Returns one image's NMS output scaled back to its pixels, as ultralytics' predictors
    and their Results do (OBB: xywhr, and the envelope of its corners as xyxy), with
    ultralytics' own functions on numpy arrays."""
    if len(pred) == 0:
        return RawDetections.empty(oriented=oriented)
    ops: Any = importlib.import_module("ultralytics.utils.ops")
    obb = None
    if oriented:
        rboxes = pred[:, [0, 1, 2, 3, 6]]
        rboxes[:, :4] = ops.scale_boxes(shape, rboxes[:, :4], orig_shape, xywh=True)
        corners = ops.xywhr2xyxyxyxy(rboxes)
        boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        obb = rboxes.astype(np.float64)
    else:
        boxes = ops.scale_boxes(shape, pred[:, :4].copy(), orig_shape)
    return RawDetections(
        boxes=boxes.astype(np.float64),
        scores=pred[:, 4].astype(np.float64),
        classes=pred[:, 5].astype(np.int64),
        obb=obb,
    )


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
