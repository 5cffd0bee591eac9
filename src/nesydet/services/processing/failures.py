"""How a job's run can end early: a failure with the spec's code, or the job taken away."""

from __future__ import annotations

from nesydet.db.models import JobFile
from nesydet.pipeline import (
    ImageLoadError,
    InferenceError,
    ModelLoadError,
    PipelineError,
    RulesError,
)


class JobFailure(Exception):
    """A job cannot go on; ``retryable`` failures are tried again later."""

    def __init__(self, code: str, message: str, details: str = "", *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retryable = retryable


class JobLost(Exception):
    """The job was cancelled, or another worker took it over: stop without writing."""


# Pipeline errors as Workflow 3 names them: (code, message, retried?).
_PIPELINE_FAILURES: dict[type[PipelineError], tuple[str, str, bool]] = {
    ModelLoadError: ("MODEL_LOAD_ERROR", "Failed to load YOLO model", False),
    RulesError: ("RULES_ERROR", "Symbolic reasoning failed", False),
    ImageLoadError: ("FILE_ERROR", "Could not read an image", False),
    InferenceError: ("INFERENCE_ERROR", "Inference failed", True),
}


def pipeline_failure(exc: PipelineError, job_file: JobFile | None) -> JobFailure:
    """Return the job failure for a pipeline error, naming the image it happened on."""
    code, message, retryable = _PIPELINE_FAILURES.get(type(exc), (exc.code, exc.message, False))
    where = ""
    if job_file is not None and code != "MODEL_LOAD_ERROR":
        where = f"{job_file.file.filename} ({job_file.file_id}): "
    return JobFailure(code, message, where + (exc.details or exc.message), retryable=retryable)


def storage_failure(message: str, exc: Exception) -> JobFailure:
    """Return the retryable STORAGE_ERROR for a storage or database write that failed."""
    return JobFailure("STORAGE_ERROR", message, str(exc) or repr(exc), retryable=True)


def file_failure(job_file_name: str, file_id: str, why: str) -> JobFailure:
    """Return the FILE_ERROR of an input image that cannot be read (never retried)."""
    return JobFailure(
        "FILE_ERROR", "Could not read an image", f"{job_file_name} ({file_id}): {why}",
        retryable=False,
    )  # fmt: skip
