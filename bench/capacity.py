"""Images per hour for 1 and 2 workers, and the workers a target rate needs.

A real API process and real ``nesydet worker`` processes (one pool process each, started
fresh for every run) work off the same fixed batch: ``--jobs`` jobs over one upload of
``--images`` demo scenes. A run's rate is its images over the wall time from the first job's
creation to the last one's completion, by the service's own clocks; each worker's busy rate
comes from its jobs' start and completion times, and every worker must have run jobs.

Configurations are ``WxT``: W workers with T torch threads each (``NESYDET_CPU_THREADS``).
The default set is 1x1 (a worker with one core: the per-worker rate), 2x1 (two such workers:
the scaling ratio 2x1 / 1x1, ideally 2.0), 1x2 (a replica as deploy/k8s/base/worker.yaml
runs it: one worker, 2 threads, 2 CPU; 2x1 / 1x2 says whether two single-thread workers beat
one worker with both cores) and, on a machine with more cores, 1x<cores>. Two workers with
every core each (2x2) would fight over the cores; add it to ``--configs`` to see by how much.
Configurations run in alternating order round by round, because this machine's speed drifts.
Workers run at niceness 0 here (``--worker-nice``; the service's default is 10, so that a
worker never slows the API beside it): on a machine shared with other work, a niced worker
measures only what that work leaves over.

Then: the workers needed for 100, 1,000 and 10,000 images per hour at the per-worker rate
(plain, and adjusted by the measured scaling efficiency), the same for a GPU worker
(measured here with ``--device cuda:0`` on a GPU host, or given with ``--gpu-rate``), and
the KEDA queue-length target per replica, with the lines to paste into
deploy/k8s/base/worker-autoscaling.yaml (its job size and target wait are read from it).

    .venv/bin/python -m bench.capacity [--jobs 8] [--images 3] [--size 2048] [--rounds 2]
        [--configs 1x1,2x1,1x2] [--embedded] [--worker-nice 0] [--device auto]
        [--gpu-rate IMAGES_PER_HOUR] [--images-per-job 10] [--wait-s 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._capacity_report import Config, JobRow, KedaFile, Run, parse_config, report
from bench._deploy import Service, start_service
from bench._server import REPO
from bench.e2e import make_images

TERMINAL = {"completed", "failed", "cancelled"}
K8S_BASE = REPO / "deploy" / "k8s" / "base"


@dataclass(frozen=True)
class Batch:
    """The uploads every configuration works off, and how the workers run."""

    upload: str
    warm_upload: str
    jobs: int
    images: int
    worker_nice: int
    device: str | None


def _document(path: Path, kind: str) -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]

    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == kind]
    if len(docs) != 1:
        raise ValueError(f"{path}: expected one {kind}, found {len(docs)}")
    doc: dict[str, Any] = docs[0]
    return doc


def read_keda(base: Path = K8S_BASE) -> KedaFile:
    """Returns what the manifests under ``base`` say of a worker replica and its KEDA target."""
    worker = _document(base / "worker.yaml", "Deployment")
    env = worker["spec"]["template"]["spec"]["containers"][0]["env"]
    threads = next(int(e["value"]) for e in env if e["name"] == "NESYDET_CPU_THREADS")
    path = base / "worker-autoscaling.yaml"
    triggers = _document(path, "ScaledObject")["spec"]["triggers"]
    queued = next(t for t in triggers if t["name"] == "queued")
    figures = {}
    for name in ("images_per_job", "target_wait_s"):
        found = re.search(rf"#\s+{name} = ([\d.]+)\n", path.read_text())
        if found is None:
            raise ValueError(f"{path} no longer states {name} in its comment")
        figures[name] = float(found[1])
    return KedaFile(
        path=path.relative_to(REPO),
        replica_threads=threads,
        images_per_job=figures["images_per_job"],
        wait_s=figures["target_wait_s"],
        list_length=int(queued["metadata"]["listLength"]),
    )


def upload(client: httpx.Client, paths: list[Path]) -> str:
    """Returns the id of a new upload of ``paths``."""
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
    response = client.post("/api/v1/inference/upload", files=files)
    response.raise_for_status()
    upload_id: str = response.json()["data"]["upload_id"]
    return upload_id


def submit(client: httpx.Client, upload_id: str, count: int) -> list[str]:
    """Returns the ids of ``count`` new jobs over every file of ``upload_id``."""
    ids = []
    for _ in range(count):
        response = client.post("/api/v1/inference/predict", json={"upload_id": upload_id})
        response.raise_for_status()
        ids.append(response.json()["data"]["job_id"])
    return ids


async def wait_jobs(
    service: Service, ids: list[str], within_s: float, *, pause_s: float = 0.5
) -> list[JobRow]:
    """Returns the rows of jobs ``ids`` once all have ended, read from the database; raises
    if one did not complete, a worker exits, or ``within_s`` passes."""
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import create_async_engine

    from nesydet.db.models import Job

    engine = create_async_engine(service.database_url)
    query = select(
        Job.id, Job.status, Job.worker_id, Job.file_count, Job.created_at,
        Job.started_at, Job.completed_at, Job.error_message,
    ).where(Job.id.in_(ids))  # fmt: skip
    deadline = time.monotonic() + within_s
    try:
        while True:
            async with engine.connect() as conn:
                rows = [JobRow(*row) for row in (await conn.execute(query)).all()]
            if len(rows) == len(ids) and all(r.status in TERMINAL for r in rows):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still running after {within_s:.0f} s: {rows}")
            for worker in service.workers:
                worker.check_alive()
            await asyncio.sleep(pause_s)
    finally:
        await engine.dispose()
    failed = [r for r in rows if r.status != "completed"]
    if failed:
        raise RuntimeError(f"jobs did not complete: {failed}")
    return rows


def run_config(service: Service, config: Config, batch: Batch) -> Run:
    """Returns the timed batch through ``config``'s workers, started fresh and warmed up."""
    service.start_workers(
        config.workers,
        tag=config.tag,
        threads=config.threads,
        nice=batch.worker_nice,
        device=batch.device,
    )
    try:
        with httpx.Client(base_url=service.api.url, timeout=120) as client:
            # One image per worker first: the first image through a process costs more.
            warm = submit(client, batch.warm_upload, config.workers)
            warm_rows = asyncio.run(wait_jobs(service, warm, 600))
            ids = submit(client, batch.upload, batch.jobs)
        timeout = 600 + 60.0 * batch.jobs * batch.images / config.workers
        rows = asyncio.run(wait_jobs(service, ids, timeout))
    finally:
        service.stop_workers()
    return Run(config, rows, len({r.worker_id for r in warm_rows}))


