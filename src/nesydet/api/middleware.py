"""Pure ASGI middleware: request ids, version header, metrics and the last-resort 500."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nesydet import API_VERSION
from nesydet.api.errors import error_body
from nesydet.db.session import is_unavailable
from nesydet.observability import metrics
from nesydet.observability.logging import request_id_var

log = logging.getLogger("nesydet.api")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
UNMATCHED = "unmatched"
# What a client told to come back later (503) waits, in seconds.
RETRY_AFTER_S = 5
# On every response: no content sniffing (an upload is only ever what its bytes say), no
# framing of the docs or images by other sites, no referrer leaking ids to other sites.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def _endpoint_label(scope: Scope) -> str:
    """Return the route template (``/api/v1/uploads/{upload_id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return UNMATCHED


class RequestContextMiddleware:
    """Gives each request an id (a well-formed client ``X-Request-ID`` is kept), adds the
    ``X-Request-ID``, ``X-API-Version`` and security headers, records request metrics, and turns an
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
            *SECURITY_HEADERS,
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
        except Exception as exc:
            unavailable = is_unavailable(exc)
            if unavailable:  # an outage, not a bug: no stack trace, a 503 the client retries
                log.warning("the database cannot be reached", extra={"error": repr(exc)[:300]})
            else:
                log.exception("unhandled error", extra={"method": scope["method"]})
            if not response_started:
                status = 503 if unavailable else 500
                await self._send_error(send_wrapper, unavailable=unavailable)
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
        # An id to find a request in the logs, not a secret: no need for the OS's randomness.
        return f"req_{random.getrandbits(48):012x}"

    @staticmethod
    async def _send_error(send: Any, *, unavailable: bool) -> None:
        if unavailable:
            status, extra = 503, [(b"retry-after", str(RETRY_AFTER_S).encode())]
            content = error_body(
                code="SERVICE_UNAVAILABLE",
                message="Service unavailable, please retry",
                details="the database cannot be reached right now",
            )
        else:
            status, extra = 500, []
            content = error_body(
                code="INTERNAL_ERROR",
                message="Server error, please retry",
                details="an unexpected error was logged with this request id",
            )
        body = json.dumps(content).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
