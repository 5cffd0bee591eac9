"""The service as several hosts (``hosts.py``): a services host, two API hosts behind nginx,
worker hosts on S3 storage, and Prometheus scraping each of them.

- The load balancer: a 50 MB upload streams through it and comes back intact, Server-Sent
  Events pass through unbuffered, and the API believes the client address and scheme nginx
  gives it, and no one else's.
- A worker host killed mid-run (every one of its processes, at once): every job completes
  exactly once (the same detections as a clean single-worker run of the same images), the
  other worker took the killed one's job over, Prometheus' sum of detections over all targets
  equals the database's, and the worker-down alert fires.
- A worker cut off from PostgreSQL, Redis and S3 (its network namespace's link dropped) while
  it holds a job: the job is taken over and completed, and when the worker comes back its late
  writes are refused; no detection is stored twice.

Worker hosts are held at a gate around the real model (``tests/gates.py``) where a scenario
needs a job at a given point; every wait is on a condition, with a deadline. Run alone with
``pytest tests/integration/test_multihost.py``. With ``NESYDET_MULTIHOST_REPORT=<file>`` each
scenario appends its summary there (it is logged and printed too).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

import httpx
import numpy as np
import pytest
from PIL import Image

from nesydet.config import Settings
from nesydet.services.uploads import UploadLimits
from tests.integration.hosts import (
    ALERT_FOR,
    CLIENT,
    INTERVAL,
    NGINX_CONF,
    Cluster,
    WorkerHost,
    WorkerSpec,
    json_records,
    running_cluster,
)
from tests.integration.prom import unavailable, wait_until
from tests.integration.test_e2e import (
    NO_SAHI,
    StoredDetection,
    assert_same_detections,
    status,
    stored_detections,
    submit,
    upload,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(900)]

log = logging.getLogger("tests.multihost")

SIZE = 512  # scene side: a few seconds of inference per image on two cores
# Ten jobs: five uploads of two scenes each, every upload predicted twice.
UPLOADS = [(301, 302), (303, 304), (305, 306), (307, 308), (309, 310)]
JOBS_PER_UPLOAD = 2
WORKER_DOWN = "InferenceWorkersTooFew"
TARGET_DOWN = "TargetDown"
# What a worker logs when a write finds its job no longer its own (runner.py).
REFUSED = "job cancelled or taken over; stopping"
# ... or, when a write failed on the way back (a connection lost in the cut), the job's
# failure could not be written either.
REFUSED_FAILURE = "job cancelled or taken over before its failure was written"
RECOVERED = "stale job recovered"  # the sweeper, in an API host's log


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("multihost"), links=2) as running:
        yield running


def summarize(title: str, lines: list[str]) -> None:
    """Log and print the scenario's summary; append it to ``NESYDET_MULTIHOST_REPORT``."""
    block = "\n".join([f"== multi-host: {title}", *(f"  {line}" for line in lines), ""])
    log.info("%s", block)
    print(block)
    target = os.environ.get("NESYDET_MULTIHOST_REPORT")
    if target:
        with open(target, "a") as out:
            out.write(block + "\n")


def statuses(cluster: Cluster, job_ids: list[str]) -> dict[str, str]:
    """Return each job's status."""
    rows = cluster.query("SELECT id, status FROM jobs WHERE id = ANY(:ids)", ids=job_ids)
    return {job_id: state for job_id, state in rows}


def wait_jobs_over(
    cluster: Cluster, job_ids: list[str], workers: list[WorkerHost], timeout: float = 420
) -> dict[str, str]:
    """Wait until every job has ended (completed, failed or cancelled); return statuses."""
    over = {"completed", "failed", "cancelled"}
    found: dict[str, str] = {}

    def ended() -> bool:
        found.update(statuses(cluster, job_ids))
        return len(found) == len(job_ids) and set(found.values()) <= over

    try:
        wait_until(ended, timeout=timeout, what=f"{len(job_ids)} jobs to end", interval=0.5)
    except TimeoutError as exc:
        logs = "\n".join(f"--- {w.name}\n{w.process.output()}" for w in workers)
        raise TimeoutError(f"{exc}: {Counter(found.values())}\n{logs}") from exc
    return found


