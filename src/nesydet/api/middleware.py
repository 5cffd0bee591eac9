"""Pure ASGI middleware: request ids, version header, metrics and the last-resort 500."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nesydet import API_VERSION
from nesydet.api.errors import error_body
from nesydet.observability import metrics
from nesydet.observability.logging import request_id_var

log = logging.getLogger("nesydet.api")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
UNMATCHED = "unmatched"


def _endpoint_label(scope: Scope) -> str:
    """Return the route template (``/api/v1/uploads/{upload_id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return UNMATCHED


class RequestContextMiddleware:
    """Gives each request an id (a well-formed client ``X-Request-ID`` is kept), adds the
    ``X-Request-ID`` and ``X-API-Version`` headers, records request metrics, and turns an
    unexpected exception into a logged 500 ``INTERNAL_ERROR`` envelope with no stack trace.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        extra_headers = [
            (b"x-request-id", request_id.encode()),
            (b"x-api-version", API_VERSION.encode()),
        ]

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
                message = {**message, "headers": [*message.get("headers", []), *extra_headers]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception(
                "unhandled error", extra={"method": scope["method"], "path": scope["path"]}
            )
            if not response_started:
                status = 500
                await self._send_500(send_wrapper)
        finally:
            endpoint = _endpoint_label(scope)
            elapsed = time.perf_counter() - started
            method = scope["method"]
            metrics.API_REQUESTS.labels(method=method, endpoint=endpoint, status=str(status)).inc()
            metrics.API_LATENCY.labels(method=method, endpoint=endpoint).observe(elapsed)
            request_id_var.reset(token)

    @staticmethod
    def _request_id(scope: Scope) -> str:
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                candidate = bytes(value).decode("latin-1")
                if _REQUEST_ID_RE.match(candidate):
                    return candidate
                break
        return f"req_{secrets.token_hex(6)}"

    @staticmethod
    async def _send_500(send: Any) -> None:
        body = json.dumps(
            error_body(
                code="INTERNAL_ERROR",
                message="Server error, please retry",
                details="an unexpected error was logged with this request id",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
