"""The monitoring dashboard over a week of history: 10,000 jobs in PostgreSQL or SQLite.

A private database (PostgreSQL by default, or the embedded SQLite file of ``make run`` with
``--database sqlite``) is filled with 10,000 jobs created over the last 7 days (mostly completed,
some failed and cancelled, a few dozen queued and a few processing, with realistic waits and
run times) and 4 live workers, then one ``nesydet serve`` process answers. One client asks
in a tight loop (``bench._loadgen``, a process of its own), for ``--seconds`` per run:

- ``/healthz`` (no database) and a job's status (one row read: no status cache here), the
  baselines, measured in the same run on the same server;
- ``/api/v1/monitoring/dashboard?window=6h`` and ``?window=7d`` (all 10,000 jobs in the window).

Rounds alternate the four, because this machine's speed drifts; medians over the rounds are
printed. Target: p95 under 50 ms for both windows.

    .venv/bin/python -m bench.dashboard [--database postgres|sqlite] [--rounds 3] [--seconds 5]
                                        [--jobs 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from tests.integration.prom import start_api_server

from bench._server import REPO
from nesydet.db.base import utcnow
from nesydet.db.models import Job, Upload, Worker
from nesydet.db.session import create_engine
from nesydet.ids import JOB, new_id

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PG_BENCH = "postgresql+asyncpg://postgres@127.0.0.1:5432/nesydet_bench_dashboard"
TARGET_P95_MS = 50.0
JOBS_PER_UPLOAD = 10


async def fresh_db() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute("DROP DATABASE IF EXISTS nesydet_bench_dashboard WITH (FORCE)")
    await conn.execute("CREATE DATABASE nesydet_bench_dashboard")
    await conn.close()


async def drop_db() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute("DROP DATABASE IF EXISTS nesydet_bench_dashboard WITH (FORCE)")
    await conn.close()


def finished_job(rng: random.Random, created: datetime, now: datetime) -> dict[str, Any]:
    """Return the columns of a job that ended: 88% completed, 7% failed, 5% cancelled."""
    wait = timedelta(seconds=rng.expovariate(1 / 20))
    run = timedelta(seconds=rng.lognormvariate(3.8, 0.5))  # about 45 s
    started, ended = created + wait, min(created + wait + run, now)
    roll = rng.random()
    if roll < 0.88:
        return {"status": "completed", "started_at": started, "completed_at": ended,
                "updated_at": ended, "processing_time_seconds": (ended - started).total_seconds(),
                "total_detections": rng.randint(0, 200)}  # fmt: skip
    if roll < 0.95:
        return {"status": "failed", "started_at": started, "failed_at": ended, "updated_at": ended,
                "error_code": "INFERENCE_ERROR", "error_message": "Inference failed"}  # fmt: skip
    if roll < 0.975:  # cancelled while waiting
        return {"status": "cancelled", "cancelled_at": started, "updated_at": started}
    return {
        "status": "cancelled",
        "started_at": started,
        "cancelled_at": ended,
        "updated_at": ended,
    }


def job_rows(count: int, now: datetime, seed: int = 7) -> list[dict[str, Any]]:
    """Return ``count`` jobs created over the last 7 days, oldest first; the newest 30 are
    queued and the 4 before them processing."""
    rng = random.Random(seed)
    week = timedelta(days=7).total_seconds()
    created = sorted(now - timedelta(seconds=rng.uniform(60, week)) for _ in range(count))
    rows = []
    for i, at in enumerate(created):
        files = rng.randint(1, 20)
        row: dict[str, Any] = {"id": new_id(JOB), "upload_id": f"upl_{i // JOBS_PER_UPLOAD:012x}",
                               "created_at": at, "updated_at": at, "config": {},
                               "model_name": "nesydet-demo-obb.pt", "file_count": files,
                               "time_limit_s": 3600.0, "processed_count": files}  # fmt: skip
        if i >= count - 30:
            row.update(
                status="queued", processed_count=0, created_at=now - timedelta(minutes=count - i)
            )
        elif i >= count - 34:
            row.update(
                status="processing",
                started_at=now - timedelta(minutes=2),
                processed_count=files // 2,
                current_stage="Running SAHI inference",
                estimated_completion=now + timedelta(minutes=2),
                heartbeat_at=now,
            )
        else:
            row.update(finished_job(rng, at, now))
        rows.append(row)
    # One executemany needs the same columns in every row.
    columns = {name for row in rows for name in row}
    return [{name: row.get(name) for name in columns} for row in rows]


async def fill(count: int, url: str) -> str:
    """Fill the bench database at ``url``; return the id of a processing job."""
    now = utcnow()
    rows = job_rows(count, now)
    uploads = sorted({r["upload_id"] for r in rows})
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(insert(Upload), [
            {"id": u, "file_count": 1, "total_bytes": 1, "created_at": now - timedelta(days=7)}
            for u in uploads
        ])  # fmt: skip
        for start in range(0, len(rows), 2000):
            await conn.execute(insert(Job), rows[start : start + 2000])
        await conn.execute(insert(Worker), [
            {"id": f"worker-{i}@bench", "hostname": "bench", "pid": 1000 + i, "heartbeat_at": now}
            for i in range(4)
        ])  # fmt: skip
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("ANALYZE"))
    await engine.dispose()
    return next(r["id"] for r in rows if r["status"] == "processing")


def load(port: int, path: str, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench._loadgen", "127.0.0.1", str(port), path, "loop",
         "--clients", "1", "--seconds", str(seconds)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    postgres = args.database == "postgres"
    if postgres:
        asyncio.run(fresh_db())
    try:
        with tempfile.TemporaryDirectory(prefix="nesydet-dashboard-") as tmp:
            root = Path(tmp) / "service"
            url = PG_BENCH if postgres else f"sqlite+aiosqlite:///{root / 'db.sqlite'}"
            api = start_api_server(
                root,
                NESYDET_DATABASE_URL=url,
                NESYDET_LOG_LEVEL="WARNING",
                NESYDET_SWEEPER_INTERVAL_S="0",
            )
            try:
                job_id = asyncio.run(fill(args.jobs, url))
                runs = {
                    "healthz": "/healthz",
                    "job status": f"/api/v1/jobs/{job_id}/status",
                    "dashboard 6h": "/api/v1/monitoring/dashboard?window=6h",
                    "dashboard 7d": "/api/v1/monitoring/dashboard?window=7d",
                }
                figures: dict[str, list[dict[str, Any]]] = {}
                for _ in range(args.rounds):
                    for name, path in runs.items():
                        figures.setdefault(name, []).append(load(api.port, path, args.seconds))
            finally:
                api.stop()
    finally:
        if postgres:
            asyncio.run(drop_db())
    return report(figures, args.jobs, "PostgreSQL" if postgres else "SQLite")


def report(figures: dict[str, list[dict[str, Any]]], jobs: int, database: str) -> int:
    def med(key: str, field: str) -> float:
        return statistics.median(float(r[field]) for r in figures[key])

    print(f"{jobs} jobs over 7 days in {database}; 1 client in a loop; medians of "
          f"{len(figures['healthz'])} rounds; load average now "
          f"{' '.join(f'{n:.1f}' for n in os.getloadavg())} on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'run':<14} {'rps':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  codes (last round)")
    for key in figures:
        print(
            f"{key:<14} {med(key, 'rps'):8.0f} {med(key, 'p50_ms'):8.2f} "
            f"{med(key, 'p95_ms'):8.2f} {med(key, 'p99_ms'):8.2f}  {figures[key][-1]['codes']}"
        )
    ok = True
    for window in ("6h", "7d"):
        key = f"dashboard {window}"
        p95 = med(key, "p95_ms")
        ok = ok and p95 < TARGET_P95_MS and set(figures[key][-1]["codes"]) == {"200"}
        print(f"dashboard {window}: p50 {med(key, 'p50_ms') / med('job status', 'p50_ms'):.1f}x "
              f"a job's status, {med(key, 'p50_ms') / med('healthz', 'p50_ms'):.1f}x /healthz; "
              f"p95 {p95:.1f} ms (target < {TARGET_P95_MS:.0f} ms) "
              f"{'ok' if p95 < TARGET_P95_MS else 'MISS'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
