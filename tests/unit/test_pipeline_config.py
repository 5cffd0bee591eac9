"""Job configuration: defaults, validation, JSON round trip; error types."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from nesydet.pipeline import (
    InferenceError,
    ModelLoadError,
    PipelineConfig,
    PipelineError,
    ReasoningConfig,
    RulesError,
    SahiConfig,
    VisualizationConfig,
)

SPEC_EXAMPLE: dict[str, Any] = {
    "model_path": "best.pt",
    "confidence_threshold": 0.25,
    "iou_threshold": 0.45,
    "sahi": {"enabled": True, "slice_width": 640, "slice_height": 640, "overlap_ratio": 0.2},
    "symbolic_reasoning": {"enabled": True, "rules_file": "dota.pl"},
    "visualization": {"enabled": True, "show_labels": True, "confidence_display": True},
}


def test_defaults() -> None:
    c = PipelineConfig()
    assert c.model_path is None
    assert c.confidence_threshold == 0.25
    assert c.iou_threshold == 0.45
    assert c.class_agnostic_nms is False
    assert c.sahi == SahiConfig(True, 640, 640, 0.2)
    assert c.reasoning == ReasoningConfig(True, "dota.pl")
    assert c.visualization == VisualizationConfig(True, True, True)


def test_from_spec_example_round_trip() -> None:
    c = PipelineConfig.from_dict(SPEC_EXAMPLE)
    assert c.model_path == "best.pt"
    extensions = {"class_agnostic_nms": False}
    visualization = {**SPEC_EXAMPLE["visualization"], "show_suppressed": False}
    assert c.to_dict() == {**SPEC_EXAMPLE, **extensions, "visualization": visualization}
    assert PipelineConfig.from_dict({}) == PipelineConfig()


@pytest.mark.parametrize(
    "bad",
    [
        {"confidence_threshold": 1.5},
        {"confidence_threshold": -0.1},
        {"iou_threshold": True},
        {"iou_threshold": "0.5"},
        {"confidence_threshold": float("nan")},
        {"sahi": {"slice_width": 255}},
        {"sahi": {"slice_height": 4096}},
        {"sahi": {"slice_width": 640.0}},
        {"sahi": {"overlap_ratio": 0.6}},
        {"sahi": {"overlap_ratio": -0.01}},
        {"sahi": {"enabled": "yes"}},
        {"symbolic_reasoning": {"rules_file": ""}},
        {"visualization": {"show_labels": 1}},
        {"model_path": ""},
        {"unknown": 1},
        {"sahi": {"slice": 640}},
        {"sahi": 5},
    ],
)
def test_validation(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        PipelineConfig.from_dict(bad)


def test_limits_are_inclusive() -> None:
    SahiConfig(slice_width=256, slice_height=2048, overlap_ratio=0.5)
    SahiConfig(overlap_ratio=0)
    PipelineConfig(confidence_threshold=0, iou_threshold=1)


def test_frozen() -> None:
    c = PipelineConfig()
    with pytest.raises(AttributeError):
        c.iou_threshold = 0.3  # type: ignore[misc]


def test_error_codes_and_pickling() -> None:
    assert ModelLoadError.code == "MODEL_LOAD_ERROR"
    assert RulesError.code == "RULES_ERROR"
    assert InferenceError.code == "INFERENCE_ERROR"
    e = RulesError("cannot load rules file", "syntax error at line 3")
    assert isinstance(e, PipelineError)
    back = pickle.loads(pickle.dumps(e))  # noqa: S301 - our own object
    assert type(back) is RulesError
    assert back.message == e.message
    assert back.details == e.details
    assert "line 3" in str(back)
