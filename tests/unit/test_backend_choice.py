"""Which runtime `BackendLoader` picks, with fake models, exports and timings; the probe
comparison and the export cache on hand-built inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from nesydet.pipeline import onnx_export
from nesydet.pipeline.backends import BackendLoader, pick_fastest
from nesydet.pipeline.detector import Detector, ImageSize, Task
from nesydet.pipeline.errors import ModelLoadError
from nesydet.pipeline.onnx_export import ExportError
from nesydet.pipeline.probes import compare_detections, probe_images
from nesydet.pipeline.types import RawDetections

PROBES = [np.zeros((64, 64, 3), dtype=np.uint8)]


def raw(boxes: list[tuple[float, float, float, float]], scores: list[float]) -> RawDetections:
    return RawDetections(
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        scores=np.array(scores, dtype=np.float64),
        classes=np.zeros(len(scores), dtype=np.int64),
    )


class FakeDetector:
    """Gives the same two boxes on every image, scores shifted by `drift`."""

    def __init__(self, path: Path, device: str, half: bool, drift: float = 0.0) -> None:
        self.path, self.device, self.half, self.drift = path, device, half, drift

    @property
    def names(self) -> Mapping[int, str]:
        return {0: "car"}

    @property
    def task(self) -> Task:
        return "detect"

    @property
    def imgsz(self) -> int:
        return 64

    def predict_batch(
        self, images: Sequence[npt.NDArray[np.uint8]], conf: float, *, iou: float, imgsz: ImageSize
    ) -> list[RawDetections]:
        two = raw([(0, 0, 10, 10), (20, 20, 40, 30)], [0.9 + self.drift, 0.5])
        return [two for _ in images]


class World:
    """The loader's collaborators, recording what was asked of them."""

    def __init__(
        self,
        *,
        export_fails: bool = False,
        onnx_drift: float = 0.0,
        half_drift: float = 0.0,
        cuda_provider: bool = True,
        seconds: Mapping[str, float] | None = None,
    ) -> None:
        self.export_fails = export_fails
        self.onnx_drift = onnx_drift
        self.half_drift = half_drift
        self.cuda = cuda_provider
        self.seconds = seconds or {}
        self.exports: list[Path] = []
        self.opened: list[tuple[str, str, bool]] = []

    def open_model(self, path: Path, device: str, half: bool) -> Detector:
        if path.name == "broken.pt":
            raise ModelLoadError("cannot load model", path.name)
        self.opened.append((path.name, device, half))
        drift = self.onnx_drift if path.suffix == ".onnx" else self.half_drift if half else 0.0
        return FakeDetector(path, device, half, drift)

    def exporter(self, pt: Path, cache_dir: Path | None) -> Path:
        self.exports.append(pt)
        if self.export_fails:
            raise ExportError("cannot export to ONNX", "the package onnx is not installed")
        return pt.with_suffix(".onnx")

    def open_batched(self, path: Path, device: str, half: bool) -> Detector:
        det = self.open_model(path, device, half)
        det.batched = True  # type: ignore[attr-defined]
        return det

    def timer(self, det: Detector, images: Sequence[npt.NDArray[np.uint8]]) -> float:
        assert isinstance(det, FakeDetector)
        if getattr(det, "batched", False):
            return self.seconds["torch-batch-half" if det.half else "torch-batch"]
        if det.half:
            return self.seconds["torch-half"]
        return self.seconds["onnxruntime-cuda" if det.path.suffix == ".onnx" else "torch"]

    def loader(self, backend: str = "auto", **kwargs: Any) -> BackendLoader:
        return BackendLoader(
            backend,
            open_model=self.open_model,
            exporter=self.exporter,
            cuda_provider=lambda: self.cuda,
            timer=self.timer,
            probes=PROBES,
            **kwargs,
        )


PT = Path("/models/demo.pt")


