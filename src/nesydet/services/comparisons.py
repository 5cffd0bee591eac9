"""Use cases for comparisons: compare two completed jobs image by image, read a comparison
back, and draw one image of it.

Images are paired when both jobs read the same file, or else when two uploads hold the same
bytes (their sha256). The result is stored whole: it reads back as it was made, even if a
job's rows change later (a comparison goes when either job is deleted).
"""

from __future__ import annotations

import io
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.db.models import Comparison, Job, JobFile
from nesydet.db.repositories import comparisons as repo
from nesydet.db.repositories import jobs as job_repo
from nesydet.domain import JobStatus
from nesydet.errors import (
    ComparisonNotFound,
    FileNotFound,
    JobNotCompleted,
    StorageError,
    ValidationFailed,
)
from nesydet.ids import COMPARISON, new_id
from nesydet.pipeline.compare import ClassSummary, ImageComparison, compare_image, summarize
from nesydet.pipeline.compare_draw import Layout, draw_comparison
from nesydet.pipeline.errors import ImageLoadError
from nesydet.pipeline.image_io import load_image
from nesydet.pipeline.types import Detection
from nesydet.schemas.common import iso_z
from nesydet.services.jobs import get_job
from nesydet.services.registry.resolve import public
from nesydet.services.results import to_detection
from nesydet.storage import Storage, StorageFailure


@dataclass(frozen=True, slots=True)
class _ImagePair:
    a: JobFile
    b: JobFile
    paired_by: str


def comparison_url(comparison_id: str) -> str:
    """Return the path a comparison reads back from."""
    return f"/api/v1/comparisons/{comparison_id}"


def _pair_files(
    a: list[JobFile], b: list[JobFile]
) -> tuple[list[_ImagePair], list[str], list[str]]:
    """Return the images both jobs read (same file, else same sha256), in A's order, and the
    ids of files of A, then of B, left without a partner."""
    left_b = {f.file_id: f for f in b}
    by_hash: dict[str, list[JobFile]] = defaultdict(list)
    pairs: dict[str, _ImagePair] = {}
    for f in a:
        partner = left_b.pop(f.file_id, None)
        if partner is not None:
            pairs[f.file_id] = _ImagePair(f, partner, "file")
    for f in left_b.values():
        by_hash[f.file.sha256].append(f)
    for f in a:
        if f.file_id in pairs:
            continue
        same = by_hash.get(f.file.sha256)
        if same:
            pairs[f.file_id] = _ImagePair(f, same.pop(0), "sha256")
    used_b = {p.b.file_id for p in pairs.values()}
    ordered = [pairs[f.file_id] for f in a if f.file_id in pairs]
    only_a = [f.file_id for f in a if f.file_id not in pairs]
    only_b = [f.file_id for f in b if f.file_id not in used_b]
    return ordered, only_a, only_b


def _ref(det: Detection, index: int) -> dict[str, Any]:
    return {
        "index": index,
        "class_name": det.class_name,
        "confidence": round(det.confidence, 6),
        "bbox": [round(v, 2) for v in det.bbox],
    }


def _pairs(pairs: list[Any], a: list[Detection], b: list[Detection]) -> list[dict[str, Any]]:
    return [
        {
            "a": _ref(a[p.a], p.a),
            "b": _ref(b[p.b], p.b),
            "iou": round(p.iou, 4),
            "confidence_delta": round(b[p.b].confidence - a[p.a].confidence, 6),
        }
        for p in pairs
    ]


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _class_item(row: ClassSummary) -> dict[str, Any]:
    delta = row.mean_confidence_delta
    return {
        "class_name": row.class_name,
        "in_a": row.in_a,
        "in_b": row.in_b,
        "matched": row.matched,
        "class_changed_from": row.class_changed_from,
        "class_changed_to": row.class_changed_to,
        "only_in_a": row.only_a,
        "only_in_b": row.only_b,
        "precision": None if row.precision is None else round(row.precision, 4),
        "recall": None if row.recall is None else round(row.recall, 4),
        "mean_confidence_delta": None if delta is None else round(delta, 6),
    }


