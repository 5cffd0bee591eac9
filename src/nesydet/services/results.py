"""Use cases for results: detections in JSON/YOLO/COCO/VOC (Endpoint 4), visualizations
(Endpoint 5) and the binary files behind them.

``format=yolo`` is the spec's ``class cx cy w h conf`` (an oriented box gives its upright
envelope), ``yolo_obb`` the 8-point oriented form; both are clipped to [0, 1].
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.db.models import Detection as DetectionRow
from nesydet.db.models import Job, JobFile, UploadedFile
from nesydet.db.repositories import jobs as job_repo
from nesydet.db.repositories import uploads as upload_repo
from nesydet.domain import JobStatus
from nesydet.errors import FileNotFound, ResultsNotReady, StorageError, ValidationFailed
from nesydet.pipeline import export
from nesydet.pipeline.types import Detection, ReasoningTrace
from nesydet.services.jobs import get_job
from nesydet.services.png_rendering import BROWSER_TYPES, rendered_png
from nesydet.services.registry.resolve import public
from nesydet.storage import Storage, StorageFailure

ResultFormat = Literal["json", "yolo", "yolo_obb", "coco", "voc"]
LabelFormat = Literal["yolo", "yolo_obb"]
ArtefactKind = Literal["original", "annotated", "thumbnail"]


def to_detection(row: DetectionRow) -> Detection:
    """Return the pipeline's detection for a stored row (so exporters serve both)."""
    trace = None
    if row.reasoning is not None:
        r = row.reasoning
        trace = ReasoningTrace(
            original_confidence=float(r["original_confidence"]),
            adjusted_confidence=float(r["adjusted_confidence"]),
            action=r["action"],
            rules_fired=list(r.get("rules_fired", [])),
            original_class=r.get("original_class"),
            facts=list(r.get("facts", [])),
        )
    obb = tuple(row.obb) if row.obb is not None else None
    polygon = [(float(x), float(y)) for x, y in row.polygon] if row.polygon is not None else None
    return Detection(
        class_id=row.class_id,
        class_name=row.class_name,
        confidence=row.confidence,
        bbox=(row.x_min, row.y_min, row.x_max, row.y_max),
        obb=obb,  # type: ignore[arg-type]  # five floats, as stored
        polygon=polygon,
        reasoning=trace,
    )


def dropped_by_rule(dropped: Iterable[Detection]) -> dict[str, dict[str, int]]:
    """Return ``{class: {rule: count}}`` of dropped detections, by the rule that dropped each
    (``"(none)"`` for one dropped without a rule)."""
    counts: dict[str, Counter[str]] = {}
    for det in dropped:
        counts.setdefault(det.class_name, Counter())[det.dropping_rule() or "(none)"] += 1
    return {cls: dict(rules.most_common()) for cls, rules in sorted(counts.items())}


def detection_row(det: Detection, idx: int) -> dict[str, Any]:
    """Return the column values that store a pipeline detection."""
    x0, y0, x1, y1 = det.bbox
    return {
        "idx": idx,
        "class_id": det.class_id,
        "class_name": det.class_name,
        "confidence": float(det.confidence),
        "x_min": float(x0),
        "y_min": float(y0),
        "x_max": float(x1),
        "y_max": float(y1),
        "obb": [float(v) for v in det.obb] if det.obb is not None else None,
        "polygon": [[float(x), float(y)] for x, y in det.polygon] if det.polygon else None,
        "reasoning": det.reasoning.to_dict() if det.reasoning is not None else None,
    }


async def completed_job(*, session: AsyncSession, job_id: str, owner: str | None) -> Job:
    """Return the job if it has completed; JobNotFound or ResultsNotReady otherwise."""
    job = await get_job(session=session, job_id=job_id, owner=owner)
    if job.status != JobStatus.COMPLETED:
        reason = {
            JobStatus.QUEUED: "Job is still queued",
            JobStatus.PROCESSING: "Job is still processing",
            JobStatus.FAILED: "Job failed",
            JobStatus.CANCELLED: "Job was cancelled",
        }.get(JobStatus(job.status), f"Job is {job.status}")
        raise ResultsNotReady("Results not available", details=reason)
    return job


