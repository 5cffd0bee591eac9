"""The bulk download's memory: the API's RSS while it streams a ZIP of about 1 GB.

Starts a real ``nesydet serve`` (SQLite, local storage), writes a completed job straight into
its database and storage (``--images`` images, each with an original, an annotated image, a
thumbnail and ``--detections`` detections; the image files are hard links to a few random
blobs, so the disk holds little while the archive carries the full size), then downloads
``/api/v1/jobs/{id}/download?format=coco&include=labels,annotated,originals,thumbnails``,
reading the stream without keeping it. Prints the archive's size, the time, MB/s and the API
process's RSS growth over its level before the request (target: < 50 MB), and checks the
archive's end record (entry count).

    .venv/bin/python -m bench.download [--images 500] [--mb-per-image 2.0] [--detections 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import tempfile
import time
from pathlib import Path

import httpx
from tests.integration.prom import start_api_server

from bench._server import RssWatcher
from nesydet.db.base import utcnow
from nesydet.db.models import Detection, Job, JobFile, Upload, UploadedFile
from nesydet.db.session import create_engine, create_sessionmaker
from nesydet.domain import JobStatus

MB = 1024 * 1024
TARGET_RSS_GROWTH = 50 * MB
INCLUDE = "labels,annotated,originals,thumbnails"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--mb-per-image", type=float, default=2.0, help="original + annotated")
    parser.add_argument("--detections", type=int, default=40, help="per image")
    return parser.parse_args()


def blobs(folder: Path, size: int) -> dict[str, Path]:
    """Return random files to link every image's files to: original, annotated, thumbnail."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, nbytes in (("original", size // 2), ("annotated", size // 2), ("thumbnail", 40_000)):
        path = folder / name
        with path.open("wb") as handle:
            handle.write(b"\x89PNG\r\n\x1a\n" + os.urandom(nbytes - 8))
        out[name] = path
    return out


def link(storage: Path, key: str, source: Path) -> None:
    target = storage / key
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(source, target)


async def fabricate(database_url: str, storage: Path, args: argparse.Namespace) -> str:
    """Write a completed job of ``args.images`` images; return its id."""
    files = blobs(storage.parent / "blobs", int(args.mb_per_image * MB))
    now = utcnow()
    upload = Upload(id="upl_0000000000b1", file_count=args.images, total_bytes=0)
    job = Job(
        id="job_0000000000b1",
        upload_id=upload.id,
        status=JobStatus.COMPLETED,
        config={"model_path": "nesydet-demo-obb.pt"},
        model_name="nesydet-demo-obb",
        file_count=args.images,
        processed_count=args.images,
        created_at=now,
        updated_at=now,
        completed_at=now,
        time_limit_s=3600.0,
        total_detections=args.images * args.detections,
    )
    engine = create_engine(database_url)
    async with create_sessionmaker(engine)() as session:
        session.add(upload)
        await session.flush()
        session.add(job)
        await session.flush()
        size = files["original"].stat().st_size
        for n in range(args.images):
            file_id = f"img_{n:012x}"
            key = f"uploads/{upload.id}/{file_id}.png"
            results = f"results/{job.id}/{file_id}"
            link(storage, key, files["original"])
            link(storage, f"{results}/annotated.jpg", files["annotated"])
            link(storage, f"{results}/thumbnail.jpg", files["thumbnail"])
            session.add(
                UploadedFile(
                    id=file_id, upload_id=upload.id, position=n, filename=f"site/{n:05d}.png",
                    format="PNG", content_type="image/png", size_bytes=size,
                    width=2048, height=2048, mode="RGB", page_count=1, sha256="0" * 64,
                    storage_key=key,
                )
            )  # fmt: skip
        await session.flush()
        for n in range(args.images):
            file_id = f"img_{n:012x}"
            session.add(
                JobFile(
                    job_id=job.id, file_id=file_id, position=n, status="done",
                    detection_count=args.detections, width=2048, height=2048,
                    annotated_key=f"results/{job.id}/{file_id}/annotated.jpg",
                    thumbnail_key=f"results/{job.id}/{file_id}/thumbnail.jpg",
                )
            )  # fmt: skip
        await session.flush()
        rows = [
            {
                "job_id": job.id, "file_id": f"img_{n:012x}", "idx": k, "class_id": k % 15,
                "class_name": f"class{k % 15}", "confidence": 0.5 + k / 1000,
                "x_min": 10.0 * k, "y_min": 5.0 * k, "x_max": 10.0 * k + 40, "y_max": 5.0 * k + 30,
                "obb": [10.0 * k + 20, 5.0 * k + 15, 40.0, 30.0, 0.1],
                "polygon": [[10.0 * k, 5.0 * k], [10.0 * k + 40, 5.0 * k],
                            [10.0 * k + 40, 5.0 * k + 30], [10.0 * k, 5.0 * k + 30]],
                "reasoning": None,
            }
            for n in range(args.images)
            for k in range(args.detections)
        ]  # fmt: skip
        for start in range(0, len(rows), 5000):
            await session.run_sync(
                lambda s, part=rows[start : start + 5000]: s.execute(
                    Detection.__table__.insert(), part
                )
            )
        await session.commit()
    await engine.dispose()
    return job.id


def entries_in(tail: bytes) -> int:
    """Return the entry count of a ZIP's end record (ZIP64 when the archive needs it)."""
    at = tail.rfind(b"PK\x05\x06")
    entries = struct.unpack_from("<H", tail, at + 10)[0]
    if entries == 0xFFFF:
        at64 = tail.rfind(b"PK\x06\x06")
        entries = struct.unpack_from("<Q", tail, at64 + 32)[0]
    return int(entries)


def download(url: str, job_id: str) -> tuple[int, float, bytes]:
    """Stream the archive; return its size, seconds, and its last 64 KiB."""
    size = 0
    tail = b""
    started = time.perf_counter()
    params = {"format": "coco", "include": INCLUDE}
    with httpx.stream(
        "GET", f"{url}/api/v1/jobs/{job_id}/download", params=params, timeout=600
    ) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"download failed: {response.status_code} {response.text[:300]}")
        for chunk in response.iter_bytes(1024 * 1024):
            size += len(chunk)
            tail = (tail + chunk)[-65536:]
    return size, time.perf_counter() - started, tail


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="nesydet-bench-download-") as tmp:
        root = Path(tmp)
        server = start_api_server(root / "service", NESYDET_LOG_LEVEL="WARNING")
        try:
            storage = Path(server.env["NESYDET_STORAGE_ROOT"])
            job_id = asyncio.run(fabricate(server.env["NESYDET_DATABASE_URL"], storage, args))
            pid = server.process.proc.pid
            with RssWatcher(pid) as watch:
                before = watch.rss()
                size, elapsed, tail = download(server.url, job_id)
            growth = watch.peak - before
        finally:
            server.stop()
    expected = 1 + args.images * 3 + 1  # coco.json, 3 per image, manifest.json
    found = entries_in(tail)
    ok = growth < TARGET_RSS_GROWTH and found == expected
    print(
        f"{'images':>7} {'archive MB':>11} {'s':>7} {'MB/s':>7} {'entries':>8} "
        f"{'RSS before':>11} {'RSS growth':>11} {'target':>7}"
    )
    print(
        f"{args.images:7d} {size / MB:11.1f} {elapsed:7.2f} {size / MB / elapsed:7.1f} "
        f"{found:8d} {before / MB:9.1f}MB {growth / MB:9.1f}MB {'ok' if ok else 'MISS':>7}"
    )
    print(f"target: API RSS growth < {TARGET_RSS_GROWTH // MB} MB; {expected} entries expected")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