def compute(
    *,
    comparison_id: str,
    pairs: list[_ImagePair],
    detections_a: dict[str, list[Detection]],
    detections_b: dict[str, list[Detection]],
    iou_threshold: float,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the per-image results and the summary of paired images (CPU work: a thread)."""
    images: list[dict[str, Any]] = []
    compared: list[tuple[list[Detection], list[Detection], ImageComparison]] = []
    for pair in pairs:
        a = detections_a.get(pair.a.file_id, [])
        b = detections_b.get(pair.b.file_id, [])
        result = compare_image(a, b, iou_threshold)
        compared.append((a, b, result))
        images.append(
            {
                "file_id_a": pair.a.file_id,
                "file_id_b": pair.b.file_id,
                "filename": pair.a.file.filename,
                "paired_by": pair.paired_by,
                "counts": {
                    "a": len(a),
                    "b": len(b),
                    "matched": len(result.matched),
                    "class_changes": len(result.class_changes),
                    "only_in_a": len(result.only_a),
                    "only_in_b": len(result.only_b),
                },
                "matched": _pairs(result.matched, a, b),
                "class_changes": _pairs(result.class_changes, a, b),
                "only_in_a": [_ref(a[i], i) for i in result.only_a],
                "only_in_b": [_ref(b[j], j) for j in result.only_b],
                "visualization_url": f"{comparison_url(comparison_id)}/visualization"
                f"?file_id={pair.a.file_id}",
            }
        )
    per_class = summarize(compared)
    keys = ("a", "b", "matched", "class_changes", "only_in_a", "only_in_b")
    totals = {key: sum(img["counts"][key] for img in images) for key in keys}
    deltas = [d for row in per_class for d in row.confidence_deltas]
    summary = {
        "images": len(images),
        "detections_a": totals["a"],
        "detections_b": totals["b"],
        "matched": totals["matched"],
        "class_changes": totals["class_changes"],
        "only_in_a": totals["only_in_a"],
        "only_in_b": totals["only_in_b"],
        "precision": _ratio(totals["matched"], totals["b"]),
        "recall": _ratio(totals["matched"], totals["a"]),
        "mean_confidence_delta": round(sum(deltas) / len(deltas), 6) if deltas else None,
        "per_class": [_class_item(row) for row in per_class],
    }
    return images, summary


async def _completed(*, session: AsyncSession, job_id: str, owner: str | None, name: str) -> Job:
    job = await get_job(session=session, job_id=job_id, owner=owner)
    if job.status != JobStatus.COMPLETED:
        raise JobNotCompleted(
            f"Both jobs must have completed: {name} has not",
            details=f"{name}: job {job_id} is {job.status}",
        )
    return job


async def _detections(*, session: AsyncSession, job_id: str) -> dict[str, list[Detection]]:
    by_file: dict[str, list[Detection]] = defaultdict(list)
    for row in await job_repo.detections(session=session, job_id=job_id):
        by_file[row.file_id].append(to_detection(row))
    return by_file


async def create(
    *, session: AsyncSession, job_a: str, job_b: str, iou_threshold: float, owner: str | None
) -> Comparison:
    """Compare two completed jobs of ``owner``'s (anyone's, owner None) and store the result.

    Raises:
        JobNotFound: either job is unknown, or not the caller's.
        JobNotCompleted: either job is queued, processing, failed or cancelled.
    """
    first = await _completed(session=session, job_id=job_a, owner=owner, name="job_a")
    second = await _completed(session=session, job_id=job_b, owner=owner, name="job_b")
    files_a = await job_repo.job_files(session=session, job_id=first.id)
    files_b = await job_repo.job_files(session=session, job_id=second.id)
    pairs, only_a, only_b = _pair_files(files_a, files_b)
    dets_a = await _detections(session=session, job_id=first.id)
    dets_b = (
        dets_a if first.id == second.id else await _detections(session=session, job_id=second.id)
    )
    comparison_id = new_id(COMPARISON)
    images, summary = await anyio.to_thread.run_sync(
        lambda: compute(
            comparison_id=comparison_id,
            pairs=pairs,
            detections_a=dets_a,
            detections_b=dets_b,
            iou_threshold=iou_threshold,
        )
    )
    # What each job ran: a comparison of two model versions names them.
    for side, job in (("a", first), ("b", second)):
        summary[f"model_{side}"] = public(job.model_ref)
        summary[f"rules_{side}"] = public(job.rules_ref)
    row = Comparison(
        id=comparison_id,
        owner_id=owner,
        job_a_id=first.id,
        job_b_id=second.id,
        iou_threshold=iou_threshold,
        summary=summary,
        images=images,
        unpaired={"only_in_a": only_a, "only_in_b": only_b},
    )
    await repo.add(session=session, comparison=row)
    return row


async def get(*, session: AsyncSession, comparison_id: str, owner: str | None) -> Comparison:
    """Return the comparison (only ``owner``'s, when given), or raise ComparisonNotFound."""
    row = await repo.get(session=session, comparison_id=comparison_id, owner=owner)
    if row is None:
        raise ComparisonNotFound(details=f"no comparison with id {comparison_id}")
    return row


def comparison_data(row: Comparison, *, file_id: str | None = None) -> dict[str, Any]:
    """Return the comparison endpoint's ``data`` (only the image of ``file_id``, when given)."""
    images = row.images
    if file_id is not None:
        images = [i for i in images if file_id in (i["file_id_a"], i["file_id_b"])]
    return {
        "comparison_id": row.id,
        "job_a": row.job_a_id,
        "job_b": row.job_b_id,
        "iou_threshold": row.iou_threshold,
        "created_at": iso_z(row.created_at),
        "summary": row.summary,
        "images": images,
        "unpaired_files": row.unpaired,
        "comparison_url": comparison_url(row.id),
    }


def _image_of(row: Comparison, file_id: str | None) -> dict[str, Any]:
    images = row.images
    if file_id is None:
        if len(images) == 1:
            return dict(images[0])
        raise ValidationFailed(
            "The comparison has several images: give file_id",
            errors=[
                {
                    "field": "file_id",
                    "error_code": "REQUIRED",
                    "error": f"one of the {len(images)} images' file ids (job A's or job B's)",
                }
            ],
        )
    for image in images:
        if file_id in (image["file_id_a"], image["file_id_b"]):
            return dict(image)
    raise FileNotFound(
        "File not in this comparison", details=f"{file_id} is not an image of {row.id}"
    )


def _render(raw: bytes, suffix: str, draw: Any) -> bytes:
    """Return the drawing of an image file's bytes as JPEG (runs on a thread)."""
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(raw)
        tmp.flush()
        image = load_image(Path(tmp.name))
    try:
        picture: Image.Image = draw(image)
    finally:
        image.close()
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=88)
    return out.getvalue()