@dataclass(frozen=True, slots=True)
class FileResult:
    job_file: JobFile
    upload: UploadedFile
    detections: list[Detection]


async def _job_files(*, session: AsyncSession, job: Job, file_id: str | None) -> list[JobFile]:
    """Return the job's files, or the one ``file_id`` names (FileNotFound if not the job's)."""
    files = await job_repo.job_files(session=session, job_id=job.id)
    if file_id is None:
        return files
    files = [f for f in files if f.file_id == file_id]
    if not files:
        raise FileNotFound("File not in this job", details=f"{file_id} is not a file of {job.id}")
    return files


async def _file_results(
    *, session: AsyncSession, job: Job, file_id: str | None
) -> list[FileResult]:
    files = await _job_files(session=session, job=job, file_id=file_id)
    rows = await job_repo.detections(session=session, job_id=job.id, file_id=file_id)
    by_file: dict[str, list[Detection]] = {}
    for row in rows:
        by_file.setdefault(row.file_id, []).append(to_detection(row))
    return [FileResult(f, f.file, by_file.get(f.file_id, [])) for f in files]


def _size(result: FileResult) -> tuple[int, int]:
    return (
        result.job_file.width or result.upload.width,
        result.job_file.height or result.upload.height,
    )


async def results(
    *,
    session: AsyncSession,
    job_id: str,
    fmt: ResultFormat,
    file_id: str | None,
    owner: str | None,
) -> dict[str, Any]:
    """Return the ``data`` of the results endpoint in the requested format."""
    job = await completed_job(session=session, job_id=job_id, owner=owner)
    files = await _file_results(session=session, job=job, file_id=file_id)
    data: dict[str, Any] = {
        "job_id": job.id,
        "format": fmt,
        "model": public(job.model_ref),
        "rules": public(job.rules_ref),
    }
    if fmt == "json":
        data["results"] = [
            {
                "file_id": r.upload.id,
                "filename": r.upload.filename,
                "dimensions": list(_size(r)),
                "detections": export.to_json_detections(r.detections, *_size(r)),
                "detection_count": len(r.detections),
            }
            for r in files
        ]
    elif fmt in ("yolo", "yolo_obb"):
        query = "?format=yolo_obb" if fmt == "yolo_obb" else ""
        data["files"] = [
            {
                "file_id": r.upload.id,
                "filename": r.upload.filename,
                "label_content": export.to_yolo(r.detections, *_size(r), obb=fmt == "yolo_obb"),
                "download_url": f"/api/v1/jobs/{job.id}/results/{r.upload.id}/labels.txt{query}",
            }
            for r in files
        ]
    elif fmt == "voc":
        data["files"] = [
            {
                "file_id": r.upload.id,
                "filename": r.upload.filename,
                "voc_xml": export.to_voc(r.upload.filename, *_size(r), r.detections),
            }
            for r in files
        ]
    else:
        images = [
            export.CocoImage(r.upload.filename, *_size(r), r.detections, id=n)
            for n, r in enumerate(files, 1)
        ]
        coco = export.to_coco(images)
        for image, r in zip(coco["images"], files, strict=True):
            image["file_id"] = r.upload.id
        data["coco"] = coco
    return data


async def labels_text(
    *,
    session: AsyncSession,
    job_id: str,
    file_id: str,
    fmt: LabelFormat = "yolo",
    owner: str | None,
) -> str:
    """Return one file's YOLO label text (``yolo``: upright boxes, ``yolo_obb``: 8 points)."""
    job = await completed_job(session=session, job_id=job_id, owner=owner)
    [result] = await _file_results(session=session, job=job, file_id=file_id)
    return export.to_yolo(result.detections, *_size(result), obb=fmt == "yolo_obb")


def _file_urls(f: JobFile, job_id: str) -> dict[str, str | None]:
    """Return the links of a job file's pictures: null where there is none (no annotated
    image when the job ran without visualization), a PNG rendering for a TIFF original."""
    base = f"/api/v1/files/{f.file_id}"
    as_png = "" if f.file.content_type in BROWSER_TYPES else "?as=png"
    return {
        "original_url": f"{base}/original{as_png}",
        "annotated_url": f"{base}/annotated?job_id={job_id}" if f.annotated_key else None,
        "thumbnail_url": f"{base}/thumbnail?job_id={job_id}" if f.thumbnail_key else None,
    }


