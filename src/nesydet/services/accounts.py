"""Use cases for accounts: users (admin only), API keys (each user their own), and the
password login that gives an access token."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import ApiKey, User
from nesydet.db.repositories import accounts as account_repo
from nesydet.domain import Role
from nesydet.errors import (
    InvalidCredentials,
    KeyNotFound,
    UserExists,
    UserHasData,
    UserNotFound,
    ValidationFailed,
)
from nesydet.ids import new_id
from nesydet.schemas.auth import KeyItem, UserItem
from nesydet.services.auth import (
    Principal,
    hash_password,
    issue_token,
    new_api_key,
    password_matches,
)

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}[a-z0-9]$")
MIN_PASSWORD = 10


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid account name (3 to 64 of a-z 0-9 . _ -)."""
    if not NAME_RE.match(name):
        raise ValidationFailed(
            "Invalid user name",
            errors=[{"field": "name", "error_code": "INVALID_VALUE",
                     "error": "3 to 64 characters: a-z, 0-9, '.', '_', '-'"}],
        )  # fmt: skip
    return name


def check_password(password: str) -> str:
    """Return ``password`` if it is long enough."""
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed(
            "Password too short",
            errors=[{"field": "password", "error_code": "INVALID_VALUE",
                     "error": f"at least {MIN_PASSWORD} characters"}],
        )  # fmt: skip
    return password


async def create_user(
    *, session: AsyncSession, name: str, role: Role, password: str | None
) -> User:
    """Create an account (a password is optional: scripts may use keys only).

    Raises:
        UserExists: the name is taken.
        ValidationFailed: a bad name or a short password.
    """
    user = User(
        id=new_id("usr"),
        name=check_name(name),
        role=Role(role),
        password_hash=hash_password(check_password(password)) if password else None,
        created_at=utcnow(),
    )
    try:
        await account_repo.add_user(session=session, user=user)
    except IntegrityError as exc:
        raise UserExists(details=f"a user named {name!r} exists") from exc
    return user


async def get_user(*, session: AsyncSession, user_id: str) -> User:
    """Return a user, or raise UserNotFound."""
    user = await account_repo.user_by_id(session=session, user_id=user_id)
    if user is None:
        raise UserNotFound(details=f"no user with id {user_id}")
    return user


async def find_user(*, session: AsyncSession, name: str) -> User:
    """Return the user with that name, or raise UserNotFound."""
    user = await account_repo.user_by_name(session=session, name=name)
    if user is None:
        raise UserNotFound(details=f"no user named {name!r}")
    return user


async def update_user(
    *,
    session: AsyncSession,
    user_id: str,
    role: Role | None = None,
    disabled: bool | None = None,
    password: str | None = None,
) -> User:
    """Change a user's role, password, or whether the account is disabled."""
    user = await get_user(session=session, user_id=user_id)
    if role is not None:
        user.role = Role(role)
    if password is not None:
        user.password_hash = hash_password(check_password(password))
    if disabled is not None:
        user.disabled_at = (user.disabled_at or utcnow()) if disabled else None
    await session.flush()
    return user


async def delete_user(*, session: AsyncSession, user_id: str) -> None:
    """Delete a user who owns no data (their keys go with them).

    Raises:
        UserHasData: uploads or jobs still belong to the user (disable the account instead,
            or delete their uploads first).
    """
    user = await get_user(session=session, user_id=user_id)
    if await account_repo.owns_data(session=session, user_id=user.id):
        raise UserHasData(details=f"{user.name} owns uploads or jobs; disable the account instead")
    await account_repo.delete_user(session=session, user=user)


async def login(
    *, session: AsyncSession, settings: Settings, name: str, password: str
) -> tuple[str, int]:
    """Return an access token and its lifetime for a name and password.

    Raises:
        InvalidCredentials: unknown name, wrong password, no password set, or a disabled
            account (the same answer, and about the same time, for each).
    """
    user = await account_repo.user_by_name(session=session, name=name)
    ok = password_matches(user.password_hash if user else None, password)
    if user is None or not ok or user.disabled_at is not None:
        raise InvalidCredentials(details="wrong user name or password")
    return issue_token(settings, user)


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: the secret is in ``key``, and is never shown again."""

    row: ApiKey
    key: str


async def create_key(
    *, session: AsyncSession, user_id: str, label: str, expires_in_days: float | None
) -> NewKey:
    """Make an API key for a user."""
    user = await get_user(session=session, user_id=user_id)
    key, digest, prefix = new_api_key()
    now = utcnow()
    row = ApiKey(
        id=new_id("key"),
        user_id=user.id,
        label=label,
        prefix=prefix,
        key_hash=digest,
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    await account_repo.add_key(session=session, key=row)
    return NewKey(row=row, key=key)


async def list_keys(*, session: AsyncSession, user_id: str | None) -> list[tuple[ApiKey, User]]:
    """Return one user's keys (everyone's when None), newest first."""
    return await account_repo.keys_of(session=session, user_id=user_id)


async def revoke_key(*, session: AsyncSession, principal: Principal | None, key_id: str) -> ApiKey:
    """Revoke a key: its owner's, or any key for an admin (``principal`` None: the CLI).

    Raises:
        KeyNotFound: no such key, or another user's (answered alike).
    """
    key = await account_repo.key_by_id(session=session, key_id=key_id)
    allowed = principal is None or principal.role == Role.ADMIN
    if key is None or not (allowed or (principal is not None and key.user_id == principal.user_id)):
        raise KeyNotFound(details=f"no API key with id {key_id}")
    await account_repo.revoke_key(session=session, key_id=key.id)
    await session.refresh(key)
    log.info("API key revoked", extra={"key_id": key.id})
    return key


def key_state(key: ApiKey, now: datetime | None = None) -> Literal["active", "expired", "revoked"]:
    """Return ``active``, ``expired`` or ``revoked``."""
    now = now or utcnow()
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def user_item(user: User) -> UserItem:
    """Return the API view of a user (never the password hash)."""
    return UserItem(
        id=user.id,
        name=user.name,
        role=Role(user.role),
        has_password=user.password_hash is not None,
        created_at=user.created_at,
        disabled_at=user.disabled_at,
    )


def key_item(key: ApiKey, user: User) -> KeyItem:
    """Return the API view of a key (never the secret, nor its digest)."""
    return KeyItem(
        id=key.id,
        user_id=user.id,
        user=user.name,
        label=key.label,
        prefix=key.prefix,
        state=key_state(key),
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


async def list_users(*, session: AsyncSession) -> list[User]:
    """Return every account, by name."""
    return await account_repo.list_users(session=session)
