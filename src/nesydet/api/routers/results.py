"""Endpoints 4 and 5: a completed job's detections, label files and visualizations."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from nesydet.api.auth import ReaderDep
from nesydet.api.deps import SessionDep, StorageDep
from nesydet.api.params import FileIdPath, FileIdQuery, JobIdPath
from nesydet.schemas.common import error_responses
from nesydet.schemas.result_examples import RESULTS_EXAMPLES, VISUALIZATION_EXAMPLES
from nesydet.schemas.results import ResultsResponse, VisualizationResponse
from nesydet.services import results as result_service

router = APIRouter(prefix="/api/v1", tags=["jobs"])

JOB_404 = (404, "JOB_NOT_FOUND", "Job not found", "no job with id job_000000000000")
_RESULT_ERRORS = error_responses(
    JOB_404,
    (404, "RESULTS_NOT_READY", "Results not available", "Job is still processing"),
    (404, "FILE_NOT_FOUND", "File not in this job", "img_x is not a file of job_abc123xyz789"),
)


@router.get(
    "/jobs/{job_id}/results",
    response_model=ResultsResponse,
    # Keys a detection only sometimes has (an oriented box's polygon) are left out, not null.
    response_model_exclude_unset=True,
    summary="Detections of a completed job",
    description=(
        "`format=json` (default) gives each file's detections with `bbox` (pixels, xyxy), "
        "`bbox_normalized` (YOLO), the oriented `polygon` for OBB models and the reasoning "
        "trace; `yolo` gives the spec's label text per file, `class cx cy w h conf` (an "
        "oriented box as its upright envelope); `yolo_obb` the oriented form `class x1 y1 x2 "
        "y2 x3 y3 x4 y4 conf`; `coco` a whole COCO document; `voc` Pascal VOC XML per file. "
        "Every normalised coordinate is within [0, 1]."
    ),
    responses={
        200: {"content": {"application/json": {"examples": RESULTS_EXAMPLES}}},
        **_RESULT_ERRORS,
    },
)
async def results(
    job_id: JobIdPath,
    session: SessionDep,
    principal: ReaderDep,
    format: Annotated[Literal["json", "yolo", "yolo_obb", "coco", "voc"], Query()] = "json",
    file_id: FileIdQuery = None,
) -> ResultsResponse:
    """Return the job's detections in the requested format."""
    data = await result_service.results(
        session=session, job_id=job_id, fmt=format, file_id=file_id, owner=principal.owner
    )
    return ResultsResponse.model_validate({"status": "success", "data": data})


@router.get(
    "/jobs/{job_id}/results/{file_id}/labels.txt",
    response_class=PlainTextResponse,
    summary="YOLO label file of one image",
    description=(
        "`format=yolo` (default): `class cx cy w h conf` lines, the spec's form; "
        "`format=yolo_obb`: `class x1 y1 x2 y2 x3 y3 x4 y4 conf`. Normalised, within [0, 1]."
    ),
    responses={
        200: {
            "content": {
                "text/plain": {"example": "0 0.104167 0.185185 0.104167 0.092593 0.950000\n"}
            }
        },
        **_RESULT_ERRORS,
    },
)
async def labels(
    job_id: JobIdPath,
    file_id: FileIdPath,
    session: SessionDep,
    principal: ReaderDep,
    format: Annotated[Literal["yolo", "yolo_obb"], Query()] = "yolo",
) -> PlainTextResponse:
    """Return one file's labels as a text file."""
    text = await result_service.labels_text(
        session=session, job_id=job_id, file_id=file_id, fmt=format, owner=principal.owner
    )
    return PlainTextResponse(
        text, headers={"Content-Disposition": f'attachment; filename="{file_id}.txt"'}
    )


@router.get(
    "/jobs/{job_id}/visualization",
    response_model=VisualizationResponse,
    summary="Annotated images of a completed job",
    description=(
        "`format=url` (default) gives links (`annotated_url` is null when the job ran with "
        "`visualization.enabled=false`; a TIFF's `original_url` is its PNG rendering); "
        "`format=base64` gives one file's images inline, each a JPEG or PNG data URI."
    ),
    responses={
        200: {"content": {"application/json": {"examples": VISUALIZATION_EXAMPLES}}},
        **_RESULT_ERRORS,
    },
)
async def visualization(
    job_id: JobIdPath,
    session: SessionDep,
    storage: StorageDep,
    principal: ReaderDep,
    file_id: FileIdQuery = None,
    format: Annotated[Literal["url", "base64"], Query()] = "url",
) -> VisualizationResponse:
    """Return the job's visualizations."""
    data = await result_service.visualizations(
        session=session,
        storage=storage,
        job_id=job_id,
        file_id=file_id,
        fmt=format,
        owner=principal.owner,
    )
    return VisualizationResponse.model_validate({"status": "success", "data": data})
