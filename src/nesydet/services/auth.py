"""Who is calling: passwords, API keys and access tokens, resolved to a :class:`Principal`.

- Passwords are hashed with argon2 (argon2-cffi).
- API keys are 256 random bits, shown once; only their SHA-256 is stored, and a key is found
  by that hash, so a wrong key costs the same whether or not a key like it exists.
- Access tokens are short-lived JWTs (PyJWT, HS256) carrying the user's id and role.

A key's check is cached for a few seconds per API process (found or not), so a script polling
with its key costs no database read per request; revoking a key takes effect within that time.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.config import Settings
from nesydet.db.base import utcnow
from nesydet.db.models import ApiKey, User
from nesydet.db.repositories import accounts as account_repo
from nesydet.domain import Role
from nesydet.errors import InvalidCredentials

log = logging.getLogger(__name__)

API_KEY_PREFIX = "nsd_"
KEY_CACHE_S = 10.0
KEY_CACHE_SIZE = 10_000
LAST_USED_EVERY_S = 60.0
_JWT_ALGORITHM = "HS256"
_JWT_ISSUER = "nesydet"
_hasher = PasswordHasher()
# Verified when the user does not exist, so an unknown name costs what a wrong password does.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request: an account, or the local user when authentication is off."""

    user_id: str | None
    name: str
    role: Role
    via: Literal["none", "token", "key"]
    key_id: str | None = None

    @property
    def owner(self) -> str | None:
        """Return whose data this caller sees: its own id, or None for all (admin, viewer,
        and the local user when authentication is off)."""
        if self.user_id is None or self.role in (Role.ADMIN, Role.VIEWER):
            return None
        return self.user_id

    @property
    def rate_key(self) -> str:
        """Return what rate limits count this caller by."""
        return f"key:{self.key_id}" if self.key_id else f"user:{self.user_id or self.name}"


LOCAL = Principal(user_id=None, name="local", role=Role.ADMIN, via="none")


def hash_password(password: str) -> str:
    """Return the argon2 hash of a password."""
    return _hasher.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Return whether ``password`` is the one hashed; costs the same for a missing hash."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def key_digest(key: str) -> str:
    """Return the stored form of an API key (SHA-256: the key itself has 256 random bits)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> tuple[str, str, str]:
    """Return a fresh key, its digest and its displayable prefix."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key_digest(key), key[:12]


def issue_token(settings: Settings, user: User) -> tuple[str, int]:
    """Return a signed access token for ``user`` and its lifetime in seconds."""
    now = utcnow()
    ttl = int(settings.jwt_ttl_s)
    claims = {
        "sub": user.id,
        "name": user.name,
        "role": user.role,
        "iss": _JWT_ISSUER,
        "iat": now,
        "exp": now + timedelta(seconds=ttl),
    }
    return jwt.encode(claims, settings.jwt_secret_value, algorithm=_JWT_ALGORITHM), ttl


def _token_principal(settings: Settings, token: str) -> Principal:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret_value,
            algorithms=[_JWT_ALGORITHM],
            issuer=_JWT_ISSUER,
            options={"require": ["exp", "sub", "role"]},
        )
        role = Role(claims["role"])
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise InvalidCredentials(details=_why(exc)) from exc
    return Principal(user_id=str(claims["sub"]), name=str(claims.get("name", "")), role=role,
                     via="token")  # fmt: skip


def _why(exc: Exception) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the access token has expired: ask for a new one"
    return "the access token is not valid"


def looks_like_key(credential: str) -> bool:
    """Return whether a credential is an API key (else it is taken as an access token)."""
    return credential.startswith(API_KEY_PREFIX)


class Authenticator:
    """Resolves the credentials of a request to a principal (one per API process)."""

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self._keys: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._last_used: dict[str, float] = {}

    async def resolve(self, credential: str) -> Principal:
        """Return who the credential belongs to.

        Raises:
            InvalidCredentials: a wrong, expired or revoked key or token, or a disabled user.
        """
        if not looks_like_key(credential):
            return _token_principal(self.settings, credential)
        digest = key_digest(credential)
        principal = await self._key_principal(digest)
        if principal is None:
            raise InvalidCredentials(details="the API key is not valid (wrong, expired or revoked)")
        if principal.key_id is not None:
            await self._touch(principal.key_id)
        return principal

    async def _key_principal(self, digest: str) -> Principal | None:
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.sessionmaker() as session:
            found = await account_repo.key_with_user(session=session, key_hash=digest)
        principal = _key_owner(found)
        self._keys[digest] = (now + KEY_CACHE_S, principal)
        self._keys.move_to_end(digest)
        while len(self._keys) > KEY_CACHE_SIZE:
            self._keys.popitem(last=False)
        return principal

    async def _touch(self, key_id: str) -> None:
        """Record the key's use, at most once a minute per key and process."""
        now = time.monotonic()
        if now - self._last_used.get(key_id, -LAST_USED_EVERY_S) < LAST_USED_EVERY_S:
            return
        self._last_used[key_id] = now
        try:
            async with self.sessionmaker() as session:
                await account_repo.mark_key_used(session=session, key_id=key_id)
                await session.commit()
        except Exception as exc:  # bookkeeping only: the request goes on
            log.warning("could not record an API key's use", extra={"error": repr(exc)[:200]})

    def forget(self, digest: str | None = None) -> None:
        """Drop cached key checks (one, or all): after a revocation in this process."""
        if digest is None:
            self._keys.clear()
        else:
            self._keys.pop(digest, None)


def _key_owner(found: tuple[ApiKey, User] | None) -> Principal | None:
    if found is None:
        return None
    key, user = found
    now = utcnow()
    if key.revoked_at is not None or user.disabled_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= now:
        return None
    return Principal(user_id=user.id, name=user.name, role=Role(user.role), via="key",
                     key_id=key.id)  # fmt: skip
