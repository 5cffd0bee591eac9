"""What the rules did in a completed job: rules fired and detections changed, per class."""

from __future__ import annotations

from fastapi import APIRouter

from nesydet.api.auth import ReaderDep
from nesydet.api.deps import SessionDep
from nesydet.api.params import JobIdPath
from nesydet.schemas.common import error_responses
from nesydet.schemas.reasoning import ReasoningResponse
from nesydet.services import reasoning as reasoning_service

router = APIRouter(prefix="/api/v1", tags=["jobs"])

EXAMPLE = {
    "status": "success",
    "data": {
        "job_id": "job_abc123xyz789",
        "reasoning_enabled": True,
        "rules_file": "dota.pl",
        "detections": 412,
        "dropped": 23,
        "rules_fired": {"vehicle_on_road": 301, "cars_in_group": 254, "vessel_on_water": 12},
        "dropped_by_rule": {"lone_tank_in_field": 11, "vessel_on_dry_land": 7, "isolated": 5},
        "classes": {
            "ship": {
                "detections": 14,
                "boosted": 12,
                "penalised": 1,
                "unchanged": 1,
                "relabelled_to": 0,
                "relabelled_from": 0,
                "rules_fired": {"vessel_on_water": 12, "ships_in_group": 9},
                "dropped": 7,
                "dropped_by_rule": {"vessel_on_dry_land": 7},
            }
        },
    },
}


@router.get(
    "/jobs/{job_id}/reasoning",
    response_model=ReasoningResponse,
    summary="What the rules did in a completed job",
    description=(
        "Per class: detections kept, how many the rules boosted, penalised (and kept), left "
        "unchanged or relabelled, and how often each rule fired on them; `dropped` counts "
        "the detections the rules removed (each image's annotated image can show them)."
    ),
    responses={
        200: {"content": {"application/json": {"example": EXAMPLE}}},
        **error_responses(
            (404, "JOB_NOT_FOUND", "Job not found", "no job with id job_000000000000"),
            (404, "RESULTS_NOT_READY", "Results not available", "Job is still processing"),
        ),
    },
)
async def reasoning(
    job_id: JobIdPath, session: SessionDep, principal: ReaderDep
) -> ReasoningResponse:
    """Return the reasoning summary of a completed job."""
    data = await reasoning_service.reasoning_summary(
        session=session, job_id=job_id, owner=principal.owner
    )
    return ReasoningResponse.model_validate({"status": "success", "data": data})