def detections_of(
    cluster: Cluster, client: httpx.Client, job_id: str
) -> dict[str, list[StoredDetection]]:
    """Return the completed job's stored detections by file (checked to be numbered once
    each, as many as each file's count and the job's summary)."""
    body = status(client, job_id)
    assert body["data"]["status"] == "completed", body
    total = body["data"]["summary"]["total_detections"]
    # test_e2e's helper needs only ``query``, which the cluster has too.
    return stored_detections(cast(Any, cluster), job_id, total)


def assert_same_as(
    got: dict[str, list[StoredDetection]], clean: dict[str, list[StoredDetection]], job: str
) -> None:
    """Assert a job stored, image by image, what the clean run of its upload stored."""
    assert got.keys() == clean.keys(), f"{job}: other images than the clean run's"
    for file_id, dets in clean.items():
        assert_same_detections(got[file_id], dets, f"job {job}, file {file_id}")


def alert(cluster: Cluster, name: str, **labels: str) -> dict[str, Any] | None:
    """Return the firing alert ``name`` with ``labels``, if there is one."""
    for item in cluster.prometheus.alerts():
        have = item["labels"]
        if have.get("alertname") == name and all(have.get(k) == v for k, v in labels.items()):
            if item["state"] == "firing":
                return item
    return None


def active_since(item: dict[str, Any]) -> float:
    """Return the Unix time at which a Prometheus alert became active."""
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", item["activeAt"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def worker_down_is_silent(cluster: Cluster) -> bool:
    """Return whether the worker-down alert is neither pending nor firing."""
    return not any(a["labels"].get("alertname") == WORKER_DOWN for a in cluster.prometheus.alerts())


def api_logs(cluster: Cluster) -> list[dict[str, Any]]:
    """Return the JSON log records of every API host."""
    return [r for api in cluster.apis for r in json_records(api.host.processes[0].log_text())]


def held_job(cluster: Cluster, worker: WorkerHost) -> str | None:
    """Return the job a worker's pool process holds (processing, its claim), if any."""
    rows = cluster.query(
        "SELECT id FROM jobs WHERE status = 'processing' AND worker_id = ANY(:ids)",
        ids=sorted(cluster.worker_ids(worker)),
    )
    return rows[0][0] if rows else None


def done_files(cluster: Cluster, job_id: str) -> int:
    [(count,)] = cluster.query(
        "SELECT count(*) FROM job_files WHERE job_id = :j AND status = 'done'", j=job_id
    )
    return int(count)


def detections_stored_by(cluster: Cluster, job_id: str) -> int:
    [(count,)] = cluster.query("SELECT count(*) FROM detections WHERE job_id = :j", j=job_id)
    return int(count)


def snapshot(cluster: Cluster, job_ids: list[str]) -> str:
    """Return one line: the jobs by status, the database's detections, Prometheus' by host."""
    by_status = dict(sorted(Counter(statuses(cluster, job_ids).values()).items()))
    by_host = {h: int(v) for h, v in sorted(cluster.scraped_detections_by_host().items())}
    return (
        f"jobs {by_status}; detections in the database {cluster.stored_detections()}; "
        f"in Prometheus by host {by_host}"
    )


# --- the load balancer ------------------------------------------------------------------------


