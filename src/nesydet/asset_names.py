"""Names, versions and references of registered assets; the routing pick.

A model or rules set is named like ``roads-obb`` and versioned like ``3`` or ``2026.11-rc1``;
a job names one as ``name`` (the default version, or the routing's pick) or ``name@version``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from nesydet.pipeline.detector import MODEL_SUFFIXES
from nesydet.pipeline.reasoning.engine import RULES_SUFFIXES

Kind = Literal["model", "rules"]
KINDS: tuple[Kind, ...] = ("model", "rules")
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
REF_PATTERN = NAME_PATTERN[:-1] + r"(@" + VERSION_PATTERN[1:-1] + r")?$"
SUFFIXES: dict[Kind, tuple[str, ...]] = {"model": MODEL_SUFFIXES, "rules": RULES_SUFFIXES}
_REF = re.compile(REF_PATTERN)


@dataclass(frozen=True, slots=True)
class Ref:
    """``name`` or ``name@version`` as a job gives it."""

    name: str
    version: str | None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


def parse_ref(text: str) -> Ref | None:
    """Returns the reference ``text`` spells, None when it is not one."""
    if not _REF.match(text):
        return None
    name, _, version = text.partition("@")
    return Ref(name, version or None)


def storage_key(kind: Kind, sha256: str, suffix: str) -> str:
    """Returns where a file is stored: by kind and content, shared by every version with it."""
    return f"registry/{kind}/{sha256}{suffix}"


def next_version(existing: list[str]) -> str:
    """Returns the version an upload without one gets: one more than the largest number."""
    numbers = [int(v) for v in existing if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def pick_version(weights: Mapping[str, int], key: str) -> str:
    """Returns the version a job gets from routing weights, the same for the same key.

    The key (the job id) is hashed to a point on [0, sum of weights); versions take the
    point's interval in sorted order, so a rerun with the same ids and weights splits the
    same way and a new id lands at random by weight.

    Raises:
        ValueError: No positive weight.
    """
    live = sorted((v, w) for v, w in weights.items() if w > 0)
    total = sum(w for _, w in live)
    if total <= 0:
        raise ValueError("routing has no positive weight")
    point = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % total
    for version, weight in live:
        if point < weight:
            return version
        point -= weight
    return live[-1][0]  # unreachable: the points cover [0, total)
