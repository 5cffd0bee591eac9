"""The capacity plan's arithmetic (bench/capacity.py), on rates given by hand."""

from __future__ import annotations

import argparse
import math
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from bench._capacity_plan import (
    PlanRow,
    format_plan,
    images_per_hour,
    keda_list_length,
    plan,
    scaling_efficiency,
    workers_needed,
)
from bench._capacity_report import (
    Config,
    JobRow,
    KedaFile,
    Run,
    keda_section,
    paired_ratio,
    parse_config,
    scaling_pair,
)
from bench.capacity import default_configs, read_keda

T0 = datetime(2026, 2, 2, 12, 0, 0)
# A manifest whose target is 1 now, for jobs of 10 images and a wait of 300 s.
KEDA = KedaFile(Path("worker-autoscaling.yaml"), 2, 10, 300, list_length=1)
KEDA_ARGS = argparse.Namespace(images_per_job=10.0, wait_s=300.0)


def test_images_per_hour() -> None:
    assert images_per_hour(24, 60.0) == 1440.0
    assert images_per_hour(1, 3600.0) == 1.0
    with pytest.raises(ValueError, match="positive"):
        images_per_hour(1, 0.0)


def test_workers_needed_rounds_up() -> None:
    assert workers_needed(100, 1000.0) == 1
    assert workers_needed(1_000, 1000.0) == 1
    assert workers_needed(1_001, 1000.0) == 2
    assert workers_needed(10_000, 1500.0) == 7  # 6.67


def test_an_exact_quotient_costs_no_extra_worker() -> None:
    # 4,900 / (700 x 0.7) is 10 on paper, 10.000000000000002 in floating point.
    assert 4_900 / (700.0 * 0.7) > 10
    assert workers_needed(4_900, 700.0, 0.7) == 10
    assert workers_needed(4_901, 700.0, 0.7) == 11


def test_the_adjusted_figure_divides_by_the_efficiency() -> None:
    assert workers_needed(10_000, 1000.0, 0.8) == 13  # 12.5
    assert workers_needed(10_000, 1000.0, 0.5) == 20


def test_an_efficiency_above_one_counts_as_one() -> None:
    assert workers_needed(10_000, 1000.0, 1.3) == 10


def test_nonsense_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        workers_needed(100, 0.0)
    with pytest.raises(ValueError, match="positive"):
        workers_needed(100, 10.0, 0.0)


def test_scaling_efficiency() -> None:
    assert scaling_efficiency(1000.0, 2000.0, 2) == 1.0
    assert scaling_efficiency(1000.0, 1600.0, 2) == 0.8
    assert scaling_efficiency(1000.0, 1000.0, 2) == 0.5


def test_plan_covers_the_specs_three_phases() -> None:
    rows = plan(1200.0, 0.75)
    assert rows == [
        PlanRow(100, 1, 1),
        PlanRow(1_000, 1, 2),  # 0.83; 1,000 / 900 = 1.11
        PlanRow(10_000, 9, 12),  # 8.33; 10,000 / 900 = 11.1
    ]
    lines = format_plan(rows, label="CPU")
    assert len(lines) == 4
    assert lines[3].split() == ["10,000", "9", "12"]


def test_keda_list_length_is_the_jobs_a_worker_does_in_the_wait() -> None:
    # 1,200 images an hour = one image in 3 s: 100 images in 300 s, 25 jobs of 4 images.
    assert keda_list_length(1200.0, 4, 300.0) == 25
    assert keda_list_length(1200.0, 3, 300.0) == 33  # 33.3
    assert keda_list_length(10.0, 50, 60.0) == 1  # never 0: KEDA divides by it


def test_configs_are_written_workers_x_threads() -> None:
    assert parse_config("2x1") == Config(2, 1)
    assert parse_config(" 1X2 ") == Config(1, 2)
    assert Config(2, 1).label == "2 workers x 1 thread"
    for bad in ("2", "x1", "0x1", "2x0", "twoxone"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"2x1|at least 1"):
            parse_config(bad)


