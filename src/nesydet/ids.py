"""Public identifiers: a short prefix and random lowercase hex, like ``upl_a1b2c3d4e5f6``."""

from __future__ import annotations

import re
import secrets

ID_HEX_LEN = 12
_ID_RE = re.compile(r"^(upl|img|job)_[0-9a-f]{12}$")


def new_id(prefix: str) -> str:
    """Return a fresh identifier such as ``upl_a1b2c3d4e5f6``."""
    return f"{prefix}_{secrets.token_hex(ID_HEX_LEN // 2)}"


def is_valid_id(value: str, prefix: str) -> bool:
    """Return whether ``value`` is a well-formed identifier with that prefix."""
    return value.startswith(prefix + "_") and _ID_RE.match(value) is not None
