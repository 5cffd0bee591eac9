"""When a failed job is tried again: a pure policy, so every case is a unit test."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try the job again at ``at``, ``delay_s`` from now; this is its retry number ``retry``."""

    at: datetime
    delay_s: float
    retry: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Fail the job for good."""


def next_step(
    *,
    retryable: bool,
    retries_done: int,
    delays_s: Sequence[float],
    jitter: float,
    now: datetime,
    uniform: Callable[[], float] = random.random,
) -> RetryAt | GiveUp:
    """Return what follows a failure: a retry at a time, or giving up.

    A retryable failure is retried once per entry of ``delays_s`` (the spec's 60, 300 and
    900 s), each delay stretched or shrunk at random by up to ``jitter`` (0.1 = +-10 %) so
    that jobs failing together do not come back together. ``uniform`` returns a number in
    [0, 1); tests pass a fixed one.
    """
    if not retryable or retries_done >= len(delays_s):
        return GiveUp()
    factor = 1 - jitter + 2 * jitter * uniform()
    delay = max(0.0, delays_s[retries_done] * factor)
    return RetryAt(at=now + timedelta(seconds=delay), delay_s=delay, retry=retries_done + 1)