def big_tiff() -> bytes:
    """Return an uncompressed TIFF of noise just under the 50 MiB file limit (49.5 MiB)."""
    rng = np.random.default_rng(50)
    pixels = rng.integers(0, 256, size=(4160, 4160, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="TIFF")
    return buf.getvalue()


def nginx_upload_limit() -> int:
    """Return the upload location's ``client_max_body_size`` in deploy/nginx, in bytes."""
    conf = NGINX_CONF.read_text()
    block = conf[conf.index("location = /api/v1/inference/upload") :]
    size = re.search(r"client_max_body_size (\d+)m;", block)
    assert size is not None, "no client_max_body_size in the upload location"
    return int(size.group(1)) * 1024 * 1024


def sse_statuses(cluster: Cluster, client: httpx.Client, job_id: str) -> tuple[list[str], str]:
    """Follow the job's event stream through the load balancer; cancel the job as soon as the
    first event has arrived. Return the statuses the stream told and the cancel's answer.

    Only a stream passed on as it comes can deliver that first event: the job is queued with
    no worker to run it, and ends only by the cancel sent after the event was read.
    """
    seen: list[str] = []
    cancelled = ""
    deadline = time.monotonic() + 60
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=30) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            assert time.monotonic() < deadline, f"the event stream ran past 60 s: {seen}"
            if not line.startswith("data: "):
                continue
            seen.append(json.loads(line.removeprefix("data: "))["status"])
            if len(seen) == 1:
                with cluster.lb.client() as other:
                    answer = other.post(f"/api/v1/jobs/{job_id}/cancel")
                cancelled = f"{answer.status_code} {answer.json()['data']['status']}"
    return seen, cancelled


def test_the_load_balancer_streams_uploads_and_events_and_is_the_only_trusted_proxy(
    cluster: Cluster,
) -> None:
    assert not cluster.workers, "runs with no worker host: a job stays queued"
    limits = UploadLimits(
        Settings.model_fields["max_file_size_bytes"].default,
        Settings.model_fields["max_files_per_upload"].default,
    )
    # nginx lets through the largest request the API takes, and not much more.
    assert 0 <= nginx_upload_limit() - limits.max_body_size < 1024 * 1024
    big = big_tiff()
    assert 49 * 1024 * 1024 < len(big) <= limits.max_file_size
    spoofed = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    with cluster.lb.client(timeout=300) as client:
        began = time.monotonic()
        sent = client.post(
            "/api/v1/inference/upload",
            files=[("files", ("big.tiff", big, "image/tiff"))],
            headers=spoofed,
        )
        upload_s = time.monotonic() - began
        assert sent.status_code == 200, sent.text
        assert "strict-transport-security" in sent.headers, "X-Forwarded-Proto not believed"
        data = sent.json()["data"]
        [item] = data["uploaded_files"]
        original = client.get(f"/api/v1/files/{item['file_id']}/original")
        assert original.status_code == 200
        assert hashlib.sha256(original.content).digest() == hashlib.sha256(big).digest()

        small = upload(client, [311], size=256)
        job_id = submit(client, small["upload_id"], config=NO_SAHI)
        seen, cancelled = sse_statuses(cluster, client, job_id)
    # Queued (once, or more if its payload changed) until the cancel, then cancelled: the end.
    assert seen[0] == "queued", seen
    assert seen[-1] == "cancelled", seen
    assert set(seen) == {"queued", "cancelled"}, seen
    assert cancelled == "200 cancelled"

    # Straight to an API host, the same made-up headers count for nothing.
    transport = httpx.HTTPTransport(local_address=CLIENT)
    with httpx.Client(base_url=cluster.apis[0].url, transport=transport, timeout=60) as direct:
        response = direct.post(
            "/api/v1/inference/upload",
            files=[("files", ("small.png", _png(), "image/png"))],
            headers=spoofed,
        )
    assert response.status_code == 200, response.text
    assert "strict-transport-security" not in response.headers
    addresses = dict(
        cluster.query(
            "SELECT id, client_address FROM uploads WHERE id = ANY(:ids)",
            ids=[data["upload_id"], response.json()["data"]["upload_id"]],
        )
    )
    assert addresses == {
        data["upload_id"]: CLIENT,  # nginx's peer, as nginx told it
        response.json()["data"]["upload_id"]: CLIENT,  # the peer itself: no trusted proxy
    }
    lb_log = cluster.lb.host.root / "access.log"
    summarize(
        "the load balancer",
        [
            *cluster.hosts(),
            f"upload of {len(big):,} bytes (one TIFF) through nginx: 200 in {upload_s:.1f} s; "
            f"read back through nginx, SHA-256 equal",
            f"nginx's upload limit {nginx_upload_limit():,} bytes >= the API's largest request "
            f"{limits.max_body_size:,}",
            f"events of a queued job through nginx: {seen} (cancelled after the first arrived)",
            f"client address stored: {CLIENT} through nginx and directly, with "
            f"'X-Forwarded-For: 203.0.113.7' sent both times; HSTS through nginx only",
            f"nginx requests logged: {len(lb_log.read_text().splitlines())}",
        ],
    )


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (128, 128), (40, 90, 30)).save(buf, format="PNG")
    return buf.getvalue()


