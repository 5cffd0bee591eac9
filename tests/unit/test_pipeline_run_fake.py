"""Pipeline.run end to end with a fake detector (no model, no Prolog): slicing, NMS, results."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from nesydet.pipeline import (
    STAGES,
    Pipeline,
    PipelineConfig,
    ReasoningConfig,
    SahiConfig,
    VisualizationConfig,
)
from nesydet.pipeline.detector import Detector, ImageSize, Task
from nesydet.pipeline.geometry import slice_windows
from nesydet.pipeline.types import RawDetections
from tests.pipeline_fixtures import FAKE_NAMES, FakeDetector, paint_blob, rotated_rect

NO_REASONING = ReasoningConfig(enabled=False)


def make_pipeline(tmp_path: Path, task: Task = "detect") -> tuple[Pipeline, FakeDetector]:
    (tmp_path / "fake.pt").write_bytes(b"fake model")
    fake = FakeDetector(task)

    def factory(path: Path, device: str) -> Detector:
        return fake

    return Pipeline(
        tmp_path, tmp_path, default_model="fake.pt", detector_factory=factory, batch_size=3
    ), fake


def scene() -> tuple[Image.Image, list[tuple[int, float, list[tuple[float, float]]]]]:
    img = Image.new("RGB", (1500, 1100), (90, 100, 80))
    objs = [
        (0, 0.9, rotated_rect(100, 100, 60, 50, 0.3)),
        # straddles the x-overlap between the first two slices (512..640): seen by both
        (1, 0.8, rotated_rect(575, 300, 50, 14, 0.7)),
        # cut by the first slice's right edge (640) but whole in the second slice
        (4, 0.7, rotated_rect(632, 700, 30, 14, 0.0)),
        (2, 0.95, rotated_rect(1300, 900, 40, 40, 0.0)),
        (4, 0.2, rotated_rect(900, 500, 16, 8, 1.0)),  # below the 0.25 threshold
    ]
    for cls, score, corners in objs:
        paint_blob(img, cls, score, corners)
    return img, objs


@pytest.mark.parametrize("task", ["detect", "obb"])
def test_sliced_run_finds_each_object_once(tmp_path: Path, task: Task) -> None:
    pipe, fake = make_pipeline(tmp_path, task)
    img, objs = scene()
    stages: list[str] = []
    res = pipe.run(img, PipelineConfig(symbolic_reasoning=NO_REASONING), on_stage=stages.append)
    assert stages == [STAGES[0], STAGES[1], STAGES[3]]
    assert res.stats["slices"] == len(slice_windows(1500, 1100, 640, 640, 0.2)) == 6
    assert fake.calls == [3, 3]  # slices go to the model in batches
    assert res.stats["raw"] > len(res.detections)  # duplicates from overlaps were merged
    found = sorted((d.class_name, round(d.confidence, 2)) for d in res.detections)
    assert found == sorted((FAKE_NAMES[c], round(s, 2)) for c, s, _ in objs if s >= 0.25)
    for d in res.detections:
        assert d.reasoning is None
        x0, y0, x1, y1 = d.bbox
        assert 0 <= x0 < x1 <= 1500
        assert 0 <= y0 < y1 <= 1100
        if task == "obb":
            assert d.obb is not None
            assert d.polygon is not None
            assert len(d.polygon) == 4
        else:
            assert d.obb is None
            assert d.polygon is None
    ship = next(d for d in res.detections if d.class_name == "ship")
    corners = np.array(objs[1][2])
    want = (*corners.min(axis=0), *corners.max(axis=0))
    assert ship.bbox == pytest.approx(want, abs=2.0)
    if task == "obb":
        assert ship.obb is not None
        assert ship.obb[2] * ship.obb[3] == pytest.approx(50 * 14, rel=0.25)
        assert math.isfinite(ship.obb[4])
    assert set(res.timings) == {"inference", "nms", "reasoning", "visualization"}
    assert res.image_size == (1500, 1100)
    assert res.model_name == "fake"
    assert res.annotated is not None
    assert res.annotated.size == (1500, 1100)
    assert max(res.thumbnail.size) == 256
    confs = [d.confidence for d in res.detections]
    assert confs == sorted(confs, reverse=True)


def test_full_image_mode_uses_training_size(tmp_path: Path) -> None:
    pipe, fake = make_pipeline(tmp_path)
    img, _ = scene()
    cfg = PipelineConfig(sahi=SahiConfig(enabled=False), symbolic_reasoning=NO_REASONING)
    res = pipe.run(np.asarray(img), cfg)
    assert res.stats["slices"] == 1
    assert fake.calls == [1]
    assert len(res.detections) == 4


def test_visualization_disabled_still_gives_thumbnail(tmp_path: Path) -> None:
    pipe, _ = make_pipeline(tmp_path)
    img, _ = scene()
    stages: list[str] = []
    cfg = PipelineConfig(
        symbolic_reasoning=NO_REASONING, visualization=VisualizationConfig(enabled=False)
    )
    res = pipe.run(img, cfg, on_stage=stages.append)
    assert res.annotated is None
    assert res.thumbnail.size == (256, 188)
    assert STAGES[3] not in stages


class TwoLabelsDetector(FakeDetector):
    """Reports the same box twice with two classes, as a confused model would."""

    def predict_batch(
        self, images: Sequence[npt.NDArray[np.uint8]], conf: float, *, iou: float, imgsz: ImageSize
    ) -> list[RawDetections]:
        obb = np.array([[100.0, 100.0, 40.0, 20.0, 0.0], [101.0, 100.0, 40.0, 20.0, 0.05]])
        boxes = np.array([[80.0, 90, 120, 110], [81.0, 90, 121, 110]])
        one = RawDetections(boxes, np.array([0.9, 0.6]), np.array([4, 5]), obb)
        return [one for _ in images]


def test_class_agnostic_nms(tmp_path: Path) -> None:
    (tmp_path / "fake.pt").write_bytes(b"fake model")
    pipe = Pipeline(
        tmp_path,
        tmp_path,
        default_model="fake.pt",
        detector_factory=lambda p, d: TwoLabelsDetector("obb"),
    )
    img = Image.new("RGB", (300, 300))
    aware = pipe.run(img, PipelineConfig(symbolic_reasoning=NO_REASONING))
    agnostic = pipe.run(
        img, PipelineConfig(class_agnostic_nms=True, symbolic_reasoning=NO_REASONING)
    )
    assert [d.class_name for d in aware.detections] == ["small_vehicle", "large_vehicle"]
    assert [d.class_name for d in agnostic.detections] == ["small_vehicle"]


def test_on_stage_exception_propagates(tmp_path: Path) -> None:
    pipe, _ = make_pipeline(tmp_path)

    def abort(stage: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipe.run(scene()[0], PipelineConfig(symbolic_reasoning=NO_REASONING), on_stage=abort)


def test_rejects_bad_input(tmp_path: Path) -> None:
    pipe, _ = make_pipeline(tmp_path)
    with pytest.raises(ValueError, match="HxWx3"):
        pipe.run(
            np.zeros((10, 10), dtype=np.uint8), PipelineConfig(symbolic_reasoning=NO_REASONING)
        )
