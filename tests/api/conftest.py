"""An app with authentication required, and accounts to call it with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from nesydet.api.app import create_app
from nesydet.config import Settings
from nesydet.domain import Role
from nesydet.services import accounts
from nesydet.services.image_checker import ImageChecker

JWT_SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"


@dataclass
class Account:
    """A user of the test app and an API key of theirs."""

    user_id: str
    name: str
    role: Role
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@dataclass
class AuthApp:
    app: FastAPI
    client: httpx.AsyncClient  # sends no credentials of its own

    async def account(self, name: str, role: Role = Role.USER) -> Account:
        async with self.app.state.sessionmaker() as session:
            user = await accounts.create_user(
                session=session, name=name, role=role, password=PASSWORD
            )
            made = await accounts.create_key(
                session=session, user_id=user.id, label="tests", expires_in_days=None
            )
            await session.commit()
        return Account(user.id, user.name, role, made.key, made.row.id)


@pytest.fixture
def auth_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"auth_mode": "required", "jwt_secret": SecretStr(JWT_SECRET), "jwt_ttl_s": 900}
    )


@pytest.fixture
async def auth_app(auth_settings: Settings, checker: ImageChecker) -> AsyncIterator[AuthApp]:
    app = create_app(auth_settings, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield AuthApp(app, http)
