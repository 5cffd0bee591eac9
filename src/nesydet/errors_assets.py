"""Errors of the model and rules registry (``/api/v1/models``, ``/api/v1/rules``).

Kept apart from :mod:`nesydet.errors` by subject; :mod:`nesydet.error_catalogue` imports this
module so that the errors page lists these codes too.
"""

from __future__ import annotations

from nesydet.errors import AppError, NotFound


class InvalidModel(AppError):
    """The uploaded file is not a model the service can run: not a YOLO detect or OBB model
    (.pt) or export (.onnx), damaged, or too large or slow to inspect; ``details`` says why."""

    status_code = 400
    code = "INVALID_MODEL"
    default_message = "The file is not a usable model"


class InvalidRules(AppError):
    """The uploaded rules file does not load in the sandbox: a syntax error (with its line),
    a forbidden predicate, or no ``decide/3``; ``details`` says where and why."""

    status_code = 400
    code = "INVALID_RULES"
    default_message = "The file is not a usable rules file"


class ModelNotFound(NotFound):
    """No registered model (or version of it) has that name."""

    code = "MODEL_NOT_FOUND"
    default_message = "Model not found"


class RulesNotFound(NotFound):
    """No registered rules set (or version of it) has that name."""

    code = "RULES_NOT_FOUND"
    default_message = "Rules not found"


class VersionExists(AppError):
    """The asset already has a version of that name, or one with the same content."""

    status_code = 409
    code = "VERSION_EXISTS"
    default_message = "That version exists already"


class ModelInUse(AppError):
    """The model version is used by a queued or running job, is the default version or has a
    weight in the routing: it cannot be deleted now."""

    status_code = 409
    code = "MODEL_IN_USE"
    default_message = "The model version is in use"


class RulesInUse(AppError):
    """The rules version is used by a queued or running job or is the default version."""

    status_code = 409
    code = "RULES_IN_USE"
    default_message = "The rules version is in use"


class InvalidRouting(AppError):
    """A routing names a version that does not exist or is deprecated, or has no positive
    weight."""

    status_code = 400
    code = "INVALID_ROUTING"
    default_message = "Invalid routing"


NOT_FOUND: dict[str, type[NotFound]] = {"model": ModelNotFound, "rules": RulesNotFound}
IN_USE: dict[str, type[AppError]] = {"model": ModelInUse, "rules": RulesInUse}
INVALID: dict[str, type[AppError]] = {"model": InvalidModel, "rules": InvalidRules}
