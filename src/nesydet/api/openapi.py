"""Post-processing of the generated OpenAPI document."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from nesydet.schemas.common import ErrorResponse, error_example

_VALIDATION_EXAMPLE = error_example(
    "VALIDATION_ERROR",
    "Request validation failed",
    "limit: Input should be less than or equal to 100",
    errors=[
        {
            "field": "limit",
            "location": "query",
            "error_code": "INVALID_VALUE",
            "error": "Input should be less than or equal to 100",
        }
    ],
)


_OTHER_EXAMPLE = error_example(
    "SERVICE_UNAVAILABLE", "Service unavailable", "the database cannot be reached"
)


def _errors_as_json(responses: dict[str, Any], ref: str) -> None:
    """Errors are always the JSON envelope, also on routes that answer text or images."""
    for status, entry in responses.items():
        if not status.startswith(("4", "5")) or "content" not in entry:
            continue
        content = entry["content"]
        media = content.setdefault("application/json", {})
        media["schema"] = {"$ref": ref}
        for other in [k for k in content if k != "application/json"]:
            del content[other]


def install_openapi(app: FastAPI) -> None:
    """Replace FastAPI's 422 responses by the 400 envelope this API really sends."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        ref = "#/components/schemas/ErrorResponse"
        if "ErrorResponse" not in components:
            components["ErrorResponse"] = ErrorResponse.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        for methods in schema.get("paths", {}).values():
            for op in methods.values():
                responses = op.get("responses", {})
                _errors_as_json(responses, ref)
                # Any route may fail in ways it does not list (401, 429, 500, 503, ...): always
                # with the same envelope.
                responses.setdefault(
                    "default",
                    {
                        "description": "Any other error: 401, 403, 429, 500, 503, ...",
                        "content": {
                            "application/json": {"schema": {"$ref": ref}, "example": _OTHER_EXAMPLE}
                        },
                    },
                )
                if responses.pop("422", None) is None:
                    continue
                entry = responses.setdefault(
                    "400",
                    {
                        "description": "Request validation failed",
                        "content": {"application/json": {"schema": {"$ref": ref}, "examples": {}}},
                    },
                )
                media = entry["content"]["application/json"]
                media.setdefault("examples", {})["VALIDATION_ERROR"] = {
                    "summary": "Request validation failed",
                    "value": _VALIDATION_EXAMPLE,
                }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
