"""The demo model on onnxruntime (its cached ONNX export) against torch: the backend "auto"
chooses, and the detections it gives on a probe scene."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from nesydet.pipeline import ModelLoadError, Pipeline, PipelineConfig
from nesydet.pipeline.backends import BackendLoader
from nesydet.pipeline.onnx_detector import OnnxRuntimeDetector
from nesydet.pipeline.onnx_export import export_path
from tests.pipeline_fixtures import DEMO_MODEL, RULES_DIR, demo_scenes_module, offline_env

# The documented tolerance between the two runtimes (README, "Inference backend"); measured
# on this scene: confidences 1e-6 apart, coordinates 4e-5 px.
CONF_TOL = 1e-4
PIXEL_TOL = 0.01


@pytest.fixture(scope="module", autouse=True)
def _offline() -> None:
    for k, v in offline_env().items():
        os.environ.setdefault(k, v)


def pipeline(backend: str) -> Pipeline:
    # The default cache, models/.onnx: the first test run anywhere in the suite exports once.
    return Pipeline(
        DEMO_MODEL.parent, RULES_DIR, default_model=DEMO_MODEL.name, device="cpu", backend=backend
    )


def test_auto_runs_the_demo_model_on_its_matching_export() -> None:
    pipe = pipeline("auto")
    pipe.warmup()
    assert pipe.backends is not None
    choice = pipe.backends.choices[DEMO_MODEL.resolve()]
    assert choice.backend == "onnxruntime"
    assert choice.model == export_path(DEMO_MODEL.resolve())
    assert "matches torch on the probe" in choice.reason
    # the lean adapter (own session: threads, no arena), not ultralytics' ONNX path
    assert isinstance(pipe.detector(), OnnxRuntimeDetector)


def test_onnx_detections_equal_torchs_on_a_probe_scene() -> None:
    demo_scenes_module()
    from demo_scenes import generate_scene

    scene = generate_scene(1024, 1024, (2024, 5))
    torch_dets = pipeline("torch").run(scene.image, PipelineConfig()).detections
    onnx_dets = pipeline("onnx").run(scene.image, PipelineConfig()).detections
    assert len(torch_dets) == len(onnx_dets) > 20
    for t, o in zip(torch_dets, onnx_dets, strict=True):
        assert (t.class_id, t.class_name) == (o.class_id, o.class_name)
        assert abs(t.confidence - o.confidence) <= CONF_TOL
        assert np.allclose(t.bbox, o.bbox, atol=PIXEL_TOL)
        assert t.obb is not None
        assert o.obb is not None
        assert np.allclose(t.obb[:4], o.obb[:4], atol=PIXEL_TOL)
        assert (t.reasoning and t.reasoning.action) == (o.reasoning and o.reasoning.action)


def test_a_damaged_export_falls_back_to_torch_and_says_why(tmp_path: Path) -> None:
    pt = tmp_path / DEMO_MODEL.name
    shutil.copy(DEMO_MODEL, pt)
    cache = tmp_path / "cache"
    cache.mkdir()
    export_path(pt, cache).write_bytes(b"not an onnx graph")
    loader = BackendLoader("auto", cache_dir=cache)
    det = loader(pt, "cpu")
    assert getattr(det, "backend", None) == "torch"
    assert loader.choices[pt].backend == "torch"
    assert "does not load" in loader.choices[pt].reason
    with pytest.raises(ModelLoadError):
        BackendLoader("onnx", cache_dir=cache)(pt, "cpu")