async def visualization(
    *,
    session: AsyncSession,
    storage: Storage,
    comparison_id: str,
    file_id: str | None,
    layout: Layout,
    owner: str | None,
) -> tuple[bytes, str]:
    """Return a JPEG of one image of the comparison (A and B side by side, or overlaid) and
    a file name for it."""
    row = await get(session=session, comparison_id=comparison_id, owner=owner)
    image = _image_of(row, file_id)
    dets_a = [
        to_detection(d)
        for d in await job_repo.detections(
            session=session, job_id=row.job_a_id, file_id=image["file_id_a"]
        )
    ]
    dets_b = [
        to_detection(d)
        for d in await job_repo.detections(
            session=session, job_id=row.job_b_id, file_id=image["file_id_b"]
        )
    ]
    files = await job_repo.job_files(session=session, job_id=row.job_a_id)
    upload = next((f.file for f in files if f.file_id == image["file_id_a"]), None)
    if upload is None:  # the job's rows changed since: nothing to draw on
        raise FileNotFound("File not in this comparison", details=f"{image['file_id_a']} is gone")
    try:
        raw = await anyio.to_thread.run_sync(storage.get_bytes, upload.storage_key)
    except StorageFailure as exc:
        raise StorageError("Could not read a stored image", details=str(exc)) from exc
    result = compare_image(dets_a, dets_b, row.iou_threshold)

    def draw(picture: Image.Image) -> Image.Image:
        return draw_comparison(
            picture,
            dets_a,
            dets_b,
            result,
            layout=layout,
            label_a=f"A {row.job_a_id}",
            label_b=f"B {row.job_b_id}",
        )

    suffix = "." + upload.storage_key.rsplit(".", 1)[-1] if "." in upload.storage_key else ""
    try:
        jpeg = await anyio.to_thread.run_sync(_render, raw, suffix, draw)
    except ImageLoadError as exc:
        raise StorageError("Could not decode a stored image", details=str(exc)) from exc
    stem = upload.filename.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return jpeg, f"{stem}-{row.id}-{layout}.jpg"