def test_auto_on_cpu_runs_the_matching_export() -> None:
    world = World()
    loader = world.loader()
    det = loader(PT, "cpu")
    assert isinstance(det, FakeDetector)
    assert det.path == PT.with_suffix(".onnx")
    choice = loader.choices[PT]
    assert (choice.backend, choice.model.name) == ("onnxruntime", "demo.onnx")
    assert "matches torch on the probe (4 boxes" in choice.reason


def test_auto_on_cpu_keeps_torch_when_the_export_cannot_be_made() -> None:
    world = World(export_fails=True)
    loader = world.loader()
    det = loader(PT, "cpu")
    assert isinstance(det, FakeDetector)
    assert det.path == PT
    assert loader.choices[PT].backend == "torch"
    assert "the package onnx is not installed" in loader.choices[PT].reason


def test_auto_on_cpu_keeps_torch_when_the_export_disagrees() -> None:
    world = World(onnx_drift=-0.2)
    loader = world.loader()
    assert loader(PT, "cpu").path == PT  # type: ignore[attr-defined]
    reason = loader.choices[PT].reason
    assert "differs from torch on the probe" in reason
    assert "score differs by 0.200" in reason


def test_auto_without_export_missing_uses_only_a_cached_export(tmp_path: Path) -> None:
    pt = tmp_path / "demo.pt"
    pt.write_bytes(b"weights")
    world = World()
    loader = world.loader(export_missing=False)
    loader(pt, "cpu")
    assert world.exports == []
    assert loader.choices[pt].backend == "torch"
    assert "no cached ONNX export" in loader.choices[pt].reason


def test_torch_backend_never_exports() -> None:
    world = World()
    loader = world.loader("torch")
    assert loader(PT, "cpu").path == PT  # type: ignore[attr-defined]
    assert world.exports == []
    assert loader.choices[PT].backend == "torch"


def test_onnx_backend_insists_on_the_export() -> None:
    loader = World().loader("onnx")
    assert loader(PT, "cpu").path == PT.with_suffix(".onnx")  # type: ignore[attr-defined]
    with pytest.raises(ModelLoadError, match="cannot export"):
        World(export_fails=True).loader("onnx")(PT, "cpu")


def test_an_onnx_file_runs_on_onnxruntime_whatever_the_backend() -> None:
    world = World()
    loader = world.loader("torch")
    loader(Path("/models/x.onnx"), "cpu")
    assert loader.choices[Path("/models/x.onnx")].backend == "onnxruntime"
    assert world.exports == []


def test_a_broken_pt_fails_before_any_export() -> None:
    world = World()
    with pytest.raises(ModelLoadError):
        world.loader()(Path("/models/broken.pt"), "cpu")
    assert world.exports == []


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="inference backend"):
        BackendLoader("tensorrt")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        ({"torch-half": 0.010, "onnxruntime-cuda": 0.004}, "onnxruntime-cuda"),
        ({"torch-half": 0.003, "onnxruntime-cuda": 0.004}, "torch-half"),
    ],
)
def test_auto_on_gpu_takes_the_faster_of_onnx_cuda_and_torch_half(
    seconds: dict[str, float], expected: str
) -> None:
    world = World(seconds=seconds)
    loader = world.loader()
    det = loader(PT, "cuda:0")
    choice = loader.choices[PT]
    assert choice.backend == expected
    assert isinstance(det, FakeDetector)
    assert det.half == (expected == "torch-half")
    assert "torch-half" in choice.reason
    assert "onnxruntime-cuda" in choice.reason


def test_auto_on_gpu_without_the_cuda_provider_runs_torch_half() -> None:
    world = World(cuda_provider=False, seconds={"torch-half": 0.01})
    loader = world.loader()
    loader(PT, "cuda:0")
    choice = loader.choices[PT]
    assert choice.backend == "torch-half"
    assert "CUDAExecutionProvider" in choice.reason
    assert world.exports == []


