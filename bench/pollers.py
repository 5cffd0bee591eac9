"""A crowd of status pollers against one API process, and the same JSON from a bare endpoint.

The service runs as in production (PostgreSQL, Redis broker, status cache and rate limits in
Redis, with a limit high enough never to refuse), one ``nesydet serve`` process. The baseline
is a bare FastAPI app on the same uvicorn set-up returning the very same bytes, also one
process. Load comes from ``bench._loadgen`` in a process of its own, sharing the two cores as
real clients on the machine would. The rounds alternate service and baseline, because this
machine's speed drifts from one minute to the next.

1. Throughput: 8 clients in a tight loop (target: at least 1,000 requests a second).
2. Crowd: 200 clients, each polling once a second from a random phase (target: p95 < 100 ms).

    .venv/bin/python -m bench.pollers [--rounds 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from tests.integration.prom import free_port, spawn, start_api_server, wait_until
from tests.redis_server import RedisServer

from bench._server import REPO

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PG_BENCH = "postgresql+asyncpg://postgres@127.0.0.1:5432/nesydet_bench_pollers"


async def fresh_db() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute("DROP DATABASE IF EXISTS nesydet_bench_pollers WITH (FORCE)")
    await conn.execute("CREATE DATABASE nesydet_bench_pollers")
    await conn.close()


def a_queued_job(url: str) -> tuple[str, bytes]:
    """Upload one image and start a job nobody runs; return its status path and body."""
    sys.path.insert(0, str(REPO))
    from tests import images

    with httpx.Client(base_url=url, timeout=30) as client:
        up = client.post(
            "/api/v1/inference/upload",
            files=[("files", ("a.png", images.png(256, 256), "image/png"))],
        ).json()["data"]
        job = client.post("/api/v1/inference/predict", json={"upload_id": up["upload_id"]})
        job_id = job.json()["data"]["job_id"]
        path = f"/api/v1/jobs/{job_id}/status"
        body = client.get(path).content  # the first read fills the cache if needed
    return path, body


def load(port: int, path: str, mode: str, clients: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench._loadgen", "127.0.0.1", str(port), path, mode,
         "--clients", str(clients), "--seconds", str(seconds)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(fresh_db())
    with tempfile.TemporaryDirectory(prefix="nesydet-pollers-") as tmp:
        root = Path(tmp)
        redis = RedisServer(root)
        redis.start()
        api = start_api_server(
            root / "service",
            NESYDET_DATABASE_URL=PG_BENCH,
            NESYDET_BROKER_URL=redis.url,
            NESYDET_REDIS_URL=redis.url.replace("/0", "/1"),
            NESYDET_RATE_LIMIT="100000000/minute",
            NESYDET_LOG_LEVEL="WARNING",
        )
        bare = None
        try:
            path, body = a_queued_job(api.url)
            payload = root / "payload.json"
            payload.write_bytes(body)
            port = free_port()
            bare = spawn(
                "bare",
                [sys.executable, "-m", "uvicorn", "bench._bare_status:app",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                env={**os.environ, "BARE_PAYLOAD": str(payload), "PYTHONPATH": str(REPO)},
                cwd=REPO,
            )  # fmt: skip
            wait_until(
                lambda: httpx.get(f"http://127.0.0.1:{port}/status").status_code == 200,
                timeout=30, what="the bare endpoint", process=bare,
            )  # fmt: skip
            figures: dict[str, list[dict[str, Any]]] = {}
            for _ in range(args.rounds):
                for name, target, where in (("bare", port, "/status"), ("service", api.port, path)):
                    figures.setdefault(f"{name} loop", []).append(
                        load(target, where, "loop", 8, args.seconds)
                    )
                    figures.setdefault(f"{name} crowd", []).append(
                        load(target, where, "crowd", 200, args.seconds)
                    )
        finally:
            if bare is not None:
                bare.stop()
            api.stop()
            redis.stop()
    return report(figures)


def report(figures: dict[str, list[dict[str, Any]]]) -> int:
    def med(key: str, field: str) -> float:
        return statistics.median(float(r[field]) for r in figures[key])

    print(f"{'run':<14} {'rps':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  codes (last round)")
    for key in ("bare loop", "service loop", "bare crowd", "service crowd"):
        print(
            f"{key:<14} {med(key, 'rps'):8.0f} {med(key, 'p50_ms'):8.1f} "
            f"{med(key, 'p95_ms'):8.1f} {med(key, 'p99_ms'):8.1f}  {figures[key][-1]['codes']}"
        )
    rps, bare_rps = med("service loop", "rps"), med("bare loop", "rps")
    p95 = med("service crowd", "p95_ms")
    ok_rps, ok_p95 = rps >= 1000, p95 < 100
    print(f"status throughput {rps:.0f} rps = {rps / bare_rps:.2f}x the bare endpoint "
          f"(target >= 1000 rps) {'ok' if ok_rps else 'MISS'}")  # fmt: skip
    print(f"200 pollers: p95 {p95:.1f} ms (target < 100 ms) {'ok' if ok_p95 else 'MISS'}")
    return 0 if ok_rps and ok_p95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
