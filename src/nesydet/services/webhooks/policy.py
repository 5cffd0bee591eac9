"""The retry policy of webhook deliveries: exponential backoff with jitter, up to a horizon."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta


def retry_delay_s(
    attempts_made: int,
    *,
    base_s: float,
    max_delay_s: float,
    jitter: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Return the seconds to wait after ``attempts_made`` failed attempts: ``base_s`` doubled
    at each attempt, capped at ``max_delay_s``, scaled by a random factor in 1 +/- ``jitter``
    (so receivers that came back are not hit by every sender at once)."""
    exponent = min(max(attempts_made - 1, 0), 60)
    delay = min(base_s * (2.0**exponent), max_delay_s)
    return max(0.0, delay * (1.0 + jitter * (2.0 * rand() - 1.0)))


def next_attempt_at(
    attempts_made: int,
    *,
    now: datetime,
    retry_until: datetime,
    base_s: float,
    max_delay_s: float,
    jitter: float,
    rand: Callable[[], float] = random.random,
) -> datetime | None:
    """Return when to try again after ``attempts_made`` failed attempts, or None when that
    would be past ``retry_until`` (the delivery has failed)."""
    delay = retry_delay_s(
        attempts_made, base_s=base_s, max_delay_s=max_delay_s, jitter=jitter, rand=rand
    )
    when = now + timedelta(seconds=delay)
    return when if when <= retry_until else None
