"""The files that ship with the service, registered at the API's first start.

The default model (``NESYDET_DEFAULT_MODEL`` in the models directory) and each rules file of
the rules directory become version 1 of their stem's name; a later start finds their content
registered and does nothing. A changed file (a new release) is added as the next version,
leaving the default where an admin put it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
from pathlib import Path

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.asset_names import NAME_PATTERN, Kind
from nesydet.config import Settings
from nesydet.db import session as uow
from nesydet.db.repositories import assets as repo
from nesydet.errors import AppError
from nesydet.services.dispatch import Dispatcher
from nesydet.services.registry.catalogue import register
from nesydet.services.registry.resolve import file_sha256
from nesydet.storage import Storage

log = logging.getLogger(__name__)


def bundled_files(settings: Settings) -> list[tuple[Kind, Path]]:
    """Return the files to register: the default model and the rules directory's .pl files."""
    found: list[tuple[Kind, Path]] = []
    model = settings.models_dir / settings.default_model
    if model.is_file():
        found.append(("model", model))
    if settings.rules_dir.is_dir():
        found += [("rules", p) for p in sorted(settings.rules_dir.glob("*.pl")) if p.is_file()]
    return found


async def register_bundled(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
    settings: Settings,
    dispatcher: Dispatcher | None = None,
) -> list[str]:
    """Register what is not registered yet; return ``kind name@version`` of each one added.

    A file that fails is logged and skipped: the service runs without it in the registry.
    """
    added = []
    for kind, path in bundled_files(settings):
        name = path.stem.lower()
        if not re.match(NAME_PATTERN, name):
            continue
        try:
            spelled = await _register_one(
                sessionmaker, storage, settings, kind, path, name, dispatcher
            )
        except (AppError, OSError) as exc:
            log.warning(
                "bundled file not registered",
                extra={"file": path.name, "error": getattr(exc, "details", None) or str(exc)},
            )
            continue
        if spelled is not None:
            added.append(f"{kind} {spelled}")
    if added:
        log.info("bundled files registered", extra={"added": added})
    return added


async def _register_one(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
    settings: Settings,
    kind: Kind,
    path: Path,
    name: str,
    dispatcher: Dispatcher | None,
) -> str | None:
    sha = await anyio.to_thread.run_sync(file_sha256, path)
    async with sessionmaker() as session:
        if await repo.by_sha256(session=session, kind=kind, sha256=sha):
            return None
    with tempfile.TemporaryDirectory(prefix="nesydet-bundled-") as scratch:
        staged = Path(scratch) / ("asset" + path.suffix.lower())
        await anyio.to_thread.run_sync(shutil.copyfile, path, staged)
        async with sessionmaker() as session:
            row = await register(
                session=session,
                storage=storage,
                settings=settings,
                kind=kind,
                name=name,
                version=None,
                staged=staged,
                sha256=sha,
                size=staged.stat().st_size,
                created_by=None,
            )
            spelled, version_id, export = f"{row.name}@{row.version}", row.id, row.export
            await uow.commit(session)
    if export is not None and dispatcher is not None:
        await dispatcher.send_export(version_id)
    return spelled


def start_registering(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
    settings: Settings,
    dispatcher: Dispatcher,
) -> asyncio.Task[list[str]] | None:
    """Start `register_bundled` in the background when the settings ask for it."""
    if not settings.register_bundled:
        return None
    task = asyncio.create_task(
        register_bundled(
            sessionmaker=sessionmaker, storage=storage, settings=settings, dispatcher=dispatcher
        )
    )
    task.add_done_callback(_report)
    return task


def _report(task: asyncio.Task[list[str]]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("registering the bundled files failed", exc_info=task.exception())
