"""Each constant is defined once: the API's request schema, the pipeline's config, the
suffixes of model and rules files and the final job states cannot drift apart."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nesydet.domain import TERMINAL_STATUSES
from nesydet.pipeline import MODEL_SUFFIXES, RULES_SUFFIXES
from nesydet.pipeline.config import (
    OVERLAP_RANGE,
    SLICE_RANGE,
    UNIT_RANGE,
    PipelineConfig,
    SahiConfig,
)
from nesydet.schemas.jobs import JobConfig
from nesydet.services.registry.files import without_registry_keys

SRC = Path(__file__).resolve().parents[2] / "src" / "nesydet"


def fields_of(model: type[BaseModel] | Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(model):
        return {f.name: f for f in dataclasses.fields(model)}
    return dict(model.model_fields)


# Registered model and rules names: the service resolves them to files (model_path,
# rules_file) before the pipeline sees a config, so only the API has them.
REGISTRY_KEYS = {"": {"model"}, "symbolic_reasoning": {"rules"}}


def test_the_api_config_has_exactly_the_pipelines_fields_and_defaults() -> None:
    assert without_registry_keys(JobConfig().model_dump()) == PipelineConfig().to_dict()
    assert set(fields_of(JobConfig)) - REGISTRY_KEYS[""] == set(fields_of(PipelineConfig))
    for name in ("sahi", "symbolic_reasoning", "visualization"):
        api = JobConfig.model_fields[name].annotation
        pipeline = type(getattr(PipelineConfig(), name))
        only_api = REGISTRY_KEYS.get(name, set())
        assert set(fields_of(api)) - only_api == set(fields_of(pipeline)), name


def test_the_api_limits_are_the_pipelines() -> None:
    schema = JobConfig.model_json_schema()
    props, sahi = schema["properties"], schema["$defs"]["SahiConfig"]["properties"]
    for field, bounds in (
        (props["confidence_threshold"], UNIT_RANGE),
        (props["iou_threshold"], UNIT_RANGE),
        (sahi["slice_width"], SLICE_RANGE),
        (sahi["slice_height"], SLICE_RANGE),
        (sahi["overlap_ratio"], OVERLAP_RANGE),
    ):
        assert (field["minimum"], field["maximum"]) == bounds


def test_a_value_the_api_accepts_the_pipeline_accepts_and_back() -> None:
    low, high = SLICE_RANGE
    for width in (low, high):
        config = JobConfig.model_validate({"sahi": {"slice_width": width}})
        back = PipelineConfig.from_dict(without_registry_keys(config.model_dump()))
        assert back.sahi == SahiConfig(slice_width=width)


def test_suffixes_and_final_states_are_named_in_one_place_only() -> None:
    assert set(MODEL_SUFFIXES) == {".pt", ".onnx"}
    assert ".pl" in RULES_SUFFIXES
    copies = {
        "model suffixes": re.compile(r"""\(\s*["']\.pt["']\s*,\s*["']\.onnx["']\s*\)"""),
        "rules suffixes": re.compile(r"""\(\s*["']\.pl["']"""),
        "final states": re.compile(
            r"""["']completed["']\s*,\s*["']failed["']\s*,\s*["']cancelled"""
        ),
    }
    found: dict[str, list[str]] = {name: [] for name in copies}
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for name, pattern in copies.items():
            if pattern.search(text):
                found[name].append(str(path.relative_to(SRC)))
    assert found == {
        "model suffixes": ["pipeline/detector.py"],
        "rules suffixes": ["pipeline/reasoning/engine.py"],
        "final states": [],
    }
    assert {str(s) for s in TERMINAL_STATUSES} == {"completed", "failed", "cancelled"}
