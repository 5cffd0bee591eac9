"""Public identifiers: a short prefix and random lowercase hex, like ``upl_a1b2c3d4e5f6``.

Every id a client sends is checked against its pattern at the edge (path, query or body), so
nothing malformed (a NUL byte, a megabyte of text) reaches the database or a log line.
"""

from __future__ import annotations

import secrets

ID_HEX_LEN = 12
UPLOAD, FILE, JOB, USER, KEY = "upl", "img", "job", "usr", "key"
# A webhook endpoint, and one event sent to it (the Standard Webhooks `webhook-id`).
WEBHOOK, DELIVERY = "whk", "msg"
# A comparison of two jobs.
COMPARISON = "cmp"


def new_id(prefix: str) -> str:
    """Return a fresh identifier such as ``upl_a1b2c3d4e5f6``."""
    return f"{prefix}_{secrets.token_hex(ID_HEX_LEN // 2)}"


def id_pattern(prefix: str) -> str:
    """Return the regular expression every id with that prefix matches."""
    return rf"^{prefix}_[0-9a-f]{{{ID_HEX_LEN}}}$"
