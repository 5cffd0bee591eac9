"""``Idempotency-Key`` on upload and predict: a client that retries a request (say after a
timeout or a 500) with the same key and body gets the first response again, not a second job.

The key is claimed by inserting its row as the first write of the request's transaction and
the response is stored in the same transaction, so the key, the job and the answer commit
together or not at all. Two requests racing with one key meet on the primary key: the second
waits for the first to commit, then answers with the first's response.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.db.base import utcnow
from nesydet.db.models import IdempotencyKey
from nesydet.db.repositories import idempotency as key_repo
from nesydet.errors import IdempotencyKeyReused

KEEP_FOR = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A request sent with an ``Idempotency-Key``: the key and where it applies."""

    scope: str  # the route (and later the caller): a key is only reused within its scope
    key: str


@dataclass(frozen=True, slots=True)
class Replay:
    """The response the first request with this key got."""

    status_code: int
    body: dict[str, Any]


def fingerprint(content: Any) -> str:
    """Return a digest of a request's meaningful content (JSON-ready values)."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


async def claim(
    *, session: AsyncSession, request: IdempotentRequest, content_fingerprint: str
) -> Replay | None:
    """Claim the key for this request, or return the response of the request that used it.

    Must be the first write of the session's transaction: on a clash the transaction is
    rolled back to read the other request's row.

    Raises:
        IdempotencyKeyReused: the key was used within 24 h for a request with other content.
    """
    now = utcnow()
    await key_repo.delete_expired(
        session=session, scope=request.scope, key=request.key, before=now - KEEP_FOR
    )
    try:
        await key_repo.add(
            session=session,
            row=IdempotencyKey(
                scope=request.scope,
                key=request.key,
                fingerprint=content_fingerprint,
                status_code=0,
                response={},
                created_at=now,
            ),
        )
    except IntegrityError:
        await session.rollback()
        first = await key_repo.get(session=session, scope=request.scope, key=request.key)
        if first is None:  # expired and removed in between: a new request after all
            return await claim(
                session=session, request=request, content_fingerprint=content_fingerprint
            )
        if first.fingerprint != content_fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used with a different request",
                details=f"key {request.key!r} was first sent with another body; "
                "use a new key for a new request",
            ) from None
        return Replay(status_code=first.status_code, body=first.response)
    return None


async def remember(
    *, session: AsyncSession, request: IdempotentRequest, status_code: int, body: dict[str, Any]
) -> None:
    """Store the response of a claimed key (committed with the request's own work)."""
    await key_repo.set_response(
        session=session, scope=request.scope, key=request.key, status_code=status_code, body=body
    )


async def prune(*, session: AsyncSession) -> int:
    """Delete keys older than 24 h; return how many."""
    return await key_repo.delete_older(session=session, before=utcnow() - KEEP_FOR)
