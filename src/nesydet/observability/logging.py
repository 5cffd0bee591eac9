"""Structured (JSON) logging with the request id of the current request on every record, and
the trace and span ids of the current span (when tracing is on).

Every line goes through :func:`redact` last, whatever logged it (our code, uvicorn, Celery, a
traceback): API keys, access tokens, Authorization headers, passwords and the configured
secrets never reach a log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from nesydet.observability.tracing import current_ids

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_STD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


# A log line never carries unbounded client input (a megabyte URL, a huge header): text
# fields are cut here, whatever logged them.
MAX_FIELD_CHARS = 2000


def _clip(text: str) -> str:
    if len(text) <= MAX_FIELD_CHARS:
        return text
    return f"{text[:MAX_FIELD_CHARS]}... ({len(text) - MAX_FIELD_CHARS} more characters)"


_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer <anything>, Basic <anything>
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    # our API keys, and JWTs (three base64url parts, the first a JSON header)
    (re.compile(r"nsd_[A-Za-z0-9_-]{8,}"), "nsd_[redacted]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[redacted-token]"),
    # user:password@ in URLs (database, broker, Redis)
    (re.compile(r"(://[^/:@\s]+:)[^@\s]+@"), r"\1[redacted]@"),
    # password=..., "password": "...", X-API-Key: ..., secret / token fields
    (
        re.compile(
            r"(?i)(\"?(?:password|passwd|secret|secret_access_key|api[_-]?key|x-api-key|"
            r"access_token|token)\"?\s*[:=]\s*\"?)[^\s\",}&]+"
        ),
        r"\1[redacted]",
    ),
)
_secrets: list[str] = []


def redact(text: str) -> str:
    """Return ``text`` with credentials and the configured secrets replaced."""
    for value in _secrets:
        text = text.replace(value, "[redacted]")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def add_secrets(values: Iterable[str | None]) -> None:
    """Redact these exact values too (the S3 secret, the JWT secret) from every line."""
    for value in values:
        if value and len(value) >= 6 and value not in _secrets:
            _secrets.append(value)


class RedactingFormatter(logging.Formatter):
    """The plain-text format, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as text, with credentials removed."""
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """Formats records as one JSON object per line, extras included."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON line."""
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _clip(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id:
            payload["request_id"] = request_id
        ids = current_ids()
        if ids is not None:
            payload["trace_id"], payload["span_id"] = ids
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                payload[key] = _clip(value) if isinstance(value, str) else value
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send the root logger to stderr as JSON lines (or plain text for humans)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.addFilter(_RequestIdFilter())
        handler.setFormatter(
            RedactingFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
