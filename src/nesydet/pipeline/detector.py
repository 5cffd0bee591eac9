"""Model adapters behind the small `Detector` protocol, and safe model resolution/loading."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from nesydet.pipeline.errors import InferenceError, ModelLoadError
from nesydet.pipeline.paths import UnsafePathError, resolve_in_dirs
from nesydet.pipeline.types import RawDetections

Task = Literal["detect", "obb"]
ImageSize = int | tuple[int, int]
MODEL_SUFFIXES = (".pt", ".onnx")
STRIDE = 32


@runtime_checkable
class Detector(Protocol):
    """What the pipeline needs from a model: class names, task, and batched prediction.

    Images are HxWx3 uint8 RGB arrays; results are in each image's own pixel coordinates.
    Implementations must not keep results between calls.
    """

    @property
    def names(self) -> Mapping[int, str]:
        """Returns the class names by class id."""
        ...

    @property
    def task(self) -> Task:
        """Returns "obb" for oriented-box models, "detect" for axis-aligned ones."""
        ...

    @property
    def imgsz(self) -> int:
        """Returns the input size the model was trained at (for full-image inference)."""
        ...

    def predict_batch(
        self, images: Sequence[npt.NDArray[np.uint8]], conf: float, *, iou: float, imgsz: ImageSize
    ) -> list[RawDetections]:
        """Returns one RawDetections per image, filtered at `conf` and NMS-ed at `iou`."""
        ...


def round_to_stride(size: int) -> int:
    """Returns size rounded up to a multiple of the network stride (32)."""
    return max(STRIDE, -(-int(size) // STRIDE) * STRIDE)


def letterboxed(
    images: Sequence[npt.NDArray[np.uint8]], imgsz: ImageSize, stride: int
) -> list[npt.NDArray[np.uint8]]:
    """Returns the images as ultralytics' predictor feeds them: letterboxed to the stride
    when all shapes agree, else to the full size; unchanged when each already has the input
    size (SAHI slices). Its letterbox (resize, grey padding) commutes with the BGR flip the
    predictor makes around it, so RGB goes in as it is."""
    size = (
        (round_to_stride(imgsz[0]), round_to_stride(imgsz[1]))
        if isinstance(imgsz, tuple)
        else (round_to_stride(imgsz),) * 2
    )
    if all(im.shape[:2] == size for im in images):
        return list(images)
    augment: Any = importlib.import_module("ultralytics.data.augment")
    same = len({im.shape for im in images}) == 1
    letterbox = augment.LetterBox(list(size), auto=same, stride=stride)
    return [letterbox(image=im) for im in images]


def resolve_device(device: str) -> str:
    """Returns the torch device to use: "auto" is CUDA when available, else CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def set_cpu_threads(count: int) -> None:
    """Make torch use ``count`` CPU threads.

    Ultralytics sets torch to (cores - 1) threads whenever it sets up a predictor, which on a
    two-core machine halves inference speed; the pipeline calls this before each image.
    """
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


def resolve_model_path(models_dir: Path | Sequence[Path], name: str) -> Path:
    """Returns the real path of model `name` inside models_dir (the first of several that
    has it).

    Raises:
        ModelLoadError: When the name escapes models_dir, has another suffix than .pt or
            .onnx, or the file does not exist.
    """
    try:
        return resolve_in_dirs(models_dir, name, MODEL_SUFFIXES)
    except UnsafePathError as exc:
        raise ModelLoadError("invalid model path", str(exc)) from exc


def _offline_ultralytics() -> Any:
    # Ultralytics probes DNS at import and may pip-install missing backends or send usage
    # events; the service must never touch the network, so default both switches off
    # before the first import (explicit settings by the deployment win).
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    import ultralytics

    return ultralytics


MAX_DET = 2000  # boxes kept per image by every adapter's NMS (ultralytics' default is 300)


@contextmanager
def inference_failure() -> Iterator[None]:
    """Re-raises whatever the runtime raises inside as `InferenceError`: torch, CUDA and
    onnxruntime's pybind layer raise many unrelated types on bad input or lack of memory."""
    try:
        yield
    except Exception as exc:
        raise InferenceError("model inference failed", f"{type(exc).__name__}: {exc}") from exc


class ModelInfo:
    """What every adapter reports of its model, from ``_names``, ``_task`` and ``_imgsz``
    set by its constructor."""

    _names: Mapping[int, str]
    _task: Task
    _imgsz: int

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


