"""Shared response pieces: timestamps, the success wrapper and the error envelope."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer


def iso_z(value: datetime) -> str:
    """Return ``2026-02-02T18:54:57.324Z``: UTC, milliseconds, a Z suffix."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[
    datetime,
    PlainSerializer(iso_z, return_type=str, when_used="json"),
    Field(json_schema_extra={"example": "2026-02-02T18:54:57.324Z"}),
]


class ErrorItem(BaseModel):
    """One failing item of a request: a file of an upload or a field of a config."""

    model_config = ConfigDict(extra="allow")

    filename: str | None = Field(default=None, description="the file, for upload errors")
    field: str | None = Field(default=None, description="the field path, for config errors")
    error_code: str = Field(description="machine-readable code of this item's failure")
    error: str = Field(description="human-readable reason")


ERRORS_PAGE = "/docs/errors"


def documentation_url(code: str) -> str:
    """Return where the errors page (served by the API itself, offline) explains ``code``."""
    return f"{ERRORS_PAGE}#{code}"


def first_field(errors: list[dict[str, Any]] | None) -> str | None:
    """Return the field of the first failing item that names one (validation errors)."""
    for item in errors or ():
        field = item.get("field")
        if isinstance(field, str) and field:
            return field
    return None


class ErrorDetail(BaseModel):
    """The same error as a nested object, for clients written against ``error.code``."""

    code: str
    message: str
    details: str | None = None
    field: str | None = Field(
        default=None, description="for validation errors: the (first) failing field's path"
    )
    timestamp: Timestamp
    request_id: str
    documentation_url: str = Field(
        description="the errors page of this service, at this code's entry",
        json_schema_extra={"example": "/docs/errors#JOB_NOT_FOUND"},
    )


class ErrorResponse(BaseModel):
    """The error envelope every failing request gets."""

    status: Literal["error"] = "error"
    message: str = Field(description="human-readable error message")
    error_code: str = Field(description="machine-readable code, e.g. UPLOAD_NOT_FOUND")
    details: str | None = Field(default=None, description="additional context")
    timestamp: Timestamp
    request_id: str = Field(description="the request's X-Request-ID")
    errors: list[ErrorItem] | None = Field(
        default=None, description="each failing item, when items fail one by one"
    )
    error: ErrorDetail


def error_example(
    code: str, message: str, details: str | None = None, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Return an example error body for the OpenAPI document."""
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "error_code": code,
        "details": details,
        "timestamp": "2026-02-02T18:54:57.324Z",
        "request_id": "req_abc123def456",
    }
    if errors is not None:
        body["errors"] = errors
    body["error"] = {
        "code": code,
        "message": message,
        "details": details,
        "field": first_field(errors),
        "timestamp": body["timestamp"],
        "request_id": body["request_id"],
        "documentation_url": documentation_url(code),
    }
    return body


def multipart_body(
    properties: dict[str, dict[str, Any]],
    required: list[str],
    encoding: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Return an ``openapi_extra`` that documents a multipart/form-data request body (the
    routes read their bodies as streams, so FastAPI cannot derive it); `encoding` gives a
    field's content types."""
    media: dict[str, Any] = {
        "schema": {"type": "object", "required": required, "properties": properties}
    }
    if encoding:
        media["encoding"] = {k: {"contentType": v} for k, v in encoding.items()}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": media}}}


def error_responses(*examples: tuple[int, str, str, str | None]) -> dict[int | str, dict[str, Any]]:
    """Return FastAPI ``responses`` entries: per status, the envelope model and named examples."""
    out: dict[int | str, dict[str, Any]] = {}
    for status, code, message, details in examples:
        entry = out.setdefault(
            status,
            {"model": ErrorResponse, "content": {"application/json": {"examples": {}}}},
        )
        entry["content"]["application/json"]["examples"][code] = {
            "summary": message,
            "value": error_example(code, message, details),
        }
        entry.setdefault("description", message)
    return out
