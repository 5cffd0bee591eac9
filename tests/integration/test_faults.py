"""Faults injected into real processes: an API, a worker, and a PostgreSQL and a Redis of the
test's own (never the shared ones). While each fault lasts, clients keep polling; afterwards
the service heals by itself, no job is lost and no detection is stored twice.

With ``NESYDET_FAULT_REPORT=<file>`` each test appends one JSON line: the fault, the status
codes clients got during it, the seconds until every probe answered normally again, and the
jobs' outcome (the closing note's table is made from it).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.prom import Process, start_api_server, wait_until
from tests.integration.test_e2e import (
    FAST,
    NO_SAHI,
    Deployment,
    assert_same_as_clean_run,
    status,
    submit,
    upload,
    wait_status,
)
from tests.pg_server import PostgresServer
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(600)]

SMALL = 512  # scene side: a few seconds of inference per image on two cores
# Normal answers of the probed endpoints; anything else during a fault is counted.
NORMAL = {"status": 200, "jobs": 200, "upload": 200, "health": 200}


@dataclass
class Probe:
    """Clients polling four endpoints in a loop, each answer recorded with its time."""

    url: str
    paths: dict[str, str]
    seen: list[tuple[float, str, int]] = field(default_factory=list)
    waits: list[tuple[float, str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=15) as client:
            while not self._stop.is_set():
                for name, path in self.paths.items():
                    asked = time.monotonic()
                    try:
                        code = client.get(path).status_code
                    except httpx.HTTPError:
                        code = 0  # no answer at all
                    answered = time.monotonic()
                    self.seen.append((answered, name, code))
                    self.waits.append((answered, name, answered - asked))
                self._stop.wait(0.05)

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def wait_answers(self, *, since: float, rounds: int = 15, timeout: float = 180) -> None:
        """Wait until every endpoint has answered ``rounds`` times since ``since`` (and the
        outage has lasted ``NESYDET_FAULT_OUTAGE_S``, 0 by default, for longer reports)."""
        lasting = float(os.environ.get("NESYDET_FAULT_OUTAGE_S", "0"))
        wait_until(
            lambda: time.monotonic() - since >= lasting and min(
                sum(1 for w, n, _ in self.seen if w >= since and n == name) for name in self.paths
            ) >= rounds,
            timeout=timeout, what=f"{rounds} rounds of probes",
        )  # fmt: skip

    def slowest(self, start: float, end: float) -> dict[str, float]:
        """Return each endpoint's longest wait (seconds) between two moments."""
        out: dict[str, float] = {}
        for when, name, wait in self.waits:
            if start <= when <= end:
                out[name] = round(max(out.get(name, 0.0), wait), 3)
        return out

    def codes(self, start: float, end: float) -> dict[str, dict[int, int]]:
        """Return each endpoint's status codes (counted) between two moments."""
        out: dict[str, Counter[int]] = {}
        for when, name, code in self.seen:
            if start <= when <= end:
                out.setdefault(name, Counter())[code] += 1
        return {name: dict(sorted(c.items())) for name, c in out.items()}

    def healed_after(self, moment: float, timeout: float = 60) -> float:
        """Return the seconds from ``moment`` until every endpoint answered normally for a
        whole round and kept doing so; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            after = [(w, n, c) for w, n, c in self.seen if w >= moment]
            bad = [w for w, n, c in after if c != NORMAL[n]]
            last_bad = max(bad, default=moment)
            good_since = [w for w, _, _ in after if w > last_bad]
            if len(good_since) >= 2 * len(NORMAL) and time.monotonic() - last_bad > 2:
                return round(last_bad - moment, 2)
            time.sleep(0.2)
        raise AssertionError(f"not healed within {timeout} s: {self.codes(moment, 1e12)}")


@dataclass
class Rig:
    """The service on a PostgreSQL and a Redis of the test's own."""

    pg: PostgresServer
    redis: RedisServer
    deployment: Deployment

    @property
    def url(self) -> str:
        return self.deployment.url

    def probe(self, client: httpx.Client, job_id: str, upload_id: str) -> Probe:
        return Probe(
            self.url,
            {
                "status": f"/api/v1/jobs/{job_id}/status",
                "jobs": "/api/v1/jobs?limit=5",
                "upload": f"/api/v1/uploads/{upload_id}",
                "health": "/healthz",
            },
        )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    pg = PostgresServer()
    pg.start()
    redis = RedisServer(tmp_path)
    redis.start()
    env = {
        **FAST,
        "NESYDET_DATABASE_URL": pg.url,
        "NESYDET_BROKER_URL": redis.url,
        "NESYDET_REDIS_URL": redis.url.replace("/0", "/1"),
        "NESYDET_RATE_LIMIT": "100000/minute",  # counted in Redis, never refused here
        "NESYDET_LOST_MESSAGE_AFTER_S": "3",
    }
    api = start_api_server(tmp_path / "deploy", **env)
    deployment = Deployment("faults", api, tmp_path / "deploy", pg.url, redis)
    try:
        yield Rig(pg, redis, deployment)
    finally:
        deployment.stop()
        pg.remove()


