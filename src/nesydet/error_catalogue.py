"""Every error code the service answers with, from the error classes of :mod:`nesydet.errors`:
what the errors page (``/docs/errors``) lists, so that it never drifts from the code."""

from __future__ import annotations

import nesydet.errors_assets  # noqa: F401  # its classes are listed too
from nesydet.errors import AppError

# The ``error.code`` of a failed job (the status endpoint): not a failing request, a failed
# run. code -> (meaning, retried before the job fails).
JOB_FAILURES: dict[str, tuple[str, bool]] = {
    "MODEL_LOAD_ERROR": ("The model file is missing, unreadable or not a valid model", False),
    "RULES_ERROR": ("The rules file is missing, invalid, unsafe or too slow", False),
    "FILE_ERROR": ("An input image is missing from storage or does not decode", False),
    "INFERENCE_ERROR": ("Running the model failed, or the job ran past its time limit", True),
    "STORAGE_ERROR": ("Results could not be written to, or images read from, storage", True),
}


def error_classes() -> list[type[AppError]]:
    """Return every error class with a code of its own, in definition order."""
    found: list[type[AppError]] = [AppError]
    pending = [AppError]
    while pending:
        for sub in pending.pop(0).__subclasses__():
            if sub not in found:
                found.append(sub)
                pending.append(sub)
    return found


def error_catalogue() -> dict[str, tuple[int, str]]:
    """Return every error code a request can get: code -> (HTTP status, meaning).

    The meaning is the class's own docstring, else its default message; a code two classes
    share (VALIDATION_ERROR) is listed once, by the first.
    """
    out: dict[str, tuple[int, str]] = {}
    for cls in error_classes():
        doc = (cls.__dict__.get("__doc__") if cls is not AppError else None) or ""
        meaning = " ".join(doc.split("\n\n")[0].replace("``", "`").split())
        out.setdefault(cls.code, (cls.status_code, meaning or cls.default_message))
    return out
