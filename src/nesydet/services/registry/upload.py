"""Use case: a model or rules file uploaded as multipart (``file``, ``name``, ``version``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.asset_names import Kind
from nesydet.config import Settings
from nesydet.db import session as uow
from nesydet.db.models import AssetVersion
from nesydet.errors import InvalidRequest, NoFiles, RequestTooLarge
from nesydet.ids import new_id
from nesydet.services.batch_form import receive_form
from nesydet.services.dispatch import Dispatcher
from nesydet.services.multipart import ReceivedFile, remove_tree, sanitize_filename
from nesydet.services.registry.catalogue import check_name, file_suffix, register
from nesydet.storage import Storage

log = logging.getLogger(__name__)

FILE_FIELD = "file"
VALUE_FIELDS = frozenset({"name", "version"})


@dataclass(frozen=True, slots=True)
class UploadContext:
    """The app's resources an upload uses, and who sends it."""

    settings: Settings
    storage: Storage
    dispatcher: Dispatcher
    created_by: str | None


async def upload_version(
    *,
    session: AsyncSession,
    context: UploadContext,
    kind: Kind,
    content_type: str | None,
    body: AsyncIterator[bytes],
) -> AssetVersion:
    """Receive, inspect and register one file; a .pt's ONNX export is asked for after the
    commit.

    Raises:
        NoFiles, InvalidRequest, RequestTooLarge: the request is not one file with a name.
        ValidationFailed: a malformed name or version.
        InvalidModel / InvalidRules: the file is not usable; VersionExists: a duplicate.
    """
    settings = context.settings
    limit = settings.max_model_bytes if kind == "model" else settings.max_rules_bytes
    staging = settings.staging_dir / new_id("reg")
    try:
        form = await receive_form(
            body,
            content_type=content_type,
            field_name=FILE_FIELD,
            staging=staging,
            max_file_size=limit,
            max_body_size=limit + 1024 * 1024,
            value_names=VALUE_FIELDS,
        )
        part = _one_file(form.files, form.file_count, limit)
        name, version = form.values.get("name"), form.values.get("version") or None
        if not name:
            raise InvalidRequest("The form field 'name' is required", details="e.g. name=roads")
        check_name(name, version)
        suffix = file_suffix(kind, part.filename)
        # Its own name (made safe), so that messages about it name the file that was sent.
        staged = part.path.with_name(sanitize_filename(part.filename, "asset" + suffix))
        await anyio.to_thread.run_sync(part.path.rename, staged)
        row = await register(
            session=session,
            storage=context.storage,
            settings=settings,
            kind=kind,
            name=name,
            version=version,
            staged=staged,
            sha256=part.sha256,
            size=part.size,
            created_by=context.created_by,
        )
    finally:
        await anyio.to_thread.run_sync(remove_tree, staging)
    if row.export is not None:
        version_id = row.id  # read now: the row expires at the commit
        uow.after_commit(session, lambda: _ask_export(context.dispatcher, version_id))
    return row


async def _ask_export(dispatcher: Dispatcher, version_id: int) -> None:
    await dispatcher.send_export(version_id)


def _one_file(files: list[ReceivedFile], count: int, limit: int) -> ReceivedFile:
    if count == 0:
        raise NoFiles(
            f"No file in the multipart field '{FILE_FIELD}'",
            details=f"send the file as '{FILE_FIELD}', with a field 'name'",
        )
    if count > 1:
        raise InvalidRequest("One file per request", details=f"{count} files were sent")
    [part] = files
    if part.too_large:
        raise RequestTooLarge("The file is too large", details=f"at most {limit} bytes")
    if part.size == 0:
        raise InvalidRequest("The file is empty", details="send the model or rules file")
    return part
