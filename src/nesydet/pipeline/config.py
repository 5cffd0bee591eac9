"""Per-job pipeline configuration: frozen dataclasses mirroring the API's job `config` JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Self

# The limits of a job's config, here once: the API's request schema takes them from here.
UNIT_RANGE = (0.0, 1.0)  # confidence and IoU thresholds
SLICE_RANGE = (256, 2048)  # slice width and height, pixels
OVERLAP_RANGE = (0.0, 0.5)  # slice overlap ratio
MIN_SLICE, MAX_SLICE = SLICE_RANGE
MAX_OVERLAP = OVERLAP_RANGE[1]


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a boolean, got {value!r}")


def _check_unit(name: str, value: object) -> None:
    # bool is an int subclass; a JSON `true` is never a valid threshold.
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    low, high = UNIT_RANGE
    if not low <= value <= high:
        raise ValueError(f"{name} must be within [{low:g}, {high:g}], got {value}")


def _check_name(name: str, value: object) -> None:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError(f"{name} must be a non-empty file name, got {value!r}")


@dataclass(frozen=True, slots=True)
class SahiConfig:
    """Sliced inference settings; `enabled=False` runs one full-image prediction."""

    enabled: bool = True
    slice_width: int = 640
    slice_height: int = 640
    overlap_ratio: float = 0.2

    def __post_init__(self) -> None:
        _check_bool("sahi.enabled", self.enabled)
        for name in ("slice_width", "slice_height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not MIN_SLICE <= v <= MAX_SLICE:
                raise ValueError(
                    f"sahi.{name} must be an integer in [{MIN_SLICE}, {MAX_SLICE}], got {v!r}"
                )
        v = self.overlap_ratio
        low, high = OVERLAP_RANGE
        if isinstance(v, bool) or not isinstance(v, int | float) or not low <= v <= high:
            raise ValueError(f"sahi.overlap_ratio must be within [0, {MAX_OVERLAP}], got {v!r}")


@dataclass(frozen=True, slots=True)
class ReasoningConfig:
    """Symbolic reasoning settings; `rules_file` is a name inside the pipeline's rules_dir."""

    enabled: bool = True
    rules_file: str = "dota.pl"

    def __post_init__(self) -> None:
        _check_bool("symbolic_reasoning.enabled", self.enabled)
        _check_name("symbolic_reasoning.rules_file", self.rules_file)


@dataclass(frozen=True, slots=True)
class VisualizationConfig:
    """Annotated-image settings."""

    enabled: bool = True
    show_labels: bool = True
    confidence_display: bool = True
    show_suppressed: bool = False  # dropped detections dashed, with the rule that dropped them

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_bool(f"visualization.{f.name}", getattr(self, f.name))


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """Everything one detection job may choose. Defaults match the API's defaults."""

    model_path: str | None = None
    confidence_threshold: float = 0.25
    iou_threshold: float = 0.45
    class_agnostic_nms: bool = False
    sahi: SahiConfig = field(default_factory=SahiConfig)
    symbolic_reasoning: ReasoningConfig = field(default_factory=ReasoningConfig)
    visualization: VisualizationConfig = field(default_factory=VisualizationConfig)

    def __post_init__(self) -> None:
        if self.model_path is not None:
            _check_name("model_path", self.model_path)
        _check_unit("confidence_threshold", self.confidence_threshold)
        _check_unit("iou_threshold", self.iou_threshold)
        _check_bool("class_agnostic_nms", self.class_agnostic_nms)
        for name, cls in (
            ("sahi", SahiConfig),
            ("symbolic_reasoning", ReasoningConfig),
            ("visualization", VisualizationConfig),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"{name} must be a {cls.__name__}")

    @property
    def reasoning(self) -> ReasoningConfig:
        """Returns the symbolic reasoning settings (short alias)."""
        return self.symbolic_reasoning

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Returns a config built from the API's job `config` JSON object.

        Missing keys take their defaults; unknown keys raise ValueError so typos are not
        silently ignored.
        """
        nested: dict[str, type[Any]] = {
            "sahi": SahiConfig,
            "symbolic_reasoning": ReasoningConfig,
            "visualization": VisualizationConfig,
        }
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in nested:
                if not isinstance(value, Mapping):
                    raise ValueError(f"{key} must be an object")
                sub_known = {f.name for f in fields(nested[key])}
                bad = set(value) - sub_known
                if bad:
                    raise ValueError(f"unknown {key} keys: {sorted(bad)}")
                kwargs[key] = nested[key](**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Returns the config as the API's JSON object."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, SahiConfig | ReasoningConfig | VisualizationConfig):
                out[f.name] = {sf.name: getattr(v, sf.name) for sf in fields(v)}
            else:
                out[f.name] = v
        return out
