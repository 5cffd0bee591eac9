"""Upload throughput and the server's memory while it streams uploads to disk.

Runs a real ``nesydet serve`` process and posts (a) one image of nearly 50 MB and (b) 100
images of about 1 MB each. Prints MB/s for each, the same bytes copied file-to-file on the
same disk as a baseline (and the ratio), and the server process's peak RSS growth during the
request. Target: RSS growth under 30 MB for either case (the body is streamed to disk, and
images are decoded in a separate checker process whose peak is printed too).

    .venv/bin/python bench/upload.py
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from tests.integration.prom import start_api_server

from bench._server import RssWatcher

MB = 1024 * 1024
TARGET_RSS_GROWTH = 30 * MB


def noise_png(path: Path, width: int, height: int, seed: int) -> int:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)
    return path.stat().st_size


def copy_baseline(files: list[Path], scratch: Path) -> float:
    """Return MB/s of copying the same files on the same disk."""
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    total = 0
    for i, path in enumerate(files):
        shutil.copyfile(path, scratch / f"{i}.bin")
        total += path.stat().st_size
    elapsed = time.perf_counter() - started
    shutil.rmtree(scratch)
    return total / MB / elapsed


def upload(url: str, files: list[Path]) -> tuple[float, int]:
    handles = [path.open("rb") for path in files]
    try:
        parts = [
            ("files", (path.name, handle, "image/png"))
            for path, handle in zip(files, handles, strict=True)
        ]
        started = time.perf_counter()
        response = httpx.post(url + "/api/v1/inference/upload", files=parts, timeout=600)
        elapsed = time.perf_counter() - started
    finally:
        for handle in handles:
            handle.close()
    if response.status_code != 200:
        raise RuntimeError(f"upload failed: {response.status_code} {response.text[:300]}")
    return elapsed, int(response.json()["data"]["total_bytes"])


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="nesydet-bench-") as tmp:
        root = Path(tmp)
        inputs = root / "inputs"
        inputs.mkdir()
        big = inputs / "big.png"
        noise_png(big, 4150, 4150, seed=1)
        small = []
        for i in range(100):
            path = inputs / f"small-{i:03d}.png"
            noise_png(path, 590, 590, seed=100 + i)
            small.append(path)
        cases = [("1 file of ~50 MB", [big]), ("100 files of ~1 MB", small)]
        server = start_api_server(root / "service", NESYDET_LOG_LEVEL="WARNING")
        try:
            upload(server.url, [small[0]])  # warm up: imports, pools, first connection
            rows = []
            for name, files in cases:
                baseline = copy_baseline(files, root / "copy")
                with RssWatcher(server.process.proc.pid) as watch:
                    before = watch.rss()
                    elapsed, total = upload(server.url, files)
                growth = watch.peak - before
                rows.append(
                    (
                        name,
                        total,
                        elapsed,
                        total / MB / elapsed,
                        baseline,
                        growth,
                        watch.children_peak,
                    )
                )
        finally:
            server.stop()
        print(
            f"{'case':<20} {'MB':>8} {'s':>7} {'MB/s':>8} {'copy MB/s':>10} {'ratio':>6} "
            f"{'RSS growth':>11} {'checker peak':>13} {'target':>7}"
        )
        ok = True
        for name, total, elapsed, rate, baseline, growth, child in rows:
            passed = growth < TARGET_RSS_GROWTH
            ok &= passed
            print(
                f"{name:<20} {total / MB:8.1f} {elapsed:7.2f} {rate:8.1f} {baseline:10.1f} "
                f"{rate / baseline:6.3f} {growth / MB:9.1f}MB {child / MB:11.1f}MB "
                f"{'ok' if passed else 'MISS':>7}"
            )
        print(f"target: server RSS growth < {TARGET_RSS_GROWTH // MB} MB per request")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
