"""A lean onnxruntime adapter for ultralytics ONNX exports with dynamic axes.

Ultralytics can run an ``.onnx`` itself, but it builds its session with default options
(every core for each of a worker's processes) and wraps it in its predictor's per-call
set-up. This adapter owns the session (threads, memory arena) and does what
ultralytics' predictor does around it with ultralytics' own functions (``LetterBox``,
``non_max_suppression``, ``scale_boxes``), so its detections are those of the ultralytics
path; `backends` checks that on a probe before it uses it.
"""

from __future__ import annotations

import ast
import importlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nesydet.pipeline.detector import ImageSize, Task, round_to_stride
from nesydet.pipeline.errors import InferenceError, ModelLoadError
from nesydet.pipeline.types import RawDetections

MAX_DET = 2000  # as UltralyticsDetector


class UnsupportedOnnxError(ModelLoadError):
    """An ONNX file this adapter does not run (static axes, NMS in the graph, not ultralytics'
    detect or OBB); ultralytics' own ONNX path may."""


class OnnxRuntimeDetector:
    """An ultralytics ONNX export (dynamic axes) on onnxruntime, as a `Detector`.

    Args:
        path: The ``.onnx`` file.
        device: "cpu" or "cuda:N" (the CUDA provider of onnxruntime-gpu).
        threads: Intra-op threads of the session; 0: onnxruntime's default (all cores).
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
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(0, int(threads))
        options.enable_cpu_mem_arena = arena
        options.enable_mem_pattern = arena
        providers: list[Any] = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
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
    def names(self) -> Mapping[int, str]:
        """Returns the class names by class id."""
        return self._names

    @property
    def task(self) -> Task:
        """Returns the model task, "detect" or "obb"."""
        return self._task

    @property
    def imgsz(self) -> int:
        """Returns the training input size."""
        return self._imgsz

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
        import torch

        # ultralytics' own helpers, untyped for our purpose: the point is to call exactly them
        nms: Any = importlib.import_module("ultralytics.utils.nms")
        x = self._preprocess(images, imgsz)
        with self._lock:
            try:
                (out,) = self._session.run(None, {self._input: x})[:1]
            except Exception as exc:  # onnxruntime raises its own pybind types
                raise InferenceError(
                    "model inference failed", f"{type(exc).__name__}: {exc}"
                ) from exc
        oriented = self._task == "obb"
        preds = nms.non_max_suppression(
            torch.from_numpy(out),
            conf,
            iou,
            None,
            False,
            max_det=MAX_DET,
            nc=len(self._names) if oriented else 0,
            rotated=oriented,
        )
        shape = x.shape[2:]
        return [
            _raw(pred, shape, im.shape, oriented=oriented)
            for pred, im in zip(preds, images, strict=True)
        ]

    def _preprocess(
        self, images: Sequence[npt.NDArray[np.uint8]], imgsz: ImageSize
    ) -> npt.NDArray[np.float32]:
        """Returns the batch as the network takes it: letterboxed, NCHW, RGB in [0, 1]."""
        augment: Any = importlib.import_module("ultralytics.data.augment")
        size = (
            [round_to_stride(imgsz[0]), round_to_stride(imgsz[1])]
            if isinstance(imgsz, tuple)
            else [round_to_stride(imgsz)] * 2
        )
        # As ultralytics' predictor: letterbox to the stride when all shapes agree, else to
        # the full size. Its letterbox (resize, grey padding) commutes with the BGR flip it
        # makes around it, so RGB goes in as it is.
        same = len({im.shape for im in images}) == 1
        letterbox = augment.LetterBox(size, auto=same, stride=self.stride)
        batch = np.stack([letterbox(image=im) for im in images]).transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(batch, dtype=np.float32)
        x /= 255  # in float32, as ultralytics' div_(255)
        return x


def _raw(
    pred: Any, shape: tuple[int, ...], orig_shape: tuple[int, ...], *, oriented: bool
) -> RawDetections:
    """Returns one image's NMS output scaled back to its pixels, as ultralytics' predictors
    and their Results do (OBB: xywhr, and the envelope of its corners as xyxy)."""
    if len(pred) == 0:
        return RawDetections.empty(oriented=oriented)
    import torch

    ops: Any = importlib.import_module("ultralytics.utils.ops")
    if oriented:
        rboxes = torch.cat([pred[:, :4], pred[:, -1:]], dim=-1)
        rboxes[:, :4] = ops.scale_boxes(shape, rboxes[:, :4], orig_shape, xywh=True)
        corners = ops.xywhr2xyxyxyxy(rboxes)
        xs, ys = corners[..., 0], corners[..., 1]
        boxes = torch.stack([xs.amin(1), ys.amin(1), xs.amax(1), ys.amax(1)], -1)
        obb = _float64(rboxes)
    else:
        boxes = ops.scale_boxes(shape, pred[:, :4].clone(), orig_shape)
        obb = None
    return RawDetections(
        boxes=_float64(boxes),
        scores=_float64(pred[:, 4]),
        classes=pred[:, 5].numpy().astype(np.int64),
        obb=obb,
    )


def _float64(tensor: Any) -> npt.NDArray[np.float64]:
    return tensor.cpu().numpy().astype(np.float64)  # type: ignore[no-any-return]


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
