"""What ``bench.capacity`` measured, and its report: rates, ratios, the workers a target needs.

Kept apart from the driver so that the figures can be worked out from hand-made runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench._capacity_plan import (
    format_plan,
    images_per_hour,
    keda_list_length,
    plan,
    scaling_efficiency,
)


@dataclass(frozen=True)
class Config:
    """Workers, and torch threads per worker."""

    workers: int
    threads: int

    @property
    def label(self) -> str:
        w, t = self.workers, self.threads
        return f"{w} worker{'s' if w > 1 else ''} x {t} thread{'s' if t > 1 else ''}"

    @property
    def tag(self) -> str:
        return f"{self.workers}x{self.threads}"


def parse_config(text: str) -> Config:
    """Returns the configuration written ``WxT``."""
    workers, sep, threads = text.strip().lower().partition("x")
    if not sep or not workers.isdigit() or not threads.isdigit():
        raise argparse.ArgumentTypeError(f"expected WORKERSxTHREADS such as 2x1, got {text!r}")
    config = Config(int(workers), int(threads))
    if config.workers < 1 or config.threads < 1:
        raise argparse.ArgumentTypeError(f"workers and threads must be at least 1: {text!r}")
    return config


@dataclass(frozen=True)
class KedaFile:
    """What deploy/k8s/base states of a worker replica and of its KEDA target."""

    path: Path  # worker-autoscaling.yaml, relative to the checkout
    replica_threads: int  # worker.yaml's NESYDET_CPU_THREADS (its CPU request)
    images_per_job: float
    wait_s: float
    list_length: int  # the `queued` trigger's, as the file has it now


@dataclass(frozen=True)
class JobRow:
    """What a finished job says about its run."""

    id: str
    status: str
    worker_id: str | None
    file_count: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None


@dataclass
class Run:
    """One configuration's timed batch."""

    config: Config
    rows: list[JobRow]
    warm_workers: int  # distinct workers that ran a warm-up job
    round_no: int = 1

    @property
    def images(self) -> int:
        return sum(r.file_count for r in self.rows)

    @property
    def wall_s(self) -> float:
        end = max(r.completed_at for r in self.rows if r.completed_at is not None)
        return (end - min(r.created_at for r in self.rows)).total_seconds()

    @property
    def rate(self) -> float:
        return images_per_hour(self.images, self.wall_s)

    def per_worker(self) -> dict[str, tuple[int, int, float]]:
        """Returns jobs, images and busy seconds by worker id."""
        out: dict[str, tuple[int, int, float]] = {}
        for r in self.rows:
            if r.worker_id is None or r.started_at is None or r.completed_at is None:
                raise ValueError(f"job {r.id} has not run to its end: {r}")
            jobs, images, busy = out.get(r.worker_id, (0, 0, 0.0))
            busy += (r.completed_at - r.started_at).total_seconds()
            out[r.worker_id] = (jobs + 1, images + r.file_count, busy)
        return out

    @property
    def busy_rate(self) -> float:
        """Images per hour per worker while it runs a job (no queue gaps), from job timings."""
        workers = self.per_worker().values()
        return statistics.mean(images_per_hour(n, busy) for _, n, busy in workers)


def by_config(runs: list[Run]) -> dict[Config, dict[int, float]]:
    """Returns each configuration's rate by round."""
    out: dict[Config, dict[int, float]] = {}
    for run in runs:
        out.setdefault(run.config, {})[run.round_no] = run.rate
    return out


def paired_ratio(rates: dict[Config, dict[int, float]], many: Config, one: Config) -> float:
    """Returns the median over rounds of ``many``'s rate over ``one``'s in the same round."""
    rounds = rates[many].keys() & rates[one].keys()
    return statistics.median(rates[many][r] / rates[one][r] for r in sorted(rounds))


def scaling_pair(configs: list[Config]) -> tuple[Config, Config] | None:
    """Returns the first (1xT, WxT) pair among ``configs``, W > 1: the scaling measurement."""
    for many in configs:
        one = Config(1, many.threads)
        if many.workers > 1 and one in configs:
            return one, many
    return None


