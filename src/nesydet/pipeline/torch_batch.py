"""The ``.pt``'s network on a GPU with the whole batch on the device.

Ultralytics' predictor letterboxes each image on the CPU, sends it, and builds a ``Results``
object per image; on a GPU that work, not the network, bounds a small model's throughput (the
demo model ran at 10 % of its raw forward rate through it on an H200). This adapter stacks
the slices once, sends them in one copy, scales them to [0, 1] on the device, runs the
network and ultralytics' own NMS there, and brings back only the kept rows. `backends` uses
it on a GPU only when it gives the predictor's detections on the probe scenes.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nesydet.pipeline.detector import (
    MAX_DET,
    ImageSize,
    ModelInfo,
    Task,
    UltralyticsDetector,
    inference_failure,
    letterboxed,
)
from nesydet.pipeline.onnx_detector import raw_from_rows
from nesydet.pipeline.types import RawDetections


class TorchBatchDetector(ModelInfo):
    """A YOLO ``.pt`` (detect or OBB) as a `Detector` whose batches stay on the device.

    Args:
        path: The ``.pt`` file.
        device: A CUDA device ("cuda:0"); "cpu" works too (tests), without the gain.
        half: Half precision weights and inputs.

    Raises:
        ModelLoadError: As `UltralyticsDetector`.
    """

    def __init__(self, path: Path, device: str = "cuda:0", *, half: bool = False) -> None:
        import torch

        loaded = UltralyticsDetector(path, device)  # checks the file, task, names, size
        self.path = path
        self.device = loaded.device
        self.half = half and self.device != "cpu"
        self._names = dict(loaded.names)
        self._task: Task = loaded.task
        self._imgsz = loaded.imgsz
        model: Any = loaded._model.model  # the nn.Module under ultralytics' wrapper
        net = model.fuse() if hasattr(model, "fuse") else model
        self._net = net.to(self.device).eval()
        if self.half:
            self._net = self._net.half()
        self.stride = int(max(getattr(model, "stride", [32]))) or 32
        self._dtype = torch.float16 if self.half else torch.float32
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        """Returns "torch-batch-half" or "torch-batch"."""
        return "torch-batch-half" if self.half else "torch-batch"

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

        batch = np.stack(letterboxed(images, imgsz, self.stride))
        nms: Any = importlib.import_module("ultralytics.utils.nms")
        oriented = self._task == "obb"
        with self._lock, torch.inference_mode(), inference_failure():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).to(self._dtype).div_(255)
            out = self._net(x)
            out = out[0] if isinstance(out, list | tuple) else out
            preds = nms.non_max_suppression(
                out.float(), conf, iou, None, False, max_det=MAX_DET,
                nc=len(self._names), rotated=oriented,
            )  # fmt: skip
            rows = [p.cpu().numpy() for p in preds]
        shape = batch.shape[1:3]
        return [
            raw_from_rows(pred, shape, im.shape, oriented=oriented)
            for pred, im in zip(rows, images, strict=True)
        ]
