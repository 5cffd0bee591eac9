"""Account, API key and access token models (spec, Security: Authentication)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nesydet.domain import Role
from nesydet.schemas.common import Timestamp


class TokenResponse(BaseModel):
    """An OAuth2 access token (RFC 6749 5.1), so that OAuth2 clients and Swagger's Authorize
    button read it as they expect: ``Authorization: Bearer <access_token>``."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105  # the OAuth2 token type, no secret
    expires_in: int = Field(description="seconds the token is valid")


class MeData(BaseModel):
    user_id: str | None = Field(description="null when authentication is off (the local user)")
    name: str
    role: Role
    via: Literal["none", "token", "key"] = Field(description="how the request authenticated")
    key_id: str | None = None


class MeResponse(BaseModel):
    status: Literal["success"] = "success"
    data: MeData


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyCreateRequest(_Strict):
    label: str = Field(default="", max_length=100, examples=["nightly batch script"])
    expires_in_days: float | None = Field(
        default=None, gt=0, le=3650, description="none: the key does not expire"
    )


class KeyCreated(BaseModel):
    id: str = Field(examples=["key_0a1b2c3d4e5f"])
    key: str = Field(description="the secret: shown this once, store it now")
    label: str
    expires_at: Timestamp | None


class KeyCreatedResponse(BaseModel):
    status: Literal["success"] = "success"
    message: str = "API key created: store it now, it is not shown again"
    data: KeyCreated


class KeyItem(BaseModel):
    id: str
    user_id: str
    user: str
    label: str
    prefix: str = Field(description="the key's first characters, to tell keys apart")
    state: Literal["active", "expired", "revoked"]
    created_at: Timestamp
    expires_at: Timestamp | None
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None


class KeyResponse(BaseModel):
    status: Literal["success"] = "success"
    data: KeyItem


class KeyListResponse(BaseModel):
    status: Literal["success"] = "success"
    data: list[KeyItem]


class UserCreateRequest(_Strict):
    name: str = Field(min_length=3, max_length=64, examples=["ana"])
    role: Role = Role.USER
    password: str | None = Field(
        default=None, min_length=10, max_length=1024, description="none: API keys only"
    )


class UserUpdateRequest(_Strict):
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=10, max_length=1024)


class UserItem(BaseModel):
    id: str
    name: str
    role: Role
    has_password: bool
    created_at: Timestamp
    disabled_at: Timestamp | None


class UserResponse(BaseModel):
    status: Literal["success"] = "success"
    data: UserItem


class UserListResponse(BaseModel):
    status: Literal["success"] = "success"
    data: list[UserItem]


_USER = {
    "id": "usr_0a1b2c3d4e5f",
    "name": "ana",
    "role": "user",
    "has_password": True,
    "created_at": "2026-02-02T18:54:57.324Z",
    "disabled_at": None,
}
_KEY = {
    "id": "key_0a1b2c3d4e5f",
    "user_id": "usr_0a1b2c3d4e5f",
    "user": "ana",
    "label": "nightly batch script",
    "prefix": "nsd_Q2x9kLm0",
    "state": "active",
    "created_at": "2026-02-02T18:54:57.324Z",
    "expires_at": "2026-05-03T18:54:57.324Z",
    "last_used_at": None,
    "revoked_at": None,
}


def ok(data: object, status: int = 200, message: str | None = None) -> dict[int | str, Any]:
    """Return a FastAPI ``responses`` entry with an example success body."""
    body: dict[str, Any] = {"status": "success", "data": data}
    if message is not None:
        body["message"] = message
    return {status: {"content": {"application/json": {"example": body}}}}


TOKEN_EXAMPLE: dict[int | str, Any] = {
    200: {
        "content": {
            "application/json": {
                "example": {
                    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOi...",
                    "token_type": "bearer",
                    "expires_in": 900,
                }
            }
        }
    }
}
ME_EXAMPLE = ok(
    {"user_id": "usr_0a1b2c3d4e5f", "name": "ana", "role": "user", "via": "token", "key_id": None}
)
KEY_CREATED_EXAMPLE = ok(
    {
        "id": "key_0a1b2c3d4e5f",
        "key": "nsd_Q2x9kLm0...43 characters in all",
        "label": "nightly batch script",
        "expires_at": "2026-05-03T18:54:57.324Z",
    },
    201,
    "API key created: store it now, it is not shown again",
)
KEY_EXAMPLE = ok(_KEY)
KEY_LIST_EXAMPLE = ok([_KEY])
USER_EXAMPLE = ok(_USER)
USER_CREATED_EXAMPLE = ok(_USER, 201)
USER_LIST_EXAMPLE = ok([_USER])
