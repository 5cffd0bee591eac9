"""Completion estimates of a running job."""

from __future__ import annotations

from datetime import timedelta

from nesydet.db.base import utcnow
from nesydet.db.models import Job
from nesydet.services.processing.store import Claim, estimate_finish


def _held(seconds_per_image: float, *, done: int, started: float) -> Claim:
    claim = Claim(job=Job(), token="t", started=started, seconds_per_image=seconds_per_image)
    claim.images_done_here = done
    return claim


def test_before_the_first_image_the_measured_rate_is_used() -> None:
    before = utcnow()
    eta = estimate_finish(_held(2.5, done=0, started=100.0), 4, now=100.0)
    assert before + timedelta(seconds=10) <= eta <= utcnow() + timedelta(seconds=10)


def test_after_an_image_the_workers_own_pace_is_used() -> None:
    before = utcnow()
    # 3 images in 30 s: 10 s each, whatever the earlier jobs measured.
    eta = estimate_finish(_held(2.5, done=3, started=100.0), 2, now=130.0)
    assert before + timedelta(seconds=20) <= eta <= utcnow() + timedelta(seconds=20)


def test_nothing_left_is_now() -> None:
    before = utcnow()
    eta = estimate_finish(_held(2.5, done=1, started=0.0), 0, now=5.0)
    assert before <= eta <= utcnow()
