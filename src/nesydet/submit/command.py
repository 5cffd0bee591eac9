"""``nesydet submit``: send images, start the job, follow it, fetch its results archive.

A directory goes up as one ZIP archive to ``POST /api/v1/inference/batch`` (built while it
is sent, its ``config`` field starting the job in the same request). Where the server has no
batch endpoint, or with ``--chunked``, the images go up in uploads of at most 100 files, and
each upload gets a job of its own, started as soon as the upload is in (so the first job runs
while the next upload is sent). Each job is followed on its event stream (its status polled
where there is none), and each completed job's archive is unpacked under ``--out``.
"""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from nesydet.submit import inputs
from nesydet.submit.errors import EXIT_FAILED, SubmitError, usage
from nesydet.submit.follow import POLL_S, Status, watch
from nesydet.submit.inputs import Image, Part
from nesydet.submit.progress import bar, human_bytes
from nesydet.submit.transport import (
    CHECK_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    Server,
    error_code,
    refusal,
)

BATCH = "/api/v1/inference/batch"
ME = "/api/v1/auth/me"
UPLOAD = "/api/v1/inference/upload"
PREDICT = "/api/v1/inference/predict"
MAX_CHUNK = 100  # files per upload request (the spec's limit)


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asked for."""

    inputs: list[Path]
    server: str
    out: Path
    api_key: str | None = None
    config: dict[str, Any] | None = None
    fmt: str = "json"
    include: str = "labels,annotated"
    chunked: bool = False
    chunk_size: int = MAX_CHUNK
    keep_zip: bool = False
    quiet: bool = False
    poll_s: float = POLL_S


@dataclass(frozen=True, slots=True)
class Job:
    """A job started by this submission."""

    job_id: str
    file_count: int


def plural(count: int, noun: str) -> str:
    """Return ``1 image``, ``3 images``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def say(text: str) -> None:
    """Print a progress note on standard error."""
    print(text, file=sys.stderr, flush=True)


def submit(opts: Options, *, transport: httpx.BaseTransport | None = None) -> int:
    """Run one submission; return the exit status (0: every job completed and was fetched).

    Raises:
        SubmitError: the input, the server or the connection failed the submission.
    """
    selection = inputs.collect(opts.inputs)
    _prepare_out(opts.out)
    server = Server(opts.server, opts.api_key, transport=transport)
    try:
        images = selection.images
        size = human_bytes(sum(image.size for image in images))
        others = plural(selection.left_out, "other file")
        left_out = f" ({others} left out)" if selection.left_out else ""
        say(f"submit: {plural(len(images), 'image')} ({size}) to {server.url}{left_out}")
        _check_credentials(server)
        jobs = _send(server, images, opts)
        return _finish(server, jobs, opts)
    finally:
        server.close()


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise usage(
            "FILE_ERROR", f"--out: cannot make the directory {out}: {exc.strerror}"
        ) from exc


def _send(server: Server, images: list[Image], opts: Options) -> list[Job]:
    """Upload the images and start their job(s); return the jobs."""
    config = opts.config or {}
    if not opts.chunked:
        if _has_batch(server):
            job = _send_batch(server, images, config, opts.quiet)
            if job is not None:
                return [job]
        say(f"submit: the server has no batch endpoint: uploads of {opts.chunk_size} images")
    return _send_chunks(server, images, config, opts)


def _check_credentials(server: Server) -> None:
    """Raise if the server turns the credentials (or their absence) away, before any image
    is sent; a server without the accounts endpoint lets the first upload tell."""
    response = server.request("GET", ME, ok=tuple(range(200, 600)))
    if response.status_code in (401, 403):
        raise refusal(response)


def _has_batch(server: Server) -> bool:
    """Return whether the server has the batch endpoint: a route that is there answers
    ``OPTIONS`` with anything but 404 (405, or a CORS answer), before any image is sent."""
    response = server.request("OPTIONS", BATCH, ok=tuple(range(200, 600)))
    return response.status_code != 404