async def _data_uri(storage: Storage, key: str | None, content_type: str) -> str | None:
    if key is None:
        return None
    try:
        raw = await anyio.to_thread.run_sync(storage.get_bytes, key)
    except StorageFailure as exc:
        raise StorageError("Could not read a stored image", details=str(exc)) from exc
    return f"data:{content_type};base64,{base64.b64encode(raw).decode()}"


async def visualizations(
    *,
    session: AsyncSession,
    storage: Storage,
    job_id: str,
    file_id: str | None,
    fmt: Literal["url", "base64"],
    owner: str | None,
) -> dict[str, Any]:
    """Return the ``data`` of the visualization endpoint (URLs, or one file inline)."""
    job = await completed_job(session=session, job_id=job_id, owner=owner)
    files = await _job_files(session=session, job=job, file_id=file_id)
    if fmt == "url":
        return {
            "job_id": job.id,
            "format": "url",
            "visualizations": [
                {
                    "file_id": f.file_id,
                    "filename": f.file.filename,
                    **_file_urls(f, job.id),
                    "detection_count": f.detection_count or 0,
                }
                for f in files
            ],
        }
    if len(files) != 1:
        raise ValidationFailed(
            "format=base64 returns one image: give file_id",
            errors=[
                {
                    "field": "file_id",
                    "error_code": "REQUIRED",
                    "error": "required with format=base64 when a job has several files",
                }
            ],
        )
    [f] = files
    original_key, original_type = f.file.storage_key, f.file.content_type
    if original_type not in BROWSER_TYPES:  # a TIFF: what an <img> can show
        original_key, original_type = await rendered_png(storage, original_key), "image/png"
    return {
        "job_id": job.id,
        "file_id": f.file_id,
        "filename": f.file.filename,
        "format": "base64",
        "original_image": await _data_uri(storage, original_key, original_type),
        "annotated_image": await _data_uri(storage, f.annotated_key, "image/jpeg"),
        "thumbnail_image": await _data_uri(storage, f.thumbnail_key, "image/jpeg"),
        "detection_count": f.detection_count or 0,
    }


@dataclass(frozen=True, slots=True)
class Artefact:
    key: str
    content_type: str
    filename: str
    immutable: bool


async def artefact(
    *,
    session: AsyncSession,
    file_id: str,
    kind: ArtefactKind,
    job_id: str | None,
    owner: str | None,
    storage: Storage | None = None,
    as_png: bool = False,
) -> Artefact:
    """Return the stored object behind ``/api/v1/files/{file_id}/{kind}`` (only of a file of
    ``owner``'s, when given); with ``as_png``, the original's PNG rendering (made in
    ``storage`` on first request)."""
    upload_file = await upload_repo.get_file(session=session, file_id=file_id, owner=owner)
    if upload_file is None:
        raise FileNotFound("File not found", details=f"no file with id {file_id}")
    if kind == "original" and as_png:
        if storage is None:
            raise ValueError("as_png needs the storage to render into")
        rendering = await rendered_png(storage, upload_file.storage_key)
        stem = upload_file.filename.rsplit(".", 1)[0]
        return Artefact(rendering, "image/png", f"{stem}.png", True)
    if kind == "original":
        return Artefact(
            upload_file.storage_key, upload_file.content_type, upload_file.filename, True
        )
    done = await job_repo.latest_done_file(session=session, file_id=file_id, job_id=job_id)
    key = (
        None
        if done is None
        else (done.annotated_key if kind == "annotated" else done.thumbnail_key)
    )
    if done is None or key is None:
        where = f"job {job_id}" if job_id else "any completed job"
        raise ResultsNotReady(
            "Results not available", details=f"no {kind} image of {file_id} in {where}"
        )
    stem = upload_file.filename.rsplit(".", 1)[0]
    # Keyed by job: the object under a key never changes, so it may be cached for good.
    return Artefact(key, "image/jpeg", f"{stem}-{kind}.jpg", job_id is not None)
