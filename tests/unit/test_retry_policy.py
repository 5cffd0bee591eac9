"""The retry policy: which failures come back, when, and when the job gives up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nesydet.services.processing.retry import GiveUp, RetryAt, next_step

NOW = datetime(2026, 2, 2, 18, 54, 57, tzinfo=UTC)
SPEC_DELAYS = (60.0, 300.0, 900.0)


def step(*, retryable: bool = True, done: int = 0, jitter: float = 0.0, u: float = 0.5):  # type: ignore[no-untyped-def]
    return next_step(
        retryable=retryable,
        retries_done=done,
        delays_s=SPEC_DELAYS,
        jitter=jitter,
        now=NOW,
        uniform=lambda: u,
    )


@pytest.mark.parametrize(("done", "delay"), [(0, 60.0), (1, 300.0), (2, 900.0)])
def test_retryable_failures_follow_the_spec_delays(done: int, delay: float) -> None:
    assert step(done=done) == RetryAt(
        at=NOW + timedelta(seconds=delay), delay_s=delay, retry=done + 1
    )


def test_after_the_last_delay_the_job_gives_up() -> None:
    assert step(done=3) == GiveUp()
    assert step(done=7) == GiveUp()


def test_a_failure_that_is_not_retryable_gives_up_at_once() -> None:
    assert step(retryable=False, done=0) == GiveUp()


@pytest.mark.parametrize(("u", "factor"), [(0.0, 0.9), (0.5, 1.0), (0.999999, 1.1)])
def test_jitter_stretches_the_delay_within_its_bounds(u: float, factor: float) -> None:
    result = step(jitter=0.1, u=u)
    assert isinstance(result, RetryAt)
    assert result.delay_s == pytest.approx(60.0 * factor, abs=1e-3)
    assert result.at == NOW + timedelta(seconds=result.delay_s)


def test_no_delays_configured_means_no_retries() -> None:
    assert next_step(retryable=True, retries_done=0, delays_s=(), jitter=0.1, now=NOW) == GiveUp()


def test_default_randomness_stays_within_the_jitter() -> None:
    delays = []
    for _ in range(200):
        result = next_step(
            retryable=True, retries_done=1, delays_s=SPEC_DELAYS, jitter=0.2, now=NOW
        )
        assert isinstance(result, RetryAt)
        delays.append(result.delay_s)
    assert 240.0 <= min(delays) < max(delays) <= 360.0
