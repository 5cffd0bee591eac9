"""Request dependencies as ``Annotated`` aliases. The session dependency owns the commit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.config import Settings
from nesydet.db import session as uow
from nesydet.services.dispatch import Dispatcher
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


def get_settings(request: Request) -> Settings:
    """Return the app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_storage(request: Request) -> Storage:
    """Return the app's storage backend."""
    storage: Storage = request.app.state.storage
    return storage


def get_checker(request: Request) -> ImageChecker:
    """Return the app's image checker pool."""
    checker: ImageChecker = request.app.state.checker
    return checker


# scope="function": commit before the response is sent, so a commit failure is the response.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
CheckerDep = Annotated[ImageChecker, Depends(get_checker)]


def get_dispatcher(request: Request) -> Dispatcher:
    """Return the app's task dispatcher."""
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


def get_status_cache(request: Request) -> StatusCache:
    """Return the app's job status cache."""
    cache: StatusCache = request.app.state.status_cache
    return cache


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """Return the session factory, for work that outlives the request's own session."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return maker


DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
StatusCacheDep = Annotated[StatusCache, Depends(get_status_cache)]
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
