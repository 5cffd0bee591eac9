"""Queries on users and their API keys."""

from __future__ import annotations

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.db.base import utcnow
from nesydet.db.models import ApiKey, Job, Upload, User


async def add_user(*, session: AsyncSession, user: User) -> None:
    """Stage a user and flush (IntegrityError when the name is taken)."""
    session.add(user)
    await session.flush()


async def user_by_name(*, session: AsyncSession, name: str) -> User | None:
    """Return the user with that name, or None."""
    return (await session.execute(select(User).where(User.name == name))).scalar_one_or_none()


async def user_by_id(*, session: AsyncSession, user_id: str) -> User | None:
    """Return the user with that id, or None."""
    return await session.get(User, user_id, populate_existing=True)


async def list_users(*, session: AsyncSession) -> list[User]:
    """Return every user, by name."""
    return list((await session.execute(select(User).order_by(User.name))).scalars())


async def owns_data(*, session: AsyncSession, user_id: str) -> bool:
    """Return whether the user owns any upload or job."""
    uploads = select(Upload.id).where(Upload.owner_id == user_id)
    jobs = select(Job.id).where(Job.owner_id == user_id)
    return bool(await session.scalar(select(exists(uploads) | exists(jobs))))


async def delete_user(*, session: AsyncSession, user: User) -> None:
    """Delete a user (and, by cascade, their keys)."""
    await session.delete(user)
    await session.flush()


async def add_key(*, session: AsyncSession, key: ApiKey) -> None:
    """Stage an API key and flush."""
    session.add(key)
    await session.flush()


async def key_with_user(*, session: AsyncSession, key_hash: str) -> tuple[ApiKey, User] | None:
    """Return the key with that digest and its user, or None (one indexed lookup either way)."""
    row = (
        await session.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == key_hash)
        )
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None


async def keys_of(*, session: AsyncSession, user_id: str | None) -> list[tuple[ApiKey, User]]:
    """Return the keys of one user (every user's when None), newest first."""
    stmt = select(ApiKey, User).join(User, User.id == ApiKey.user_id)
    if user_id is not None:
        stmt = stmt.where(ApiKey.user_id == user_id)
    rows = (await session.execute(stmt.order_by(ApiKey.created_at.desc()))).all()
    return [(key, user) for key, user in rows]


async def key_by_id(*, session: AsyncSession, key_id: str) -> ApiKey | None:
    """Return one key, or None."""
    return await session.get(ApiKey, key_id, populate_existing=True)


async def revoke_key(*, session: AsyncSession, key_id: str) -> None:
    """Mark a key revoked now (once: an earlier revocation time is kept)."""
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def mark_key_used(*, session: AsyncSession, key_id: str) -> None:
    """Record that a key was used now."""
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(last_used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
