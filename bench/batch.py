"""A batch of 1,000 images in one request: submission, the job, the bulk download, API memory.

Starts a real ``nesydet serve`` and one ``nesydet worker`` (SQLite and the filesystem
broker), zips ``--images`` demo scenes (``--distinct`` rendered ones, repeated
under different paths in ``--folders`` folders) and posts the archive to
``/api/v1/inference/batch`` with a config, so the job starts in the same request. Then waits
for the job (at most ``--deadline`` seconds), and downloads its results archive
(``format=json&include=labels,annotated``). Prints the time of each step, the job's own
processing time, the download's size, and the API process's peak RSS (and its growth over its
level before the request) during the submission, the job and the download.

The worker runs a stand-in for the model (:mod:`bench._stub_detector`: the same few boxes
in every image, everything after the model real) so that the default run is bounded; on the
2 CPU cores of a development machine the real model takes about 2 s per image (a thousand
images: half an hour). ``--real-model`` runs the real one.

    .venv/bin/python -m bench.batch [--images 1000] [--size 256] [--deadline 1500] [--real-model]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

from demo_scenes import generate_scene  # noqa: E402
from tests.integration.prom import Process, nesydet_command, spawn, start_api_server  # noqa: E402

from bench._server import RssWatcher  # noqa: E402
from bench._stub_detector import FACTORY as STUB  # noqa: E402

MB = 1024 * 1024
# One model pass per image, reasoning on: the service's per-image work without slicing.
CONFIG = '{"sahi": {"enabled": false}}'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--distinct", type=int, default=25, help="scenes rendered")
    parser.add_argument("--folders", type=int, default=10)
    parser.add_argument("--size", type=int, default=256, help="scene width and height")
    parser.add_argument("--deadline", type=float, default=1500, help="seconds the job may take")
    parser.add_argument("--real-model", action="store_true", help="not the stand-in")
    return parser.parse_args()


def archive(args: argparse.Namespace) -> bytes:
    """Return a ZIP of ``args.images`` scenes under ``site_NN/`` folders (stored, as photos)."""
    scenes = []
    for i in range(args.distinct):
        buf = io.BytesIO()
        generate_scene(args.size, args.size, 1000 + i).image.save(buf, format="PNG")
        scenes.append(buf.getvalue())
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for n in range(args.images):
            zf.writestr(f"site_{n % args.folders:02d}/scene_{n:05d}.png", scenes[n % len(scenes)])
    return out.getvalue()


def wait_for(client: httpx.Client, job_id: str, deadline: float) -> dict[str, Any]:
    """Return the job's final status; RuntimeError after ``deadline`` seconds."""
    until = time.monotonic() + deadline
    last = -1
    while True:
        data: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}/status").json()["data"]
        if data["status"] in {"completed", "failed", "cancelled"}:
            return data
        done = data["progress"]["processed_images"]
        if done // 100 != last // 100:
            print(f"  job: {done}/{data['progress']['total_images']} images", flush=True)
            last = done
        if time.monotonic() > until:
            raise RuntimeError(f"job {job_id} still {data['status']} after {deadline:.0f} s")
        time.sleep(1.0)


def download(client: httpx.Client, job_id: str) -> int:
    size = 0
    params = {"format": "json", "include": "labels,annotated"}
    with client.stream("GET", f"/api/v1/jobs/{job_id}/download", params=params) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"download failed: {response.status_code} {response.text[:300]}")
        for chunk in response.iter_bytes(1024 * 1024):
            size += len(chunk)
    return size


def main() -> int:
    args = parse_args()
    data = archive(args)
    print(f"archive: {args.images} images, {len(data) / MB:.1f} MB", flush=True)
    rows: list[tuple[str, float, str, int, int]] = []
    with tempfile.TemporaryDirectory(prefix="nesydet-bench-batch-") as tmp:
        api = start_api_server(
            Path(tmp) / "service", NESYDET_LOG_LEVEL="WARNING", NESYDET_IMAGE_CHECK_WORKERS="2"
        )
        worker: Process | None = None
        try:
            env = dict(api.env)
            if not args.real_model:
                path = os.environ.get("PYTHONPATH")
                env["NESYDET_DETECTOR_FACTORY"] = STUB
                env["PYTHONPATH"] = os.pathsep.join([str(REPO), *([path] if path else [])])
            cmd = nesydet_command("worker", "--concurrency", "1")
            worker = spawn("worker", cmd, env=env, cwd=api.root)
            pid = api.process.proc.pid
            with httpx.Client(base_url=api.url, timeout=900) as client:
                with RssWatcher(pid) as watch:
                    before = watch.rss()
                    started = time.perf_counter()
                    response = client.post(
                        "/api/v1/inference/batch",
                        files={"archive": ("batch.zip", data, "application/zip")},
                        data={"config": CONFIG},
                    )
                    elapsed = time.perf_counter() - started
                if response.status_code != 202:
                    raise RuntimeError(f"{response.status_code}: {response.text[:500]}")
                job_id = response.json()["data"]["job_id"]
                rows.append(("submit (202)", elapsed, "", before, watch.peak))
                with RssWatcher(pid) as watch:
                    before = watch.rss()
                    started = time.perf_counter()
                    status = wait_for(client, job_id, args.deadline)
                    elapsed = time.perf_counter() - started
                if status["status"] != "completed":
                    raise RuntimeError(f"the job ended {status['status']}: {status.get('error')}")
                own = status["summary"]["processing_time_seconds"]
                detections = status["summary"]["total_detections"]
                rows.append(
                    (f"job ({detections} detections)", elapsed, f"{own:.0f} s", before, watch.peak)
                )
                with RssWatcher(pid) as watch:
                    before = watch.rss()
                    started = time.perf_counter()
                    size = download(client, job_id)
                    elapsed = time.perf_counter() - started
                rows.append(("download", elapsed, f"{size / MB:.1f} MB", before, watch.peak))
        finally:
            if worker is not None:
                worker.stop()
            api.stop()
    print(f"{'step':<28} {'s':>8} {'':>10} {'API RSS before':>15} {'peak':>9} {'growth':>9}")
    for name, seconds, extra, rss_before, peak in rows:
        print(
            f"{name:<28} {seconds:8.1f} {extra:>10} {rss_before / MB:13.1f}MB "
            f"{peak / MB:7.1f}MB {(peak - rss_before) / MB:7.1f}MB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
