"""Accounts, API keys and access tokens: who may call, with what, and the errors otherwise."""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import update

from nesydet.db.base import utcnow
from nesydet.db.models import ApiKey, User
from nesydet.domain import Role
from tests import images
from tests.api.conftest import JWT_SECRET, PASSWORD, AuthApp
from tests.api.test_uploads import assert_envelope

JOBS = "/api/v1/jobs"


def assert_401(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert_envelope(response.json(), code)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def login(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/v1/auth/token", data={"username": name, "password": password})


async def test_without_credentials_the_api_asks_for_them(auth_app: AuthApp) -> None:
    for method, path in [("GET", JOBS), ("POST", "/api/v1/inference/upload"),
                         ("GET", "/api/v1/auth/me"), ("GET", "/api/v1/users")]:  # fmt: skip
        assert_401(await auth_app.client.request(method, path), "AUTHENTICATION_REQUIRED")
    for public in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert (await auth_app.client.get(public)).status_code == 200, public


async def test_a_password_login_gives_a_short_lived_token(auth_app: AuthApp) -> None:
    ana = await auth_app.account("ana")
    response = await login(auth_app.client, "ana")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    me = await auth_app.client.get("/api/v1/auth/me", headers=headers)
    assert me.json()["data"] == {
        "user_id": ana.user_id, "name": "ana", "role": "user", "via": "token", "key_id": None,
    }  # fmt: skip


async def test_wrong_names_and_passwords_get_the_same_answer(auth_app: AuthApp) -> None:
    await auth_app.account("ana")
    wrong_password = await login(auth_app.client, "ana", "not the password")
    unknown_user = await login(auth_app.client, "nobody", "not the password")
    for response in (wrong_password, unknown_user):
        assert_401(response, "INVALID_CREDENTIALS")
    assert wrong_password.json()["details"] == unknown_user.json()["details"]


@pytest.mark.parametrize("how", ["x-api-key", "bearer"])
async def test_an_api_key_works_in_either_header(auth_app: AuthApp, how: str) -> None:
    ana = await auth_app.account("ana")
    headers = (
        {"X-API-Key": ana.key} if how == "x-api-key" else {"Authorization": f"Bearer {ana.key}"}
    )
    me = await auth_app.client.get("/api/v1/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["data"]["via"] == "key"
    assert me.json()["data"]["key_id"] == ana.key_id


async def test_keys_are_random_shown_once_and_listed_without_their_secret(
    auth_app: AuthApp,
) -> None:
    ana = await auth_app.account("ana")
    made = await auth_app.client.post(
        "/api/v1/auth/keys",
        json={"label": "nightly", "expires_in_days": 30},
        headers=ana.headers,
    )
    assert made.status_code == 201, made.text
    data = made.json()["data"]
    assert data["key"].startswith("nsd_")
    assert len(data["key"]) >= 4 + 43  # 32 random bytes, base64url
    assert data["label"] == "nightly"
    assert data["expires_at"] > utcnow().isoformat()[:10]
    listed = (await auth_app.client.get("/api/v1/auth/keys", headers=ana.headers)).json()["data"]
    assert {k["id"] for k in listed} == {ana.key_id, data["id"]}
    assert all(data["key"] not in str(k) and ana.key not in str(k) for k in listed)
    new = await auth_app.client.get("/api/v1/auth/me", headers={"X-API-Key": data["key"]})
    assert new.json()["data"]["key_id"] == data["id"]


async def test_a_revoked_key_stops_working_at_once(auth_app: AuthApp) -> None:
    ana = await auth_app.account("ana")
    assert (await auth_app.client.get(JOBS, headers=ana.headers)).status_code == 200
    revoked = await auth_app.client.delete(f"/api/v1/auth/keys/{ana.key_id}", headers=ana.headers)
    assert revoked.status_code == 200
    assert revoked.json()["data"]["state"] == "revoked"
    assert_401(await auth_app.client.get(JOBS, headers=ana.headers), "INVALID_CREDENTIALS")


@pytest.mark.parametrize("fault", ["expired", "revoked", "disabled", "unknown", "garbage"])
async def test_wrong_expired_or_revoked_keys_are_invalid_credentials(
    auth_app: AuthApp, fault: str
) -> None:
    ana = await auth_app.account("ana")
    key = ana.key
    async with auth_app.app.state.sessionmaker() as session:
        if fault == "expired":
            await session.execute(update(ApiKey).values(expires_at=utcnow() - timedelta(seconds=1)))
        elif fault == "revoked":
            await session.execute(update(ApiKey).values(revoked_at=utcnow()))
        elif fault == "disabled":
            await session.execute(update(User).values(disabled_at=utcnow()))
        await session.commit()
    if fault == "unknown":
        key = "nsd_" + "A" * 43
    elif fault == "garbage":
        key = "not-a-key-at-all"
    assert_401(await auth_app.client.get(JOBS, headers={"X-API-Key": key}), "INVALID_CREDENTIALS")


@pytest.mark.parametrize("fault", ["expired", "forged", "wrong-issuer", "bad-role"])
async def test_bad_tokens_are_invalid_credentials(auth_app: AuthApp, fault: str) -> None:
    ana = await auth_app.account("ana")
    now = utcnow()
    claims = {"sub": ana.user_id, "role": "user", "iss": "nesydet", "iat": now,
              "exp": now + timedelta(minutes=5)}  # fmt: skip
    secret = JWT_SECRET
    if fault == "expired":
        claims["exp"] = now - timedelta(seconds=5)
    elif fault == "forged":
        secret = "another-secret-" + "y" * 40
    elif fault == "wrong-issuer":
        claims["iss"] = "someone-else"
    elif fault == "bad-role":
        claims["role"] = "superuser"
    token = jwt.encode(claims, secret, algorithm="HS256")
    response = await auth_app.client.get(JOBS, headers={"Authorization": f"Bearer {token}"})
    assert_401(response, "INVALID_CREDENTIALS")


async def test_roles_admin_user_viewer(auth_app: AuthApp) -> None:
    admin = await auth_app.account("root", Role.ADMIN)
    user = await auth_app.account("ana", Role.USER)
    viewer = await auth_app.account("grafana", Role.VIEWER)
    png = [("files", ("a.png", images.png(100, 80), "image/png"))]
    up = await auth_app.client.post("/api/v1/inference/upload", files=png, headers=user.headers)
    assert up.status_code == 200
    denied = await auth_app.client.post(
        "/api/v1/inference/upload", files=png, headers=viewer.headers
    )
    assert denied.status_code == 403
    assert_envelope(denied.json(), "ACCESS_DENIED")
    upload_id = up.json()["data"]["upload_id"]
    seen = await auth_app.client.get(f"/api/v1/uploads/{upload_id}", headers=viewer.headers)
    assert seen.status_code == 200, "a viewer reads everything"
    for who, code in ((user, 403), (viewer, 403), (admin, 200)):
        response = await auth_app.client.get("/api/v1/users", headers=who.headers)
        assert response.status_code == code, who.name


async def test_admins_manage_accounts(auth_app: AuthApp) -> None:
    admin = await auth_app.account("root", Role.ADMIN)
    created = await auth_app.client.post(
        "/api/v1/users",
        json={"name": "bob", "role": "viewer", "password": "long enough password"},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    bob = created.json()["data"]
    assert (bob["role"], bob["has_password"]) == ("viewer", True)
    again = await auth_app.client.post("/api/v1/users", json={"name": "bob"}, headers=admin.headers)
    assert again.status_code == 409
    assert_envelope(again.json(), "USER_EXISTS")
    assert (await login(auth_app.client, "bob", "long enough password")).status_code == 200
    changed = await auth_app.client.patch(
        f"/api/v1/users/{bob['id']}", json={"disabled": True}, headers=admin.headers
    )
    assert changed.json()["data"]["disabled_at"] is not None
    assert_401(await login(auth_app.client, "bob", "long enough password"), "INVALID_CREDENTIALS")
    gone = await auth_app.client.delete(f"/api/v1/users/{bob['id']}", headers=admin.headers)
    assert gone.status_code == 204
    missing = await auth_app.client.get(f"/api/v1/users/{bob['id']}", headers=admin.headers)
    assert missing.status_code == 404
    assert_envelope(missing.json(), "USER_NOT_FOUND")


async def test_failed_authentication_is_logged_as_a_warning_without_the_secret(
    auth_app: AuthApp, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "nsd_" + "Z" * 43
    with caplog.at_level(logging.WARNING):
        await auth_app.client.get(JOBS, headers={"X-API-Key": secret})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("invalid credentials" in r.getMessage() for r in warnings)
    assert secret not in caplog.text


async def test_with_authentication_off_the_local_user_is_an_admin(
    client: httpx.AsyncClient,
) -> None:
    me = (await client.get("/api/v1/auth/me")).json()["data"]
    assert me == {"user_id": None, "name": "local", "role": "admin", "via": "none",
                  "key_id": None}  # fmt: skip
    refused = await client.post("/api/v1/auth/keys", json={"label": "x"})
    assert refused.status_code == 400
