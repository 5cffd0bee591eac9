"""Request dependencies as ``Annotated`` aliases. The session dependency owns the commit.

Every dependency is ``async def``, even those that only read ``app.state``: FastAPI runs a
plain ``def`` dependency on its thread pool, a thread hop per request for nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.api.auth import principal_of
from nesydet.config import Settings
from nesydet.db import session as uow
from nesydet.services.dispatch import Dispatcher
from nesydet.services.idempotency import IdempotentRequest
from nesydet.services.image_checker import ImageChecker
from nesydet.services.status_cache import StatusCache
from nesydet.storage import Storage


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield a session, commit it when the endpoint returns, roll it back if it raises."""
    async with request.app.state.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await uow.rollback(session)
            raise
        await uow.commit(session)


async def get_settings(request: Request) -> Settings:
    """Return the app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_storage(request: Request) -> Storage:
    """Return the app's storage backend."""
    storage: Storage = request.app.state.storage
    return storage


async def get_checker(request: Request) -> ImageChecker:
    """Return the app's image checker pool."""
    checker: ImageChecker = request.app.state.checker
    return checker


# scope="function": commit before the response is sent, so a commit failure is the response.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
CheckerDep = Annotated[ImageChecker, Depends(get_checker)]


async def get_dispatcher(request: Request) -> Dispatcher:
    """Return the app's task dispatcher."""
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


async def get_status_cache(request: Request) -> StatusCache:
    """Return the app's job status cache."""
    cache: StatusCache = request.app.state.status_cache
    return cache


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """Return the session factory, for work that outlives the request's own session."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return maker


DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
StatusCacheDep = Annotated[StatusCache, Depends(get_status_cache)]
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]


async def get_idempotent_request(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="any unique string (a UUID, say): sent again with the same body "
            "within 24 h, the first response comes back instead of a second upload or job",
        ),
    ] = None,
) -> IdempotentRequest | None:
    """Return the request's idempotency key and scope (its route), when it sent one."""
    if idempotency_key is None:
        return None
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    principal = principal_of(request.scope)
    # A key is one caller's: two accounts choosing the same key never see each other's answer.
    caller = principal.user_id if principal is not None and principal.user_id else "local"
    return IdempotentRequest(scope=f"{caller} {request.method} {path}", key=idempotency_key)


IdempotencyDep = Annotated[IdempotentRequest | None, Depends(get_idempotent_request)]