# --- a worker host killed -----------------------------------------------------------------------


def test_a_worker_host_killed_mid_run_costs_no_job_and_no_count(cluster: Cluster) -> None:
    a, b = cluster.start_workers(WorkerSpec("worker-a", gated=True), WorkerSpec("worker-b"))
    assert a.gate is not None
    try:
        wait_until(
            lambda: worker_down_is_silent(cluster),
            timeout=60, what=f"{WORKER_DOWN} to be silent with two workers",
        )  # fmt: skip
        a.gate.release(1)  # worker-a stores one image, then is held before its second
        with cluster.lb.client() as client:
            uploads = [upload(client, list(seeds), size=SIZE) for seeds in UPLOADS]
            jobs = [
                submit(client, up["upload_id"], config=NO_SAHI)
                for up in uploads
                for _ in range(JOBS_PER_UPLOAD)
            ]
            held, kill = kill_worker_holding_a_job(cluster, a, jobs)
            before = snapshot(cluster, jobs)
            ended = wait_jobs_over(cluster, jobs, [b])
            after = snapshot(cluster, jobs)
            assert set(ended.values()) == {"completed"}, ended
            takeover = check_taken_over(cluster, held, a, b)
            # The clean run: the same images, once each, with worker-b alone.
            clean = [submit(client, up["upload_id"], config=NO_SAHI) for up in uploads]
            assert set(wait_jobs_over(cluster, clean, [b]).values()) == {"completed"}
            images = compare_with_clean_run(cluster, client, jobs, clean)
        firing = wait_for_worker_down(cluster, a, kill["at"])
        cluster.settle(b)
        prom, db = wait_counts_agree(cluster)
        attempts = dict(
            cluster.query("SELECT id, attempts FROM jobs WHERE id = ANY(:ids)", ids=jobs)
        )
        summarize(
            "a worker host killed mid-run",
            [
                *cluster.hosts(),
                f"jobs: {len(jobs)} ({len(uploads)} uploads of 2 images x {JOBS_PER_UPLOAD}), "
                f"submitted through nginx; attempts {dict(Counter(attempts.values()))}",
                f"the kill: worker-a held {held} (1 of 2 images stored, held before the 2nd); "
                f"SIGKILL to all {len(kill['pids'])} processes {kill['pids']} at once",
                f"before: {before}",
                f"after:  {after}",
                f"taken over: {takeover}",
                f"clean single-worker run (worker-b alone, {len(clean)} jobs): {images}",
                f"Prometheus sum(last_over_time(detection_count_total[1h])) over all targets "
                f"= {prom:g}; database count(*) of detections = {db}",
                f"alerts firing: {firing}",
            ],
        )
    finally:
        for worker in (a, b):
            if worker in cluster.workers:
                cluster.retire(worker)


