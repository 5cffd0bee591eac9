"""Responses the routers share."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.services import idempotency
from nesydet.services.idempotency import IdempotentRequest, Replay


def replay_response(replay: Replay) -> JSONResponse:
    """Return the stored first response to an idempotent request, marked as a replay."""
    return JSONResponse(
        replay.body, status_code=replay.status_code, headers={"Idempotent-Replayed": "true"}
    )


async def remembered(
    session: AsyncSession,
    idempotent: IdempotentRequest | None,
    response: BaseModel,
    status_code: int,
) -> BaseModel:
    """Return ``response`` after storing it as the answer to an idempotent request, if any."""
    if idempotent is not None:
        await idempotency.remember(
            session=session,
            request=idempotent,
            status_code=status_code,
            body=response.model_dump(mode="json"),
        )
    return response