def _run_lines(runs: list[Run]) -> list[str]:
    lines = [
        f"{'round':>5}  {'configuration':<22} {'wall s':>7} {'img/h':>7} "
        f"{'busy img/h/worker':>17} {'use':>5}  jobs per worker"
    ]
    for run in sorted(runs, key=lambda r: (r.round_no, r.config.workers, r.config.threads)):
        per = run.per_worker()
        shares = "+".join(str(j) for j, _, _ in sorted(per.values(), reverse=True))
        busy = sum(b for _, _, b in per.values())
        use = busy / (run.config.workers * run.wall_s)
        check = "ok" if len(per) == run.config.workers else f"ONLY {len(per)} WORKED"
        check += f"; {run.warm_workers} warmed up"
        lines.append(
            f"{run.round_no:>5}  {run.config.label:<22} {run.wall_s:>7.1f} {run.rate:>7,.0f} "
            f"{run.busy_rate:>17,.0f} {use:>5.0%}  {shares} ({check})"
        )
    return lines


def _keda_lines(rate: float, images_per_job: float, wait_s: float) -> tuple[int, list[str]]:
    """Returns listLength for a replica of ``rate`` img/h and the lines that derive it, the
    rate rounded to whole images as the manifest's comment states it."""
    whole = round(rate)
    length = keda_list_length(whole, images_per_job, wait_s)
    jobs = whole / 3600 * wait_s / images_per_job
    formula = f"max(1, floor({whole} / 3600 * {wait_s:g} / {images_per_job:g}))"
    return length, [
        f"#   images_per_hour_per_replica = {whole}",
        f"#   images_per_job = {images_per_job:g}",
        f"#   target_wait_s = {wait_s:g}",
        f"# gives {formula} = max(1, floor({jobs:.2f})) = {length}.",
    ]


def keda_section(
    rate: float, what: str, keda: KedaFile, args: argparse.Namespace, *, gpu: bool
) -> list[str]:
    """Returns KEDA's target for replicas of ``rate`` img/h, and what to paste where."""
    length, comment = _keda_lines(rate, args.images_per_job, args.wait_s)
    lines = [f"  {what}: {rate:,.0f} img/h; listLength = {length}"]
    if gpu:
        return [
            *lines,
            "  for GPU replicas (deploy/k8s/overlays/gpu), patch the ScaledObject's formula "
            f'to "running + queued / {length}" and the `queued` listLength to "{length}"',
        ]
    same = "unchanged" if length == keda.list_length else f"now {keda.list_length}: update it"
    return [
        *lines,
        f"  to paste into {keda.path} ({same}), the comment's figures:",
        *(f"    {line}" for line in comment),
        f'  scalingModifiers.formula: "running + queued / {length}"; '
        f'trigger `queued` listLength: "{length}"',
    ]


def _scaling(
    rates: dict[Config, dict[int, float]], configs: list[Config]
) -> tuple[Config, float, list[str]]:
    """Returns the per-worker configuration, the scaling efficiency and the lines saying so."""
    pair = scaling_pair(configs)
    if pair is None:
        one = next((c for c in configs if c.workers == 1), configs[0])
        return (
            one,
            1.0,
            ["no 1xT and WxT pair measured: the adjusted figures assume perfect scaling"],
        )
    one, many = pair
    ratio = paired_ratio(rates, many, one)
    efficiency = scaling_efficiency(1.0, ratio, many.workers)
    lines = [
        f"scaling {many.tag} / {one.tag}: {ratio:.2f} (ideal {many.workers:.1f}; "
        f"efficiency {efficiency:.0%}, median of the rounds' ratios)"
    ]
    whole = Config(1, many.workers * many.threads)
    if whole in configs:
        lines.append(
            f"same {whole.threads} threads in all, {many.tag} / {whole.tag}: "
            f"{paired_ratio(rates, many, whole):.2f} (above 1: split the cores among "
            "single-thread workers)"
        )
    return one, efficiency, lines