def kill_worker_holding_a_job(
    cluster: Cluster, victim: WorkerHost, jobs: list[str]
) -> tuple[str, dict[str, Any]]:
    """Wait until ``victim`` holds a job with one image stored and Prometheus has counted
    that image's detections, then kill every process of its host; return the job and the
    kill (its pids and Unix time)."""
    gate = victim.gate
    assert gate is not None
    wait_until(
        lambda: gate.reached(2),
        timeout=300, what="worker-a at its second image", process=victim.process,
    )  # fmt: skip
    wait_until(
        lambda: held_job(cluster, victim) is not None,
        timeout=30, what="worker-a's job in the database",
    )  # fmt: skip
    held = held_job(cluster, victim)
    assert held in jobs
    wait_until(lambda: done_files(cluster, held) == 1, timeout=60, what="its first image stored")
    # Held at the gate with its image stored, worker-a counts nothing more: once Prometheus
    # has its count, the kill loses none.
    stored = detections_stored_by(cluster, held)
    wait_until(
        lambda: cluster.scraped_detections(victim.target) == stored,
        timeout=30, what=f"Prometheus to count worker-a's {stored} detections",
    )  # fmt: skip
    ids = cluster.worker_ids(victim)
    at = time.time()
    victim.killed = victim.host.kill()
    assert cluster.worker_ids(victim) == ids
    return held, {"pids": victim.killed, "at": at}


def check_taken_over(cluster: Cluster, job_id: str, dead: WorkerHost, other: WorkerHost) -> str:
    """Assert the other worker completed the dead one's job, on a second attempt, after the
    sweeper re-queued it; return how."""
    [(worker_id, attempts)] = cluster.query(
        "SELECT worker_id, attempts FROM jobs WHERE id = :j", j=job_id
    )
    assert worker_id in cluster.worker_ids(other), (worker_id, cluster.worker_ids(other))
    assert worker_id not in cluster.worker_ids(dead)
    assert attempts == 2, attempts
    recovered = [r for r in api_logs(cluster) if r.get("message") == RECOVERED]
    assert any(r.get("job_id") == job_id for r in recovered), recovered
    return (
        f"{job_id} re-queued by the sweeper ('{RECOVERED}', outcome requeued), completed by "
        f"{other.name} ({worker_id}) on attempt {attempts}"
    )


def compare_with_clean_run(
    cluster: Cluster,
    client: httpx.Client,
    jobs: list[str],
    clean: list[str],
) -> str:
    """Assert each job stored, image by image, exactly the clean run's detections."""
    images = detections = 0
    for n, clean_id in enumerate(clean):
        want = detections_of(cluster, client, clean_id)
        for job_id in jobs[n * JOBS_PER_UPLOAD : (n + 1) * JOBS_PER_UPLOAD]:
            got = detections_of(cluster, client, job_id)
            assert_same_as(got, want, job_id)
            images += len(got)
            detections += sum(len(d) for d in got.values())
    return (
        f"{images} job images, {detections} detections: class, confidence and box equal one to "
        "one, each stored once"
    )


def wait_for_worker_down(cluster: Cluster, dead: WorkerHost, killed_at: float) -> list[str]:
    """Wait until the worker-down alert (and the dead host's TargetDown) fire, both since the
    kill; return them."""
    found: dict[str, dict[str, Any]] = {}

    def firing() -> bool:
        for name, labels in ((WORKER_DOWN, {}), (TARGET_DOWN, {"instance": dead.target})):
            item = alert(cluster, name, **labels)
            if item is not None:
                found[name] = item
        return len(found) == 2

    wait_until(firing, timeout=90, what=f"{WORKER_DOWN} and {TARGET_DOWN} to fire")
    for item in found.values():
        assert active_since(item) > killed_at, item
    # Pending from activeAt, firing from the first evaluation ``for:`` later.
    return [
        f"{name}{where} = {float(item['value']):g}: pending at {item['activeAt']}, "
        f"{active_since(item) - killed_at:.1f} s after the kill; firing "
        f"{ALERT_FOR} later (for: {ALERT_FOR}, evaluated every {INTERVAL})"
        for name, where, item in (
            (WORKER_DOWN, " max(active_workers)", found[WORKER_DOWN]),
            (TARGET_DOWN, f' up{{instance="{dead.target}"}}', found[TARGET_DOWN]),
        )
    ]


