"""Accounts at the edge: password login for an access token, who am I, and API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request

from nesydet.api.auth import ReaderDep
from nesydet.api.deps import SessionDep, SettingsDep
from nesydet.api.params import KeyIdPath
from nesydet.errors import InvalidRequest
from nesydet.ids import USER, id_pattern
from nesydet.schemas.auth import (
    KEY_CREATED_EXAMPLE,
    KEY_EXAMPLE,
    KEY_LIST_EXAMPLE,
    ME_EXAMPLE,
    TOKEN_EXAMPLE,
    KeyCreated,
    KeyCreatedResponse,
    KeyCreateRequest,
    KeyListResponse,
    KeyResponse,
    MeData,
    MeResponse,
    TokenResponse,
)
from nesydet.schemas.common import error_responses
from nesydet.services import accounts
from nesydet.services.auth import Principal

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

_401 = (
    401,
    "INVALID_CREDENTIALS",
    "Invalid credentials",
    "the API key is not valid (wrong, expired or revoked)",
)
_401_MISSING = (
    401,
    "AUTHENTICATION_REQUIRED",
    "Authentication required",
    "send Authorization: Bearer <access token or API key>, or X-API-Key: <API key>",
)
_KEY_404 = (404, "KEY_NOT_FOUND", "API key not found", "no API key with id key_000000000000")


def _account_of(principal: Principal) -> str:
    if principal.user_id is None:
        raise InvalidRequest(
            "API keys belong to accounts",
            details="authentication is off (NESYDET_AUTH_MODE=none): there is no account",
        )
    return principal.user_id


@router.post(
    "/token",
    response_model=TokenResponse,
    summary="Log in: a short-lived access token for a user name and password",
    description=(
        "OAuth2 password flow (form fields `username`, `password`). Send the token as "
        "`Authorization: Bearer <access_token>` until it expires (`expires_in` seconds)."
    ),
    responses={
        **TOKEN_EXAMPLE,
        **error_responses(
            (401, "INVALID_CREDENTIALS", "Invalid credentials", "wrong user name or password")
        ),
    },
)
async def token(
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
) -> TokenResponse:
    """Return an access token."""
    access, ttl = await accounts.login(
        session=session, settings=settings, name=username, password=password
    )
    return TokenResponse(access_token=access, expires_in=ttl)


@router.get(
    "/me",
    response_model=MeResponse,
    summary="Who the credentials of this request belong to",
    responses={**ME_EXAMPLE, **error_responses(_401_MISSING, _401)},
)
async def me(principal: ReaderDep) -> MeResponse:
    """Return the caller."""
    return MeResponse(
        data=MeData(
            user_id=principal.user_id,
            name=principal.name,
            role=principal.role,
            via=principal.via,
            key_id=principal.key_id,
        )
    )


@router.post(
    "/keys",
    status_code=201,
    response_model=KeyCreatedResponse,
    summary="Make an API key for yourself (the secret is shown once)",
    responses={**KEY_CREATED_EXAMPLE, **error_responses(_401_MISSING, _401)},
)
async def create_key(
    body: KeyCreateRequest, session: SessionDep, principal: ReaderDep
) -> KeyCreatedResponse:
    """Create a key for the caller's account."""
    made = await accounts.create_key(
        session=session,
        user_id=_account_of(principal),
        label=body.label,
        expires_in_days=body.expires_in_days,
    )
    return KeyCreatedResponse(
        data=KeyCreated(
            id=made.row.id, key=made.key, label=made.row.label, expires_at=made.row.expires_at
        )
    )


@router.get(
    "/keys",
    response_model=KeyListResponse,
    summary="Your API keys (an admin may ask for another user's)",
    responses={**KEY_LIST_EXAMPLE, **error_responses(_401_MISSING, _401)},
)
async def list_keys(
    session: SessionDep,
    principal: ReaderDep,
    user_id: Annotated[
        str | None, Query(pattern=id_pattern(USER), description="admins: this user's keys")
    ] = None,
) -> KeyListResponse:
    """Return the keys, newest first, never their secrets."""
    owner = _account_of(principal)
    if user_id is not None and principal.role == "admin":
        owner = user_id
    rows = await accounts.list_keys(session=session, user_id=owner)
    return KeyListResponse(data=[accounts.key_item(key, user) for key, user in rows])


@router.delete(
    "/keys/{key_id}",
    response_model=KeyResponse,
    summary="Revoke an API key",
    responses={**KEY_EXAMPLE, **error_responses(_401_MISSING, _401, _KEY_404)},
)
async def revoke_key(
    key_id: KeyIdPath, request: Request, session: SessionDep, principal: ReaderDep
) -> KeyResponse:
    """Revoke one of the caller's keys (any key, for an admin)."""
    key = await accounts.revoke_key(session=session, principal=principal, key_id=key_id)
    request.app.state.authenticator.forget()  # this process stops trusting it at once
    user = await accounts.get_user(session=session, user_id=key.user_id)
    return KeyResponse(data=accounts.key_item(key, user))
