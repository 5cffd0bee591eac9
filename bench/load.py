"""The spec's load test: Locust users against the real API with one real worker behind it.

Starts the service as in production (PostgreSQL, Redis broker, status cache and rate limits,
a limit high enough never to refuse; local storage), one ``nesydet worker``, then
``locust --headless`` in a process of its own running ``bench/locustfile.py``: users upload a
scene, start a job, poll it, fetch its results, list jobs and check ``/healthz``. Prints the
request count and p50/p95/p99 latency of every endpoint (by route template) from Locust's CSV
statistics, each marked against the spec's p95 < 200 ms. It reports, never asserts: Locust,
the API, the worker, PostgreSQL and Redis share this machine's cores, so every figure includes
waiting for a core (and the spec's own load test asks for 1,000 users, on production hosts).

    .venv/bin/python -m bench.load [--users 20] [--spawn-rate 5] [--seconds 60] [--embedded]
        [--auth]

Bounded: Locust stops its users after ``--seconds`` (each may finish its current request, for
at most 10 s more), and is killed if it has not ended 180 s after that.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.integration.prom import nesydet_command

from bench._deploy import Service, start_service
from bench._server import REPO

TARGET_P95_MS = 200.0  # the spec's API latency target
FEW_REQUESTS = 20
LOCUSTFILE = REPO / "bench" / "locustfile.py"
LOAD_USER = "loadtest"


@dataclass(frozen=True)
class EndpointStats:
    """One line of Locust's ``*_stats.csv``: an endpoint, or the aggregate of all."""

    method: str
    name: str
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def verdict(self) -> str:
        if math.isnan(self.p95_ms):
            return "-"
        return "PASS" if self.p95_ms < TARGET_P95_MS else "FAIL"


def _ms(value: str) -> float:
    # Locust writes "N/A" for an endpoint with no requests.
    try:
        return float(value)
    except ValueError:
        return float("nan")


def read_stats(path: Path) -> list[EndpointStats]:
    """Returns the rows of Locust's ``--csv`` statistics file ``path``."""
    with path.open(newline="") as handle:
        return [
            EndpointStats(
                method=row["Type"],
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                p50_ms=_ms(row["50%"]),
                p95_ms=_ms(row["95%"]),
                p99_ms=_ms(row["99%"]),
            )
            for row in csv.DictReader(handle)
        ]