def wait_counts_agree(cluster: Cluster) -> tuple[float, int]:
    """Wait until Prometheus' detections over all targets equal the database's; return both."""
    seen: list[tuple[float, int]] = []

    def agree() -> bool:
        seen.append((cluster.scraped_detections(), cluster.stored_detections()))
        return seen[-1][0] == seen[-1][1]

    try:
        wait_until(agree, timeout=30, what="Prometheus' count to equal the database's")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: (Prometheus, database) {seen[-3:]}") from exc
    return seen[-1]


# --- a worker cut off ---------------------------------------------------------------------------


def test_a_worker_cut_off_while_holding_a_job_is_taken_over_and_fenced(cluster: Cluster) -> None:
    if cluster.links_unavailable:
        unavailable(cluster.links_unavailable)
    c, d = cluster.start_workers(
        WorkerSpec("worker-c", cluster.links[0], gated=True),
        WorkerSpec("worker-d", cluster.links[1], gated=True),
    )
    try:
        with cluster.lb.client() as client:
            up = upload(client, [401, 402, 403], size=SIZE)
            job_id = submit(client, up["upload_id"], config=NO_SAHI)
            cut, _, story = cut_off_the_holder(cluster, job_id, c, d)
            assert cut.gate is not None
            assert cut.link is not None
            taken = detections_of(cluster, client, job_id)
            rows_taken = job_rows(cluster, job_id)
            artefacts = s3_objects(cluster, job_id)
            cut.link.restore()
            cut.gate.open()  # the cut-off worker goes on with the job it thinks it holds
            refused = wait_refused(cut, job_id)
            assert job_rows(cluster, job_id) == rows_taken, "a late write changed the job"
            late = detections_of(cluster, client, job_id)
            assert late == taken
            rewritten = sorted(
                key for key, etag in s3_objects(cluster, job_id).items() if artefacts[key] != etag
            )
            clean_id = submit(client, up["upload_id"], config=NO_SAHI)
            assert set(wait_jobs_over(cluster, [clean_id], [c, d]).values()) == {"completed"}
            assert_same_as(late, detections_of(cluster, client, clean_id), job_id)
        for worker in (c, d):
            cluster.settle(worker)
        prom, db = wait_counts_agree(cluster)
        summarize(
            "a worker cut off from PostgreSQL, Redis and S3",
            [
                *cluster.hosts(),
                *story,
                f"late writes: {refused}; the job's row, files and "
                f"{sum(len(v) for v in late.values())} detections unchanged by them",
                f"S3 artefacts rewritten after the take-over (same content): {rewritten or 'none'}",
                "the job's detections equal a clean run's, image by image, each stored once",
                f"Prometheus sum over all targets = {prom:g}; database = {db}",
            ],
        )
    finally:
        for worker in (c, d):
            if worker.link is not None:
                with contextlib.suppress(RuntimeError):
                    worker.link.restore()
            if worker in cluster.workers:
                cluster.retire(worker)


