"""Request spans: FastAPI's own OpenTelemetry support, given this process's tracer provider.

FastAPI opens one server span per request, named ``METHOD /route/{template}`` with
``http.route``, ``http.request.method`` and ``http.response.status_code``, continuing a
``traceparent`` the client sent. Without a provider (tracing off) it is told not to trace at
all, so a request costs nothing more. :class:`SpanIdsMiddleware` adds the ids the request is
about.
"""

from __future__ import annotations

import re

from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nesydet.ids import JOB, UPLOAD, id_pattern
from nesydet.observability.logging import request_id_var

# Path parameters put on the span, only when well formed (a client's text is never recorded).
_ID_PARAMS = {"job_id": re.compile(id_pattern(JOB)), "upload_id": re.compile(id_pattern(UPLOAD))}


def telemetry_config(provider: trace.TracerProvider | None) -> TelemetryConfig:
    """Return FastAPI's telemetry settings: request spans from ``provider``, nothing else.

    Metrics stay with Prometheus and logs with the JSON log lines; environment variables
    (``FASTAPI_OTEL_AUTO_CONFIGURE``) cannot turn anything on behind the settings' back.
    """
    return {
        "tracer_provider": provider,
        "tracing": provider is not None,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "auto_configure": False,
    }


class SpanIdsMiddleware:
    """Puts the request id and the ``job_id`` / ``upload_id`` of the path on the request span.

    Innermost, so the router has matched the path (and set ``path_params``) by the time the
    response starts; the span is still open then.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = trace.get_current_span()
        if scope["type"] != "http" or not span.is_recording():
            await self.app(scope, receive, send)
            return

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                params = scope.get("path_params") or {}
                for name, pattern in _ID_PARAMS.items():
                    value = params.get(name)
                    if isinstance(value, str) and pattern.fullmatch(value):
                        span.set_attribute(name, value)
                request_id = request_id_var.get()
                if request_id:
                    span.set_attribute("request_id", request_id)
            await send(message)

        await self.app(scope, receive, send_with_ids)