def test_auto_on_gpu_drops_half_precision_that_fails_the_probe() -> None:
    world = World(half_drift=0.05, seconds={"torch": 0.02, "onnxruntime-cuda": 0.03})
    loader = world.loader()
    det = loader(PT, "cuda:0")
    choice = loader.choices[PT]
    assert choice.backend == "torch"
    assert isinstance(det, FakeDetector)
    assert not det.half
    assert "half precision differs on the probe" in choice.reason


def test_pick_fastest_prefers_the_first_on_a_tie() -> None:
    assert pick_fastest({"a": 1.0, "b": 1.0, "c": 2.0}) == "a"
    with pytest.raises(ValueError, match="nothing"):
        pick_fastest({})


def test_compare_detections_tolerances() -> None:
    ref = [raw([(0, 0, 10, 10), (50, 50, 60, 60)], [0.8, 0.055])]
    near = [raw([(0.1, 0, 10, 10.1)], [0.805])]  # the 0.055 box sits at the floor: may go
    assert compare_detections(ref, near).mismatch is None
    assert compare_detections(ref, near).max_score_diff == pytest.approx(0.005)
    moved = [raw([(3, 3, 13, 13)], [0.8])]
    assert "no twin" in (compare_detections(ref, moved).mismatch or "")
    extra = [raw([(0, 0, 10, 10), (100, 100, 120, 120)], [0.8, 0.7])]
    assert "other box" in (compare_detections(ref, extra).mismatch or "")
    assert compare_detections(ref, [*near, *near]).mismatch == "1 != 2 results"


def test_probe_images_are_deterministic() -> None:
    a, b = probe_images(128), probe_images(128)
    assert [x.shape for x in a] == [(128, 128, 3), (128, 128, 3)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[1])


def test_export_cache_is_keyed_by_content_and_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pt = tmp_path / "m.pt"
    pt.write_bytes(b"weights v1")
    made: list[Path] = []

    def fake_export(src: Path, out: Path) -> Path:
        made.append(out)
        out.write_bytes(b"onnx")
        return out

    monkeypatch.setattr(onnx_export, "export_onnx", fake_export)
    first = onnx_export.ensure_export(pt)
    assert first.parent == tmp_path / ".onnx"
    assert first.name == f"m-{onnx_export.sha256_of(pt)[:16]}.onnx"
    assert (tmp_path / ".onnx" / ".gitignore").read_text() == "*\n"
    assert onnx_export.ensure_export(pt) == first
    assert made == [first]
    pt.write_bytes(b"weights v2")  # new weights, new export
    assert onnx_export.cached_export(pt) is None
    second = onnx_export.ensure_export(pt, tmp_path / "cache")
    assert second.parent == tmp_path / "cache"
    assert second != first
    assert len(made) == 2


def test_export_to_an_unwritable_cache_is_an_export_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pt = tmp_path / "m.pt"
    pt.write_bytes(b"weights")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="cannot write"):
        onnx_export.ensure_export(pt, blocker / "cache")


def test_auto_on_gpu_takes_the_batched_adapter_when_it_is_faster_and_agrees() -> None:
    world = World(
        seconds={"torch-half": 0.010, "onnxruntime-cuda": 0.008, "torch-batch-half": 0.002,
                 "torch-batch": 0.003}
    )  # fmt: skip
    loader = world.loader(open_batched=world.open_batched)
    det = loader(PT, "cuda:0")
    choice = loader.choices[PT]
    assert choice.backend == "torch-batch-half"
    assert getattr(det, "batched", False)
    assert "torch-batch 3.0 ms/slice" in choice.reason


def test_auto_on_gpu_drops_a_batched_adapter_that_fails_the_probe() -> None:
    world = World(half_drift=0.05, seconds={"torch": 0.02, "onnxruntime-cuda": 0.03,
                                            "torch-batch": 0.001})  # fmt: skip
    loader = world.loader(open_batched=world.open_batched)
    loader(PT, "cuda:0")
    choice = loader.choices[PT]
    assert choice.backend == "torch-batch"  # the half one drifted, the full one agreed
    assert "torch-batch-half differs on the probe" in choice.reason