def _send_batch(
    server: Server, images: list[Image], config: dict[str, Any], quiet: bool
) -> Job | None:
    """Send the images as one archive with the config; return its job (None: no endpoint)."""
    size, stream = inputs.archive(images)
    parts = [
        Part("config", json.dumps(config).encode()),
        Part("archive", (size, stream), filename="images.zip", content_type="application/zip"),
    ]
    progress = bar("upload", inputs.multipart(parts, _ignore).length, "B", quiet=quiet)
    body = inputs.multipart(parts, progress.advance)

    def sent() -> None:
        progress.close(f"sent; the server checks {plural(len(images), 'image')}")

    response = _post_body(server, BATCH, body, sent)
    if response.status_code == 404 and error_code(response) in (None, "NOT_FOUND"):
        return None
    if response.status_code not in (200, 202):
        raise refusal(response)
    data: dict[str, Any] = response.json()["data"]
    if "job_id" not in data:  # an upload without its job: start it as predict would
        return _predict(server, data["upload_id"], config)
    skipped = data.get("upload", {}).get("skipped_count", 0)
    note = f" ({skipped} hidden or system files skipped)" if skipped else ""
    say(f"submit: upload {data['upload_id']}, job {data['job_id']} started{note}")
    return Job(data["job_id"], int(data["file_count"]))


def _post_body(server: Server, path: str, body: inputs.Body, sent: Any = None) -> httpx.Response:
    """Return the answer to a POST of ``body``, sent with its length (not chunked)."""

    def chunks() -> Iterator[bytes]:
        yield from body.chunks()
        if sent is not None:
            sent()

    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, read=CHECK_TIMEOUT_S)
    headers = {"Content-Type": body.content_type, "Content-Length": str(body.length)}
    with server.transport_errors():
        return server.client.post(path, content=chunks(), headers=headers, timeout=timeout)


def _predict(server: Server, upload_id: str, config: dict[str, Any]) -> Job:
    data = server.data("POST", PREDICT, ok=(202,), json={"upload_id": upload_id, "config": config})
    return Job(data["job_id"], int(data["file_count"]))


def _send_chunks(
    server: Server, images: list[Image], config: dict[str, Any], opts: Options
) -> list[Job]:
    """Upload the images in chunks, starting a job on each chunk as soon as it is in."""
    chunks = inputs.chunks_of(images, opts.chunk_size)
    parts = [[inputs.image_part(image) for image in chunk] for chunk in chunks]
    total = sum(inputs.multipart(p, _ignore).length for p in parts)
    progress = bar("upload", total, "B", quiet=opts.quiet)
    jobs: list[Job] = []
    try:
        for number, chunk_parts in enumerate(parts, start=1):
            response = _post_body(server, UPLOAD, inputs.multipart(chunk_parts, progress.advance))
            if response.status_code != 200:
                raise refusal(response)
            upload_id = response.json()["data"]["upload_id"]
            jobs.append(_predict(server, upload_id, config))
            progress.note(f"{number}/{len(parts)} uploads, job {jobs[-1].job_id} started")
    except SubmitError as exc:
        if jobs:
            exc.lines.append(f"jobs already started: {', '.join(j.job_id for j in jobs)}")
        raise
    progress.close()
    return jobs


def _ignore(_count: int) -> None:
    pass


def _finish(server: Server, jobs: list[Job], opts: Options) -> int:
    """Follow the jobs, fetch the completed ones' results, print a summary line for each;
    return 0 when every job completed, else 1 (each failure printed with its code)."""
    finals = _follow(server, jobs, opts)
    status = 0
    for job, final in zip(jobs, finals, strict=True):
        if final.get("status") == "completed":
            where = _download(server, job.job_id, opts)
            print(_summary(final, where), flush=True)
        else:
            say(_failure(job, final).render())
            status = EXIT_FAILED
    return status