def report(**row: Any) -> None:
    """Append the scenario's figures to ``NESYDET_FAULT_REPORT`` when it is set."""
    target = os.environ.get("NESYDET_FAULT_REPORT")
    line = json.dumps(row)
    print(line)
    if target:
        with open(target, "a") as out:
            out.write(line + "\n")


def completed_once(rig: Rig, client: httpx.Client, up: dict[str, Any], job_id: str) -> None:
    """Assert the job completed, storing exactly what a clean run of its images stores."""
    body = wait_status(client, job_id, {"completed", "failed"}, 300, rig.deployment.workers)
    assert body["data"]["status"] == "completed", body
    assert_same_as_clean_run(rig.deployment, client, up["upload_id"], job_id, NO_SAHI)


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
def test_redis_away_costs_clients_nothing_and_jobs_are_sent_when_it_is_back(
    rig: Rig, fault: str
) -> None:
    rig.deployment.start_worker()
    with httpx.Client(base_url=rig.url, timeout=30) as client:
        up = upload(client, [101], size=SMALL)
        first = submit(client, up["upload_id"], config=NO_SAHI)
        completed_once(rig, client, up, first)
        with rig.probe(client, first, up["upload_id"]) as probe:
            began = time.monotonic()
            if fault == "stopped":
                rig.redis.stop()
            else:
                assert rig.redis.proc is not None
                os.kill(rig.redis.proc.pid, signal.SIGSTOP)
            during = submit(client, up["upload_id"], config=NO_SAHI)  # answered: 202
            probe.wait_answers(since=began)
            if fault == "stopped":
                rig.redis.start()
            else:
                assert rig.redis.proc is not None
                os.kill(rig.redis.proc.pid, signal.SIGCONT)
            ended = time.monotonic()
            healed = probe.healed_after(ended)
        codes = probe.codes(began, ended)
        completed_once(rig, client, up, during)
    assert all(code == 200 for by in codes.values() for code in by), codes
    report(fault=f"Redis {fault}", outage_s=round(ended - began, 1), codes=codes,
           slowest_s=probe.slowest(began, ended), healed_s=healed,
           jobs="completed once")  # fmt: skip


