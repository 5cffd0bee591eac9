"""Capacity arithmetic: images per hour, workers for a target rate, KEDA's queue target.

Pure functions of measured rates, so that the plan ``bench.capacity`` prints can be checked
by hand (tests/unit/test_capacity_table.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TARGETS = (100, 1_000, 10_000)  # the spec's phases 1, 2 and 3, images per hour
# A quotient that is an integer on paper can land a hair above it in floating point
# (4900 / (700 * 0.7) is 10.000000000000002); that hair must not cost a whole worker.
_SLACK = 1e-9


def images_per_hour(images: int, seconds: float) -> float:
    """Returns the rate of ``images`` done in ``seconds``."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return images * 3600.0 / seconds


def scaling_efficiency(one: float, many: float, workers: int) -> float:
    """Returns ``many / (workers * one)``: 1.0 when ``workers`` workers do ``workers`` times
    what one worker does alone, less when they slow each other down."""
    if one <= 0 or workers < 1:
        raise ValueError(f"need a positive single-worker rate and workers >= 1: {one}, {workers}")
    return many / (workers * one)


def workers_needed(target: float, rate: float, efficiency: float = 1.0) -> int:
    """Returns ``ceil(target / (rate * min(efficiency, 1)))``: workers of ``rate`` images per
    hour each that reach ``target`` when each added worker gives ``efficiency`` of its rate.

    An efficiency above 1 (noise in a short measurement) is taken as 1: adding workers is
    never assumed to speed the others up.
    """
    if rate <= 0 or efficiency <= 0:
        raise ValueError(f"rate and efficiency must be positive: {rate}, {efficiency}")
    return max(1, math.ceil(target / (rate * min(efficiency, 1.0)) - _SLACK))


@dataclass(frozen=True)
class PlanRow:
    """Workers for one target rate: as if they scaled perfectly, and as measured."""

    target: int
    workers: int
    adjusted: int


def plan(rate: float, efficiency: float, targets: tuple[int, ...] = TARGETS) -> list[PlanRow]:
    """Returns one row per target: workers at ``rate`` each, plain and scaling-adjusted."""
    return [
        PlanRow(t, workers_needed(t, rate), workers_needed(t, rate, efficiency)) for t in targets
    ]


def keda_list_length(rate: float, images_per_job: float, wait_s: float) -> int:
    """Returns the queue length per replica for KEDA's Redis list scaler: the jobs one worker
    of ``rate`` images per hour finishes in ``wait_s`` seconds, for jobs of ``images_per_job``
    images: ``floor(rate / 3600 * wait_s / images_per_job)``, at least 1.

    KEDA runs ``ceil(listLength / target)`` replicas, so a queue of that many jobs per
    replica is worked off in about ``wait_s``.
    """
    if rate <= 0 or images_per_job <= 0 or wait_s <= 0:
        raise ValueError(f"need positive figures: {rate}, {images_per_job}, {wait_s}")
    return max(1, math.floor(rate / 3600.0 * wait_s / images_per_job + _SLACK))


def format_plan(rows: list[PlanRow], *, label: str) -> list[str]:
    """Returns the table lines for ``rows``: target, workers, scaling-adjusted workers."""
    lines = [f"{'target img/h':>12}  {label:>22}  {'scaling-adjusted':>16}"]
    lines += [f"{r.target:>12,}  {r.workers:>22,}  {r.adjusted:>16,}" for r in rows]
    return lines
