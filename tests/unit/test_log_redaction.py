"""Keys, tokens, passwords and configured secrets never reach a log line."""

from __future__ import annotations

import io
import logging

import pytest

from nesydet.observability.logging import JsonFormatter, RedactingFormatter, add_secrets

KEY = "nsd_" + "Q" * 43
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3JfeCJ9.c2lnbmF0dXJl"


@pytest.mark.parametrize("formatter", [JsonFormatter(), RedactingFormatter("%(message)s")])
def test_secrets_are_redacted_from_messages_extras_and_tracebacks(
    formatter: logging.Formatter,
) -> None:
    add_secrets(["s3-Very-Secret-Value"])
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    log = logging.getLogger("nesydet.tests.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning(
            "request with Authorization: Bearer %s and X-API-Key: %s", TOKEN, KEY,
            extra={"url": "postgresql://nesydet:hunter2@db/x", "note": "password=hunter2"},
        )  # fmt: skip
        try:
            raise RuntimeError("S3 said no to s3-Very-Secret-Value")
        except RuntimeError:
            log.exception("storage failed")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    for secret in (KEY, TOKEN, "hunter2", "s3-Very-Secret-Value"):
        assert secret not in text
    assert "request with Authorization: Bearer [redacted]" in text
    assert "storage failed" in text