def cut_off_the_holder(
    cluster: Cluster, job_id: str, *candidates: WorkerHost
) -> tuple[WorkerHost, WorkerHost, list[str]]:
    """Let the job's first image through; cut the link of whichever worker holds the job
    (held before its second image), and wait until the other one has taken it over and
    completed it. Return (cut-off worker, the other, what happened)."""
    for worker in candidates:
        assert worker.gate is not None
        worker.gate.release(1)

    def at_second_image() -> list[WorkerHost]:
        return [w for w in candidates if w.gate is not None and w.gate.reached(2)]

    wait_until(
        lambda: bool(at_second_image()), timeout=300, what="a worker at the job's second image"
    )
    [cut] = at_second_image()
    [other] = [w for w in candidates if w is not cut]
    assert cut.gate is not None
    assert other.gate is not None
    assert cut.link is not None
    wait_until(lambda: held_job(cluster, cut) == job_id, timeout=30, what="the claim in the DB")
    wait_until(lambda: done_files(cluster, job_id) == 1, timeout=60, what="image 1 stored")
    stored = detections_stored_by(cluster, job_id)
    wait_until(
        lambda: cluster.scraped_detections(cut.target) == stored,
        timeout=30, what=f"Prometheus to count {cut.name}'s {stored} detections",
    )  # fmt: skip
    [(token, attempts)] = cluster.query(
        "SELECT claim_token, attempts FROM jobs WHERE id = :j", j=job_id
    )
    cut_at = time.monotonic()
    cut.link.cut()
    other.gate.open()
    wait_until(
        lambda: statuses(cluster, [job_id]) == {job_id: "completed"},
        timeout=300, what="the job to be taken over and completed", process=other.process,
    )  # fmt: skip
    taken_s = time.monotonic() - cut_at
    [(worker_id, now_attempts, now_token)] = cluster.query(
        "SELECT worker_id, attempts, claim_token FROM jobs WHERE id = :j", j=job_id
    )
    assert worker_id in cluster.worker_ids(other), worker_id
    assert now_attempts == attempts + 1
    assert now_token != token
    assert not cut.gate.passed(2), "the cut-off worker must still be before its second image"
    recovered = [r for r in api_logs(cluster) if r.get("message") == RECOVERED]
    assert any(r.get("job_id") == job_id for r in recovered), recovered
    return (
        cut,
        other,
        [
            f"job {job_id}: 3 images; {cut.name} claimed it (attempt {attempts}), stored image "
            f"1, held before image 2",
            f"the cut: `ip link set {cut.link.outer} down` (netns {cut.link.netns}, "
            f"{cut.link.inner_address} <-> {cut.link.outer_address})",
            f"taken over: the sweeper re-queued it ('{RECOVERED}'), {other.name} completed it "
            f"on attempt {now_attempts}, {taken_s:.1f} s after the cut; claim token "
            f"{token} -> {now_token}",
        ],
    )


def job_rows(cluster: Cluster, job_id: str) -> list[tuple[Any, ...]]:
    """Return the job's row and its files' rows (what a late write could change)."""
    return cluster.query(
        "SELECT status, worker_id, claim_token, attempts, version, processed_count, "
        "total_detections FROM jobs WHERE id = :j",
        j=job_id,
    ) + cluster.query(
        "SELECT file_id, status, detection_count, processed_at FROM job_files "
        "WHERE job_id = :j ORDER BY file_id",
        j=job_id,
    )


def s3_objects(cluster: Cluster, job_id: str) -> dict[str, str]:
    """Return the job's result objects in S3 and the ETag and time each was last written."""
    listed = cluster.services.s3().list_objects_v2(Bucket="nesydet", Prefix=f"results/{job_id}/")
    return {
        item["Key"]: f"{item['ETag']} {item['LastModified'].isoformat()}"
        for item in listed.get("Contents", [])
    }


def wait_refused(worker: WorkerHost, job_id: str) -> str:
    """Wait until the worker logs that its write was refused (the job no longer its own)."""
    found: list[str] = []

    def refused() -> bool:
        found[:] = [
            r["message"]
            for r in worker.log_records()
            if (r.get("message") == REFUSED and r.get("job_id") == job_id)
            or r.get("message") == REFUSED_FAILURE  # this worker has had no other job
        ]
        return bool(found)

    wait_until(
        refused, timeout=180, what=f"{worker.name} to find its claim gone", process=worker.process
    )
    assert worker.gate is not None
    assert worker.gate.passed(2), "it ran image 2 after the cut"
    return f"{worker.name} ran image 2, then its write was refused: {found[0]!r}"