def measure(service: Service, batch: Batch, configs: list[Config], rounds: int) -> list[Run]:
    """Returns every run, ``rounds`` rounds of ``configs``, the order reversed every other
    round so that a drift of the machine's speed does not favour one configuration."""
    runs = []
    for i in range(rounds):
        for config in configs if i % 2 == 0 else configs[::-1]:
            run = run_config(service, config, batch)
            run.round_no = i + 1
            print(f"  round {i + 1} {config.label}: {run.rate:,.0f} img/h", flush=True)
            runs.append(run)
    return runs


def default_configs(replica_threads: int) -> list[Config]:
    """Returns 1x1, 2x1, a k8s replica (1 worker x ``replica_threads``) and 1x<cores>."""
    cores = os.cpu_count() or 1
    configs = [Config(1, 1), Config(2, 1), Config(1, replica_threads), Config(1, cores)]
    return list(dict.fromkeys(configs))


def parse_args(argv: list[str] | None = None, keda: KedaFile | None = None) -> argparse.Namespace:
    """Returns the command-line options; KEDA's defaults come from ``keda`` (the manifests)."""
    keda = keda or read_keda()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=8, help="jobs in each timed batch")
    parser.add_argument("--images", type=int, default=3, help="images per job")
    parser.add_argument("--size", type=int, default=2048, help="scene side in pixels")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--configs",
        type=lambda s: [parse_config(c) for c in s.split(",")],
        default=default_configs(keda.replica_threads),
        help=f"WORKERSxTHREADS,... (default: 1x1,2x1,1x{keda.replica_threads},1x<cores>)",
    )
    parser.add_argument("--embedded", action="store_true", help="SQLite and the filesystem broker")
    parser.add_argument(
        "--worker-nice", type=int, default=0,
        help="workers' niceness (the service's default is 10, which on a machine shared with "
        "other work measures what that work leaves over)",
    )  # fmt: skip
    parser.add_argument(
        "--device", default=None,
        help="the workers' NESYDET_DEVICE: cpu, cuda:0 (default: the service's, auto)",
    )  # fmt: skip
    parser.add_argument(
        "--gpu-rate", type=float, default=None, metavar="IMAGES_PER_HOUR",
        help="one GPU worker's rate, measured elsewhere: adds its plan",
    )  # fmt: skip
    parser.add_argument(
        "--images-per-job", type=float, default=keda.images_per_job,
        help=f"KEDA: a production job's images (default: {keda.path}'s)",
    )  # fmt: skip
    parser.add_argument(
        "--wait-s", type=float, default=keda.wait_s,
        help=f"KEDA: the wait a queued job may see (default: {keda.path}'s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.images < 1 or args.rounds < 1:
        parser.error("--jobs, --images and --rounds must be at least 1")
    if args.images_per_job <= 0 or args.wait_s <= 0:
        parser.error("--images-per-job and --wait-s must be positive")
    args.configs = list(dict.fromkeys(args.configs))
    return args


def worker_device(device: str | None) -> str:
    """Returns the torch device the workers resolve ``device`` to; None is the service's
    default, auto (their environment has no NESYDET_DEVICE: tests.integration.prom)."""
    from nesydet.pipeline.detector import resolve_device

    return resolve_device(device or "auto")


def main(argv: list[str] | None = None) -> int:
    """Returns 0 after printing the figures (they are a report, not a pass or fail)."""
    keda = read_keda()
    args = parse_args(argv, keda)
    device = worker_device(args.device)
    with tempfile.TemporaryDirectory(prefix="nesydet-capacity-") as tmp:
        root = Path(tmp)
        paths = make_images(root / "images", args.images, args.size)
        service = start_service(root, database="nesydet_bench_capacity", embedded=args.embedded)
        try:
            with httpx.Client(base_url=service.api.url, timeout=300) as client:
                batch = Batch(upload(client, paths), upload(client, paths[:1]), args.jobs,
                              args.images, args.worker_nice, args.device)  # fmt: skip
            print(f"set-up: {service.setup}; workers on {device}", flush=True)
            runs = measure(service, batch, args.configs, args.rounds)
        finally:
            service.stop()
    report(runs, args, keda, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