def read_failures(path: Path) -> list[str]:
    """Returns one line per distinct failure in Locust's ``*_failures.csv``."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [
            f"{row['Occurrences']:>6} x {row['Method']} {row['Name']}: {row['Error']}"
            for row in csv.DictReader(handle)
        ]


def _cell(ms: float) -> str:
    return f"{'-':>7}" if math.isnan(ms) else f"{ms:>7.0f}"


def format_stats(rows: list[EndpointStats]) -> list[str]:
    """Returns the report table: endpoints by request count, the aggregate last."""
    endpoints = sorted((r for r in rows if r.name != "Aggregated"), key=lambda r: -r.requests)
    total = [r for r in rows if r.name == "Aggregated"]
    width = max([len(r.name) for r in rows] + [8])
    lines = [
        f"{'method':<6} {'endpoint':<{width}} {'requests':>8} {'fail':>5} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}  p95 < {TARGET_P95_MS:.0f} ms"
    ]
    for r in [*endpoints, *total]:
        lines.append(
            f"{r.method:<6} {r.name:<{width}} {r.requests:>8} {r.failures:>5} "
            f"{_cell(r.p50_ms)} {_cell(r.p95_ms)} {_cell(r.p99_ms)}  {r.verdict}"
        )
    return lines


def summary(rows: list[EndpointStats]) -> str:
    """Returns one line: how many endpoints meet the p95 target, and which do not."""
    judged = [r for r in rows if r.name != "Aggregated" and r.verdict != "-"]
    over = [f"{r.method} {r.name} ({r.p95_ms:.0f} ms)" for r in judged if r.verdict == "FAIL"]
    few = sum(1 for r in judged if r.requests < FEW_REQUESTS)
    line = f"p95 < {TARGET_P95_MS:.0f} ms: {len(judged) - len(over)} of {len(judged)} endpoints"
    line += f"; over: {', '.join(over)}" if over else ""
    if few:
        line += (
            f"; {few} with under {FEW_REQUESTS} requests, whose p95 is about their slowest "
            "request (run longer or with more users)"
        )
    return line


def create_account(service: Service) -> tuple[str, str]:
    """Returns the name and password of a new user account for the load test."""
    password = secrets.token_urlsafe(18)
    cmd = nesydet_command("users", "create", LOAD_USER, "--role", "user", "--password-stdin")
    subprocess.run(
        cmd, input=password, text=True, env=service.api.env, cwd=service.api.root,
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    return LOAD_USER, password


def run_locust(url: str, out: Path, args: argparse.Namespace, env: dict[str, str]) -> Path:
    """Runs Locust headless against ``url``; returns the prefix of its CSV files."""
    prefix = out / "locust"
    cmd = [
        str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--headless",
        "--host", url, "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
        "--run-time", f"{args.duration}s", "--stop-timeout", "10", "--csv", str(prefix),
        "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0",
    ]  # fmt: skip
    result = subprocess.run(
        cmd, env=env, cwd=REPO, capture_output=True, text=True,
        timeout=args.duration + 180, check=False,
    )  # fmt: skip
    if result.returncode != 0 or not Path(f"{prefix}_stats.csv").exists():
        raise RuntimeError(f"locust failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return prefix


def parse_args() -> argparse.Namespace:
    """Returns the command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=20, help="concurrent Locust users")
    parser.add_argument("--spawn-rate", type=float, default=5, help="users started a second")
    parser.add_argument(
        "--seconds", "--duration", dest="duration", type=int, default=60, metavar="SECONDS",
        help="seconds of load",
    )  # fmt: skip
    parser.add_argument("--embedded", action="store_true", help="SQLite and the filesystem broker")
    parser.add_argument(
        "--auth", action="store_true",
        help="accounts required: every user logs in with a password, then sends its token",
    )  # fmt: skip
    args = parser.parse_args()
    if args.users < 1 or args.duration < 1 or args.spawn_rate <= 0:
        parser.error("--users, --seconds and --spawn-rate must be positive")
    return args


def main() -> int:
    """Returns 0 after printing the per-endpoint latencies (a report, not a pass or fail)."""
    args = parse_args()
    # The service's own defaults where the test set-up lowers them (checker pool, log format).
    settings = {
        "NESYDET_RATE_LIMIT": "100000000/minute",
        "NESYDET_IMAGE_CHECK_WORKERS": "2",
        "NESYDET_LOG_FORMAT": "json",
    }
    if args.auth:
        settings.update(NESYDET_AUTH_MODE="required", NESYDET_JWT_SECRET=secrets.token_hex(32))
    locust_env = {k: v for k, v in os.environ.items() if not k.startswith("NESYDET_")}
    with tempfile.TemporaryDirectory(prefix="nesydet-load-") as tmp:
        root = Path(tmp)
        service = start_service(
            root, database="nesydet_bench_load", embedded=args.embedded, **settings
        )
        try:
            if args.auth:
                name, password = create_account(service)
                locust_env.update(NESYDET_LOAD_USERNAME=name, NESYDET_LOAD_PASSWORD=password)
            service.start_workers(1, tag="load")
            prefix = run_locust(service.api.url, root, args, locust_env)
            rows = read_stats(Path(f"{prefix}_stats.csv"))
            failures = read_failures(Path(f"{prefix}_failures.csv"))
        finally:
            service.stop()
    print(f"set-up: {service.setup}; one worker; auth {'required' if args.auth else 'none'}")
    print(
        f"load: {args.users} Locust users (started {args.spawn_rate:g}/s) for {args.duration} s, "
        "each waiting 2-5 s between actions"
    )
    print(
        f"note: Locust shares this machine's {os.cpu_count()} CPU cores with the API, the "
        "worker, PostgreSQL and Redis (and anything else running): latencies include waiting "
        "for a core and are indicative only"
    )
    print("\n".join(format_stats(rows)))
    print(summary(rows))
    if failures:
        print("failures:\n" + "\n".join(failures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
