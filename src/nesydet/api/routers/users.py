"""Account management, for admins."""

from __future__ import annotations

from fastapi import APIRouter, Response

from nesydet.api.auth import AdminDep
from nesydet.api.deps import SessionDep
from nesydet.api.params import UserIdPath
from nesydet.schemas.auth import (
    USER_CREATED_EXAMPLE,
    USER_EXAMPLE,
    USER_LIST_EXAMPLE,
    UserCreateRequest,
    UserListResponse,
    UserResponse,
    UserUpdateRequest,
)
from nesydet.schemas.common import error_responses
from nesydet.services import accounts

router = APIRouter(prefix="/api/v1/users", tags=["users"])

_AUTH = (
    (401, "AUTHENTICATION_REQUIRED", "Authentication required", "send credentials"),
    (403, "ACCESS_DENIED", "Access denied", "only an admin may do this"),
)
_USER_404 = (404, "USER_NOT_FOUND", "User not found", "no user with id usr_000000000000")


@router.get(
    "",
    response_model=UserListResponse,
    summary="Every account",
    responses={**USER_LIST_EXAMPLE, **error_responses(*_AUTH)},
)
async def list_users(session: SessionDep, _admin: AdminDep) -> UserListResponse:
    """Return every account, by name."""
    users = await accounts.list_users(session=session)
    return UserListResponse(data=[accounts.user_item(u) for u in users])


@router.post(
    "",
    status_code=201,
    response_model=UserResponse,
    summary="Create an account",
    responses={
        **USER_CREATED_EXAMPLE,
        **error_responses(
            *_AUTH,
            (409, "USER_EXISTS", "A user with this name exists", "a user named 'ana' exists"),
        ),
    },
)
async def create_user(
    body: UserCreateRequest, session: SessionDep, _admin: AdminDep
) -> UserResponse:
    """Create an account with a role and, optionally, a password."""
    user = await accounts.create_user(
        session=session, name=body.name, role=body.role, password=body.password
    )
    return UserResponse(data=accounts.user_item(user))


@router.get(
    "/{user_id}",
    response_model=UserResponse,
    summary="One account",
    responses={**USER_EXAMPLE, **error_responses(*_AUTH, _USER_404)},
)
async def get_user(user_id: UserIdPath, session: SessionDep, _admin: AdminDep) -> UserResponse:
    """Return an account."""
    return UserResponse(
        data=accounts.user_item(await accounts.get_user(session=session, user_id=user_id))
    )


@router.patch(
    "/{user_id}",
    response_model=UserResponse,
    summary="Change an account's role or password, or disable it",
    responses={**USER_EXAMPLE, **error_responses(*_AUTH, _USER_404)},
)
async def update_user(
    user_id: UserIdPath, body: UserUpdateRequest, session: SessionDep, _admin: AdminDep
) -> UserResponse:
    """Apply the given changes; a disabled account's keys and logins stop working."""
    user = await accounts.update_user(
        session=session,
        user_id=user_id,
        role=body.role,
        disabled=body.disabled,
        password=body.password,
    )
    return UserResponse(data=accounts.user_item(user))


@router.delete(
    "/{user_id}",
    status_code=204,
    response_class=Response,
    summary="Delete an account that owns no uploads or jobs",
    responses=error_responses(
        *_AUTH,
        _USER_404,
        (409, "USER_HAS_DATA", "The user still owns uploads or jobs", "disable the account"),
    ),
)
async def delete_user(user_id: UserIdPath, session: SessionDep, _admin: AdminDep) -> Response:
    """Delete the account and its keys."""
    await accounts.delete_user(session=session, user_id=user_id)
    return Response(status_code=204)