def _job(worker: str, start_s: float, end_s: float, images: int = 3) -> JobRow:
    return JobRow(
        id=f"job_{worker}_{start_s}",
        status="completed",
        worker_id=worker,
        file_count=images,
        created_at=T0,
        started_at=T0 + timedelta(seconds=start_s),
        completed_at=T0 + timedelta(seconds=end_s),
        error=None,
    )


def test_a_run_takes_wall_time_and_busy_time_from_the_jobs() -> None:
    run = Run(
        Config(2, 1),
        [_job("a", 0, 10), _job("b", 0, 12), _job("a", 10, 20), _job("b", 12, 24)],
        warm_workers=2,
    )
    assert run.images == 12
    assert run.wall_s == 24.0
    assert run.rate == 1800.0  # 12 images in 24 s
    assert run.per_worker() == {"a": (2, 6, 20.0), "b": (2, 6, 24.0)}
    assert run.busy_rate == pytest.approx((1080.0 + 900.0) / 2)


def test_ratios_pair_runs_of_the_same_round() -> None:
    one, two = Config(1, 1), Config(2, 1)
    rates = {one: {1: 1000.0, 2: 500.0}, two: {1: 1800.0, 2: 1000.0}}
    assert paired_ratio(rates, two, one) == pytest.approx(1.9)  # median of 1.8 and 2.0
    assert scaling_pair([Config(1, 2), one, two]) == (one, two)
    assert scaling_pair([Config(1, 2), two]) is None


def test_default_configs_measure_one_two_workers_and_a_replica() -> None:
    configs = default_configs(2)
    assert configs[:3] == [Config(1, 1), Config(2, 1), Config(1, 2)]
    assert len(configs) == len(set(configs))  # 1x<cores> only when it is another one


def test_the_manifests_give_the_replica_and_the_keda_figures() -> None:
    keda = read_keda()
    assert keda.path == Path("deploy/k8s/base/worker-autoscaling.yaml")
    assert keda.replica_threads >= 1
    assert keda.images_per_job > 0
    assert keda.wait_s > 0
    assert keda.list_length >= 1


def _figure(lines: list[str], name: str) -> float:
    # The pattern tests/unit/test_k8s_manifests.py reads the manifest's comment with.
    found = re.search(rf"#\s+{name} = ([\d.]+)\n", "\n".join(lines) + "\n")
    assert found, lines
    return float(found[1])


def test_the_keda_lines_to_paste_give_the_list_length_they_state() -> None:
    # 1,199.6 img/h is stated as 1200: 1200 / 3600 x 300 / 10 = 10 jobs in the wait.
    lines = keda_section(1199.6, "CPU replica", KEDA, KEDA_ARGS, gpu=False)
    assert "listLength = 10" in lines[0]
    assert "now 1: update it" in lines[1]
    rate, per_job, wait = (
        _figure(lines, n)
        for n in ("images_per_hour_per_replica", "images_per_job", "target_wait_s")
    )
    assert (rate, per_job, wait) == (1200, 10, 300)
    assert max(1, math.floor(rate / 3600 / per_job * wait)) == 10
    assert lines[-1].split(";") == [
        '  scalingModifiers.formula: "running + queued / 10"',
        ' trigger `queued` listLength: "10"',
    ]
    current = KedaFile(KEDA.path, 2, 10, 300, list_length=10)
    assert "(unchanged)" in keda_section(1199.6, "CPU", current, KEDA_ARGS, gpu=False)[1]
    slow = keda_section(50.0, "CPU replica", KEDA, KEDA_ARGS, gpu=False)
    assert "listLength = 1" in slow[0]  # never 0, however slow the replica


def test_a_gpu_replica_gets_its_own_overlay_line() -> None:
    lines = keda_section(36_000.0, "GPU replica", KEDA, KEDA_ARGS, gpu=True)
    assert "listLength = 300" in lines[0]
    assert "overlays/gpu" in lines[1]