def test_postgres_down_answers_503_and_heals_by_itself(rig: Rig) -> None:
    gate = rig.deployment.gate("pg")
    worker = rig.deployment.start_worker(gate)
    with httpx.Client(base_url=rig.url, timeout=30) as client:
        up = upload(client, [102, 103], size=SMALL)
        job_id = submit(client, up["upload_id"], config=NO_SAHI)
        gate.release(1)
        # Held before image 2's inference: the job is running when the database goes.
        wait_until(lambda: gate.reached(2), timeout=120, what="image 2", process=worker)
        assert status(client, job_id)["data"]["status"] == "processing"
        with rig.probe(client, job_id, up["upload_id"]) as probe:
            began = time.monotonic()
            rig.pg.stop()
            gate.open()  # the worker computes image 2 while the database is away
            probe.wait_answers(since=began)
            down = client.get("/api/v1/jobs?limit=5")
            ready = client.get("/readyz")
            rig.pg.start()
            ended = time.monotonic()
            healed = probe.healed_after(ended)
        codes = probe.codes(began, ended)
        completed_once(rig, client, up, job_id)
    assert down.status_code == 503
    assert down.json()["error_code"] == "SERVICE_UNAVAILABLE"
    assert int(down.headers["retry-after"]) > 0
    assert ready.status_code == 503
    assert ready.json()["message"] == "Not ready: database"
    assert set(codes["jobs"]) <= {200, 503}, codes
    assert 503 in codes["jobs"], codes
    assert set(codes["upload"]) <= {200, 503}, codes
    assert set(codes["status"]) <= {200, 503}, codes  # the cache answers while it is fresh
    assert codes["health"] == {200: codes["health"][200]}, codes
    report(fault="PostgreSQL stopped", outage_s=round(ended - began, 1), codes=codes,
           slowest_s=probe.slowest(began, ended), healed_s=healed,
           jobs="completed once")  # fmt: skip


def active_jobs(worker: Process) -> float:
    assert worker.metrics_url is not None
    text = httpx.get(worker.metrics_url, timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "active_jobs":
            return sum(s.value for s in family.samples)
    return 0.0


def test_a_killed_pool_process_is_replaced_and_its_job_resumes(rig: Rig) -> None:
    gate = rig.deployment.gate("pool")
    worker = rig.deployment.start_worker(gate)
    with httpx.Client(base_url=rig.url, timeout=30) as client:
        up = upload(client, [104, 105, 106], size=SMALL)
        job_id = submit(client, up["upload_id"], config=NO_SAHI)
        gate.release(1)
        wait_until(lambda: gate.reached(2), timeout=120, what="image 2", process=worker)
        assert active_jobs(worker) == 1
        [child] = psutil.Process(worker.proc.pid).children()
        began = time.monotonic()
        child.send_signal(signal.SIGKILL)
        gate.open()
        wait_until(
            lambda: len(psutil.Process(worker.proc.pid).children()) == 1
            and psutil.Process(worker.proc.pid).children()[0].pid != child.pid,
            timeout=60, what="a replacement pool process", process=worker,
        )  # fmt: skip
        completed_once(rig, client, up, job_id)
        resumed = time.monotonic() - began
        wait_until(lambda: active_jobs(worker) == 0, timeout=30, what="active_jobs back to 0")
    log = worker.log_text()
    assert log.count("worker process ready") >= 2, log[-3000:]
    assert "Timed out waiting for UP message" not in log
    assert worker.proc.poll() is None, "the worker's main process lives on"
    [(attempts,)] = rig.deployment.query("SELECT attempts FROM jobs WHERE id = :j", j=job_id)
    assert attempts >= 2
    lines = [line for line in log.splitlines() if "ready" in line or "lost" in line.lower()]
    report(fault="pool process SIGKILL mid-job", job_completed_after_s=round(resumed, 1),
           attempts=attempts, jobs="completed once", log=lines)  # fmt: skip


def test_a_queued_job_whose_message_was_lost_is_sent_again(rig: Rig) -> None:
    with httpx.Client(base_url=rig.url, timeout=30) as client:
        up = upload(client, [107], size=SMALL)
        job_id = submit(client, up["upload_id"], config=NO_SAHI)  # no worker yet: it waits
        assert rig.redis.url  # the broker: restarted without persistence, the message is gone
        rig.redis.stop()
        rig.redis.start()
        began = time.monotonic()
        rig.deployment.start_worker()
        completed_once(rig, client, up, job_id)
        took = time.monotonic() - began
    assert "lost broker message: job resent" in rig.deployment.api.process.log_text()
    report(fault="broker restart without persistence (job queued)",
           job_completed_after_s=round(took, 1), jobs="completed once")  # fmt: skip