class UltralyticsDetector(ModelInfo):
    """Ultralytics YOLO (detect or OBB; .pt or .onnx) as a `Detector`.

    Loads eagerly in the constructor. Predictions are serialised with a lock because the
    ultralytics predictor object is stateful.

    Args:
        path: A model file already confined to the models directory.
        device: "auto", "cpu", "cuda:0", ...
        half: Half precision (a ``.pt`` on a GPU; ignored on the CPU).

    Raises:
        ModelLoadError: When the file cannot be read or is not a detect/OBB YOLO model.
    """

    def __init__(self, path: Path, device: str = "auto", *, half: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            with path.open("rb") as f:
                if not f.read(64):
                    raise ModelLoadError("model file is empty", path.name)
        except OSError as exc:
            raise ModelLoadError("cannot read model file", f"{path.name}: {exc}") from exc
        self.device = resolve_device(device)
        self.half = half and self.device != "cpu"
        yolo_cls = _offline_ultralytics().YOLO
        task_hint = "obb" if "obb" in path.stem.lower() else None
        try:
            model = (
                yolo_cls(str(path), task=task_hint)
                if path.suffix == ".onnx"
                else yolo_cls(str(path))
            )
            names = {int(k): str(v) for k, v in dict(model.names).items()}
            task = str(model.task)
        except ModelLoadError:
            raise
        except Exception as exc:  # torch/pickle/onnx raise many unrelated types for bad files
            raise ModelLoadError(
                "cannot load model", f"{path.name}: {type(exc).__name__}: {exc}"
            ) from exc
        if task not in ("detect", "obb"):
            raise ModelLoadError(
                "unsupported model task", f"{path.name}: {task} (need detect or obb)"
            )
        if not names:
            raise ModelLoadError("model has no class names", path.name)
        self._model = model
        self._names = names
        self._task: Task = "obb" if task == "obb" else "detect"
        imgsz = _onnx_imgsz(path) if path.suffix == ".onnx" else model.overrides.get("imgsz")
        imgsz = imgsz or 640
        self._imgsz = int(max(imgsz) if isinstance(imgsz, list | tuple) else imgsz)

    @property
    def backend(self) -> str:
        """Returns what runs the model: "torch", "torch-half" or "onnxruntime"."""
        if self.path.suffix == ".onnx":
            return "onnxruntime"
        return "torch-half" if self.half else "torch"

    def predict_batch(
        self, images: Sequence[npt.NDArray[np.uint8]], conf: float, *, iou: float, imgsz: ImageSize
    ) -> list[RawDetections]:
        """Returns one RawDetections per image (see `Detector.predict_batch`).

        Raises:
            InferenceError: When the model fails on the input.
        """
        if not images:
            return []
        size: int | list[int] = (
            [round_to_stride(imgsz[0]), round_to_stride(imgsz[1])]
            if isinstance(imgsz, tuple)
            else round_to_stride(imgsz)
        )
        # Ultralytics expects OpenCV's BGR channel order for arrays.
        bgr = [np.ascontiguousarray(img[:, :, ::-1]) for img in images]
        with self._lock:
            try:
                with inference_failure():
                    results = self._model.predict(
                        bgr,
                        imgsz=size,
                        conf=conf,
                        iou=iou,
                        device=self.device,
                        verbose=False,
                        max_det=MAX_DET,
                        # ultralytics warns on every call that names `half`: only name it when on
                        **({"half": True} if self.half else {}),
                    )
            finally:
                predictor = getattr(self._model, "predictor", None)
                if predictor is not None:  # drop references to the last batch (memory)
                    predictor.results = None
                    predictor.batch = None
        return [self._convert(r) for r in results]

    def _convert(self, r: Any) -> RawDetections:
        oriented = self._task == "obb"
        found = r.obb if oriented else r.boxes
        if found is None or len(found) == 0:
            return RawDetections.empty(oriented=oriented)
        return RawDetections(
            boxes=_float64(found.xyxy),
            scores=_float64(found.conf),
            classes=found.cls.cpu().numpy().astype(np.int64),
            obb=_float64(found.xywhr) if oriented else None,
        )


def _float64(tensor: Any) -> npt.NDArray[np.float64]:
    return tensor.cpu().numpy().astype(np.float64)  # type: ignore[no-any-return]


def _onnx_imgsz(path: Path) -> int | None:
    """Returns the input size recorded in an ultralytics ONNX export's metadata, if any."""
    try:
        import onnx

        props = {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
        sizes = [int(v) for v in props.get("imgsz", "").strip("[]").split(",") if v.strip()]
    except (ImportError, OSError, ValueError):
        return None
    return max(sizes) if sizes else None


def load_detector(path: Path, device: str = "auto") -> Detector:
    """Returns the adapter for a model file, chosen by framework (only ultralytics so far).

    Raises:
        ModelLoadError: When the file cannot be loaded.
    """
    return UltralyticsDetector(path, device)
