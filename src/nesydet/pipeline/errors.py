"""Errors raised by the detection pipeline, each with a stable machine-readable code."""

from __future__ import annotations

from typing import ClassVar


class PipelineError(Exception):
    """Base class of pipeline failures; `code` is stable and meant for API error bodies.

    Args:
        message: Short human-readable summary, safe to show to API clients.
        details: Longer diagnostic text (Prolog messages, exception text); may be empty.
    """

    code: ClassVar[str] = "PIPELINE_ERROR"

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self) -> tuple[type[PipelineError], tuple[str, str]]:
        # Celery pickles task exceptions; keep details across the process boundary.
        return (type(self), (self.message, self.details))

    def __str__(self) -> str:
        return f"{self.message}: {self.details}" if self.details else self.message


class ModelLoadError(PipelineError):
    """The model file is missing, outside models_dir, unreadable or not a valid model."""

    code: ClassVar[str] = "MODEL_LOAD_ERROR"


class RulesError(PipelineError):
    """The rules file is missing, invalid, unsafe, too slow or produced unusable output."""

    code: ClassVar[str] = "RULES_ERROR"


class InferenceError(PipelineError):
    """Running the model on the image failed."""

    code: ClassVar[str] = "INFERENCE_ERROR"


class ImageLoadError(PipelineError):
    """The image file cannot be decoded."""

    code: ClassVar[str] = "INVALID_IMAGE"
