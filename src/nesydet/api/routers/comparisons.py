"""Comparisons of two completed jobs: make one, read it back, draw one of its images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from nesydet.api.auth import ReaderDep, WriterDep
from nesydet.api.deps import SessionDep, StorageDep
from nesydet.api.params import FileIdQuery
from nesydet.api.routers.files import content_disposition
from nesydet.api.routers.results import JOB_404
from nesydet.ids import COMPARISON, id_pattern
from nesydet.schemas.common import error_responses
from nesydet.schemas.comparisons import (
    COMPARISON_EXAMPLE,
    ComparisonData,
    ComparisonRequest,
    ComparisonResponse,
    Layout,
)
from nesydet.services import comparisons as service

router = APIRouter(prefix="/api/v1", tags=["comparisons"])

ComparisonIdPath = Annotated[
    str, Path(pattern=id_pattern(COMPARISON), examples=["cmp_0a1b2c3d4e5f"])
]
_404 = (
    404,
    "COMPARISON_NOT_FOUND",
    "Comparison not found",
    "no comparison with id cmp_000000000000",
)
_NOT_COMPLETED = (
    409,
    "JOB_NOT_COMPLETED",
    "Both jobs must have completed: job_b has not",
    "job_b: job job_def456uvw012 is processing",
)


@router.post(
    "/comparisons",
    status_code=201,
    response_model=ComparisonResponse,
    summary="Compare two completed jobs",
    description=(
        "Compares job B with job A image by image: images both jobs read (the same file, or "
        "another upload of the same bytes, by sha256). Per image: the matched pairs (same "
        "class, rotated IoU at least `iou_threshold`) with their confidence deltas, class "
        "changes (the same object under another class), and the detections only in A and only "
        "in B; then a summary per class with B's precision and recall taking A as the "
        "reference. Typical uses: reasoning on (B) against off (A), a new model against the "
        "current one. Both jobs must be the caller's (any job, for an admin); the comparison "
        "is stored, and goes when either job is deleted."
    ),
    responses={
        201: {"content": {"application/json": {"example": COMPARISON_EXAMPLE}}},
        **error_responses(
            (
                400,
                "VALIDATION_ERROR",
                "Request validation failed",
                "iou_threshold: Input should be less than or equal to 1",
            ),
            JOB_404,
            _NOT_COMPLETED,
        ),
    },
)
async def create_comparison(
    body: ComparisonRequest, session: SessionDep, principal: WriterDep
) -> ComparisonResponse:
    """Compare the two jobs and store the result."""
    row = await service.create(
        session=session,
        job_a=body.job_a,
        job_b=body.job_b,
        iou_threshold=body.iou_threshold,
        owner=principal.owner,
    )
    return ComparisonResponse(
        message="Comparison created",
        data=ComparisonData.model_validate(service.comparison_data(row)),
    )


@router.get(
    "/comparisons/{comparison_id}",
    response_model=ComparisonResponse,
    summary="A comparison",
    description="The comparison as it was made; `file_id` (A's or B's) keeps one image only.",
    responses={
        200: {
            "content": {"application/json": {"example": {**COMPARISON_EXAMPLE, "message": None}}}
        },
        **error_responses(_404),
    },
)
async def get_comparison(
    comparison_id: ComparisonIdPath,
    session: SessionDep,
    principal: ReaderDep,
    file_id: FileIdQuery = None,
) -> ComparisonResponse:
    """Return the stored comparison."""
    row = await service.get(session=session, comparison_id=comparison_id, owner=principal.owner)
    data = service.comparison_data(row, file_id=file_id)
    return ComparisonResponse(data=ComparisonData.model_validate(data))


@router.get(
    "/comparisons/{comparison_id}/visualization",
    response_class=Response,
    summary="One image of a comparison, drawn",
    description=(
        "A JPEG of one image: A's detections left and B's right (`layout=side_by_side`), or "
        "both on the image with A's solid and B's dashed (`layout=overlay`), coloured by how "
        "they fared: matched (green), class changed (orange), only in A (red), only in B "
        "(blue), with a legend of the counts. `file_id` (A's or B's id of the image) is "
        "required when the comparison has several images."
    ),
    responses={
        200: {"content": {"image/jpeg": {"example": "(binary)"}}, "description": "The picture"},
        **error_responses(
            (
                400,
                "VALIDATION_ERROR",
                "The comparison has several images: give file_id",
                None,
            ),
            _404,
            (
                404,
                "FILE_NOT_FOUND",
                "File not in this comparison",
                "img_000000000000 is not an image of cmp_0a1b2c3d4e5f",
            ),
        ),
    },
)
async def comparison_visualization(
    comparison_id: ComparisonIdPath,
    session: SessionDep,
    storage: StorageDep,
    principal: ReaderDep,
    file_id: FileIdQuery = None,
    layout: Annotated[Layout, Query(description="side_by_side (default) or overlay")] = (
        "side_by_side"
    ),
) -> Response:
    """Return the drawing of one image of the comparison."""
    jpeg, filename = await service.visualization(
        session=session,
        storage=storage,
        comparison_id=comparison_id,
        file_id=file_id,
        layout=layout,
        owner=principal.owner,
    )
    return Response(
        jpeg,
        media_type="image/jpeg",
        headers={
            "Content-Disposition": content_disposition(filename, attachment=False),
            "Cache-Control": "private, no-cache",
        },
    )