def _follow(server: Server, jobs: list[Job], opts: Options) -> list[Status]:
    total = sum(job.file_count for job in jobs)
    label = jobs[0].job_id if len(jobs) == 1 else f"{len(jobs)} jobs"
    progress = bar(label, total, "images", quiet=opts.quiet)
    finals: list[Status] = []
    before = 0  # images of the jobs already ended
    for job in jobs:
        prefix = "" if len(jobs) == 1 else f"{job.job_id} "

        def seen(status: Status, before: int = before, prefix: str = prefix) -> None:
            processed = int((status.get("progress") or {}).get("processed_images", 0))
            progress.show(before + processed, prefix + _note(status))

        try:
            finals.append(watch(server, job.job_id, seen, poll_s=opts.poll_s))
        except KeyboardInterrupt:
            progress.close("interrupted")
            raise _interrupted(jobs[len(finals) :]) from None
        before += job.file_count
    progress.close()
    return finals


def _note(status: Status) -> str:
    stage = str((status.get("progress") or {}).get("current_stage") or "")
    state = str(status.get("status", "?"))
    # Stages change with every image; a retry is worth a line of its own.
    return f"{state} ({stage})" if stage.startswith("Retrying") else state


def _interrupted(jobs: Iterable[Job]) -> SubmitError:
    names = ", ".join(job.job_id for job in jobs)
    return SubmitError(
        "INTERRUPTED",
        f"stopped following {names}: the server goes on (POST /api/v1/jobs/{{job_id}}/cancel "
        "stops a job)",
        exit_status=130,
    )


def _failure(job: Job, final: Status) -> SubmitError:
    """Return a failed or cancelled job's error: its code and message, as the API gives them."""
    if final.get("status") == "cancelled":
        return SubmitError("JOB_CANCELLED", f"job {job.job_id} was cancelled")
    error = final.get("error") or {}
    message = str(error.get("message") or "the job failed")
    if error.get("details"):
        message += f": {error['details']}"
    return SubmitError(str(error.get("code") or "JOB_FAILED"), f"{message} (job {job.job_id})")


def _summary(final: Status, where: Path) -> str:
    summary = final.get("summary") or {}
    count = int((final.get("progress") or {}).get("total_images", 0))
    seconds = summary.get("processing_time_seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, int | float) else ""
    return (
        f"{final.get('job_id')}: completed, {plural(count, 'image')}, "
        f"{plural(summary.get('total_detections', 0), 'detection')}{took} -> {where}"
    )


def _download(server: Server, job_id: str, opts: Options) -> Path:
    """Fetch the job's results archive into ``--out``; return the folder it was unpacked to
    (or, with ``--zip``, the archive)."""
    archive = opts.out / f"{job_id}.zip"
    partial = archive.with_name(archive.name + ".part")
    progress = bar(f"download {job_id}", None, "B", quiet=opts.quiet)
    params = {"format": opts.fmt, "include": opts.include}
    try:
        with server.stream(f"/api/v1/jobs/{job_id}/download", params=params) as response:
            with partial.open("wb") as fp:
                for chunk in response.iter_bytes():
                    fp.write(chunk)
                    progress.advance(len(chunk))
        partial.replace(archive)
    except OSError as exc:
        raise SubmitError("FILE_ERROR", f"cannot write {partial}: {exc.strerror}") from exc
    finally:
        partial.unlink(missing_ok=True)
    progress.close(archive.name)
    return archive if opts.keep_zip else _unpack(archive, opts.out)


def _unpack(archive: Path, out: Path) -> Path:
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"{bad} is damaged")
            roots = {name.split("/", 1)[0] for name in zf.namelist()}
            zf.extractall(out)  # member names are made safe (no absolute paths, no ..)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise SubmitError(
            "STORAGE_ERROR", f"the results archive {archive} is incomplete ({exc}): fetch again"
        ) from exc
    archive.unlink()
    return out / roots.pop() if len(roots) == 1 else out
