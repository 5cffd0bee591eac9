"""Renders every error, expected or not, in the spec's error envelope."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ExceptionHandler

from nesydet.errors import (
    AppError,
    ComparisonNotFound,
    DeliveryNotFound,
    FileNotFound,
    Forbidden,
    HttpError,
    InternalError,
    JobNotFound,
    KeyNotFound,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    RateLimitExceeded,
    RequestTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    UploadNotFound,
    UserNotFound,
    WebhookNotFound,
)
from nesydet.observability.logging import request_id_var
from nesydet.schemas.common import documentation_url, first_field, iso_z

log = logging.getLogger(__name__)

# The code of an HTTP-level failure, by status: from the error classes, so that the errors
# page lists them too.
_HTTP_CODES = {
    cls.status_code: (cls.code, cls.default_message)
    for cls in (
        AppError,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        NotAcceptable,
        RequestTooLarge,
        UnsupportedMediaType,
        RateLimitExceeded,
        InternalError,
        ServiceUnavailable,
    )
}


def error_body(
    *,
    code: str,
    message: str,
    details: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the envelope: flat fields per the spec, the same again under ``error`` (with
    the spec's ``field``, for validation errors, and ``documentation_url``)."""
    timestamp = iso_z(datetime.now(UTC))
    request_id = request_id_var.get() or "-"
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "error_code": code,
        "details": details,
        "timestamp": timestamp,
        "request_id": request_id,
    }
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    body["error"] = {
        "code": code,
        "message": message,
        "details": details,
        "field": first_field(errors),
        "timestamp": timestamp,
        "request_id": request_id,
        "documentation_url": documentation_url(code),
    }
    return body


def error_response(
    status: int,
    *,
    code: str,
    message: str,
    details: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """Return a JSON response carrying the error envelope."""
    body = error_body(code=code, message=message, details=details, errors=errors, extra=extra)
    return JSONResponse(body, status_code=status, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) if parts else ".".join(str(p) for p in loc)


def validation_items(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Return one item per failing field, with its dotted path, e.g. ``config.iou_threshold``."""
    items = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        items.append(
            {
                "field": _field_path(loc),
                "location": str(loc[0]) if loc else "body",
                "error_code": "INVALID_VALUE",
                "error": str(err.get("msg", "invalid value")),
            }
        )
    return items


async def _app_error(request: Request, exc: AppError) -> JSONResponse:
    level = logging.ERROR if exc.status_code >= 500 else logging.INFO
    log.log(level, "request failed", extra={"error_code": exc.code, "details": exc.details})
    return error_response(
        exc.status_code,
        code=exc.code,
        message=exc.message,
        details=exc.details,
        errors=exc.errors,
        headers=exc.headers,
    )


# A malformed id in a path names nothing that could exist: it answers as an unknown one would.
_PATH_IDS: dict[str, type[NotFound]] = {
    "job_id": JobNotFound,
    "upload_id": UploadNotFound,
    "file_id": FileNotFound,
    "user_id": UserNotFound,
    "key_id": KeyNotFound,
    "webhook_id": WebhookNotFound,
    "delivery_id": DeliveryNotFound,
    "comparison_id": ComparisonNotFound,
}


def _unknown_path_id(exc: RequestValidationError) -> NotFound | None:
    """Return the not-found error for a request whose only fault is a malformed path id."""
    names = {
        str(loc[1]) if len(loc) == 2 and loc[0] == "path" else ""
        for loc in (tuple(err.get("loc", ())) for err in exc.errors())
    }
    if not names or not names <= set(_PATH_IDS):
        return None
    first = next(name for name in _PATH_IDS if name in names)  # job before file, say
    return _PATH_IDS[first](details=f"no such {first}: ids look like job_0123456789ab")


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    unknown = _unknown_path_id(exc)
    if unknown is not None:
        return await _app_error(request, unknown)
    items = validation_items(exc)
    code = (
        "INVALID_CONFIG"
        if any(i["field"].startswith("config") for i in items)
        else "VALIDATION_ERROR"
    )
    message = "Invalid configuration" if code == "INVALID_CONFIG" else "Request validation failed"
    details = "; ".join(f"{i['field']}: {i['error']}" for i in items[:10])
    return error_response(400, code=code, message=message, details=details, errors=items)


def _slash_redirect(request: Request) -> Response | None:
    """Return a redirect from ``/path/`` to ``/path`` when that is a route, else None.

    The Location is a relative reference built from the path alone: never from the client's
    ``Host`` header (Starlette's own slash redirect does that), and never ``//host``.
    """
    path = request.url.path
    target = path.rstrip("/")
    if not target or target == path or target.startswith("//"):
        return None
    scope = {**request.scope, "path": target}
    if not any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
        return None
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(quote(target) + query, status_code=307)


def _shown(path: str) -> str:
    return path if len(path) <= 200 else path[:200] + "..."


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404 and (redirect := _slash_redirect(request)) is not None:
        return redirect
    code, message = _HTTP_CODES.get(exc.status_code, (HttpError.code, HttpError.default_message))
    details = exc.detail if isinstance(exc.detail, str) and exc.detail != message else None
    if exc.status_code == 404 and details in (None, "Not Found"):
        details = f"no route for {request.method} {_shown(request.url.path)}"
    if exc.status_code == 405:
        details = f"{request.method} is not allowed on {_shown(request.url.path)}"
    return error_response(
        exc.status_code,
        code=code,
        message=message,
        details=details,
        headers=dict(exc.headers) if exc.headers else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the envelope for domain errors, validation errors and HTTP errors."""
    # Starlette types handlers as taking any Exception; each is only called with its own class.
    app.add_exception_handler(AppError, cast(ExceptionHandler, _app_error))
    app.add_exception_handler(RequestValidationError, cast(ExceptionHandler, _validation_error))
    app.add_exception_handler(StarletteHTTPException, cast(ExceptionHandler, _http_error))
