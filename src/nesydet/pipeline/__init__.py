"""nesydet detection library: YOLO (+SAHI slicing) -> rotated NMS -> Prolog reasoning -> images.

Self-contained: imports nothing from the rest of the application, so it can be used and
tested alone. Heavy dependencies (ultralytics/torch, pyswip) load lazily on first use.
"""

from nesydet.pipeline import export
from nesydet.pipeline.config import PipelineConfig, ReasoningConfig, SahiConfig, VisualizationConfig
from nesydet.pipeline.detector import MODEL_SUFFIXES, Detector, UltralyticsDetector
from nesydet.pipeline.errors import (
    ImageLoadError,
    InferenceError,
    ModelLoadError,
    PipelineError,
    RulesError,
)
from nesydet.pipeline.image_io import load_image
from nesydet.pipeline.pipeline import STAGES, Pipeline
from nesydet.pipeline.reasoning.engine import RULES_SUFFIXES
from nesydet.pipeline.types import Detection, PipelineResult, RawDetections, ReasoningTrace

__all__ = [
    "MODEL_SUFFIXES",
    "RULES_SUFFIXES",
    "STAGES",
    "Detection",
    "Detector",
    "ImageLoadError",
    "InferenceError",
    "ModelLoadError",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "PipelineResult",
    "RawDetections",
    "ReasoningConfig",
    "ReasoningTrace",
    "RulesError",
    "SahiConfig",
    "UltralyticsDetector",
    "VisualizationConfig",
    "export",
    "load_image",
]