def _gpu_lines(device: str, args: argparse.Namespace, efficiency: float) -> list[str]:
    if device.startswith("cuda"):
        return [
            f"\nthe figures above are GPU workers ({device}); CPU workers were not measured in "
            "this run (--device cpu)"
        ]
    if not args.gpu_rate:
        return [
            "\nGPU: none measured. This machine's workers run on the CPU (torch sees no CUDA "
            "device; no GPU is lent for this run). On a GPU host: python -m bench.capacity "
            "--device cuda:0; or give a GPU worker's images per hour here with --gpu-rate"
        ]
    return [
        f"\nGPU workers at {args.gpu_rate:,.0f} img/h each (given, not measured here); adjusted "
        "with the efficiency measured on CPU workers (a GPU worker asks the API, the database "
        "and storage for more per second, so the real one may be lower)",
        *format_plan(plan(args.gpu_rate, efficiency), label="GPU workers"),
    ]


# Long: one printed report, section after section; splitting it scatters the output's order.
def report(runs: list[Run], args: argparse.Namespace, keda: KedaFile, device: str) -> None:
    """Prints the runs, the medians and ratios, the plans for the targets and KEDA's target."""
    configs: list[Config] = args.configs
    cores = os.cpu_count() or 1
    kind = "GPU" if device.startswith("cuda") else "CPU"
    n = args.jobs * args.images
    print(
        f"\nbatch: {args.jobs} jobs x {args.images} image(s) of {args.size}x{args.size} px "
        f"({n} images a run), default job config, {args.rounds} round(s), alternating order; "
        f"workers on {device} at niceness {args.worker_nice}"
    )
    print(
        f"machine: {cores} CPU cores shared by the workers, the API, PostgreSQL, Redis and "
        "this script (and whatever else runs here): the figures are indicative"
    )
    print("\n".join(_run_lines(runs)))
    rates = by_config(runs)
    medians = {c: statistics.median(rates[c].values()) for c in configs}
    print("\nmedian images per hour:")
    for config in configs:
        print(f"  {config.label:<22} {medians[config]:>8,.0f}")
    one, efficiency, lines = _scaling(rates, configs)
    print("\n".join(lines))
    rate = medians[one]
    print(
        f"\nworkers needed at {rate:,.0f} img/h per worker ({one.label}, {kind} of this "
        f"machine); adjusted: ceil(target / (rate x {min(efficiency, 1.0):.2f}))"
    )
    print("\n".join(format_plan(plan(rate, efficiency), label=f"{kind} workers")))
    replica = Config(1, keda.replica_threads)
    if replica in medians:
        print(
            f"k8s replicas as deploy/k8s/base/worker.yaml runs them ({replica.label}) at "
            f"{medians[replica]:,.0f} img/h each:"
        )
        print("\n".join(format_plan(plan(medians[replica], efficiency), label="replicas")))
    else:
        print(f"k8s replicas ({replica.tag}) not measured: add {replica.tag} to --configs")
    best = max(configs, key=lambda c: medians[c])
    machines = plan(medians[best], 1.0)
    print(
        f"this {cores}-core machine at its best ({best.label}, {medians[best]:,.0f} img/h): "
        + ", ".join(f"{r.target:,} img/h -> {r.workers} machine(s)" for r in machines)
    )
    print("\n".join(_gpu_lines(device, args, efficiency)))
    print(
        f"\nKEDA (Redis list scaler on the queue `inference`), jobs of {args.images_per_job:g} "
        f"images, target wait {args.wait_s:g} s: listLength per replica = max(1, floor(replica "
        "img/h / 3600 x wait_s / images per job)); replicas = ceil(running + queued / listLength)"
    )
    measured = replica if replica in medians else one
    what = f"{kind} replica ({measured.label})"
    print("\n".join(keda_section(medians[measured], what, keda, args, gpu=kind == "GPU")))
    if args.gpu_rate and kind == "CPU":
        print("\n".join(keda_section(args.gpu_rate, "GPU replica (given)", keda, args, gpu=True)))
