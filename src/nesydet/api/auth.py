"""Who is asking, at the edge: the client's address behind trusted proxies, the principal
behind the credentials, and the dependencies routes use to require one.

Two pure ASGI middlewares run before the rate limits (which count per principal, or per
address when anonymous):

- :class:`ClientAddressMiddleware` takes the client address (and scheme) from
  ``X-Forwarded-For`` / ``X-Forwarded-Proto`` only when the direct peer is a trusted proxy,
  and then the right-most hop that is not itself a trusted proxy: a client cannot forge its
  address by sending the header itself.
- :class:`AuthMiddleware` resolves ``Authorization: Bearer <token or key>`` or
  ``X-API-Key: <key>`` once per request and leaves the principal (or the error) in the
  request's state; the route's dependency decides whether it needs one.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nesydet.domain import Role
from nesydet.errors import AccessDenied, AppError, AuthenticationRequired
from nesydet.services.auth import LOCAL, Principal

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_PRINCIPAL = "principal"
_AUTH_ERROR = "auth_error"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def client_from_forwarded(
    peer: str, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str:
    """Return the client address: the peer, unless the peer is a trusted proxy; then the
    right-most address of ``X-Forwarded-For`` that is not a trusted proxy."""
    if not _trusted(peer, trusted) or not forwarded_for:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop[:64]
    return hops[0][:64] if hops else peer


def _trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class ClientAddressMiddleware:
    """Rewrites ``scope["client"]`` and ``scope["scheme"]`` from a trusted proxy's headers."""

    def __init__(self, app: ASGIApp, *, trusted: Sequence[IPNetwork | str]) -> None:
        self.app = app
        self.trusted = [ipaddress.ip_network(str(net), strict=False) for net in trusted]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.trusted and scope.get("client"):
            peer, port = scope["client"]
            if _trusted(peer, self.trusted):
                client = client_from_forwarded(
                    peer, _header(scope, b"x-forwarded-for"), self.trusted
                )
                scope = {**scope, "client": (client, port)}
                proto = (_header(scope, b"x-forwarded-proto") or "").split(",")[-1].strip()
                if proto in ("http", "https"):
                    scope["scheme"] = proto
        await self.app(scope, receive, send)


HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class HstsMiddleware:
    """Tells browsers to keep to HTTPS, on responses that went out over HTTPS (directly, or
    through a trusted TLS-terminating proxy)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), HSTS]}
            await send(message)

        await self.app(scope, receive, send_with_hsts)


def _credential(scope: Scope) -> str | None:
    authorization = _header(scope, b"authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = _header(scope, b"x-api-key")
    return key.strip() if key and key.strip() else None


class AuthMiddleware:
    """Resolves the request's credentials, if it carries any, into the request state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            state: dict[str, Any] = scope.setdefault("state", {})
            credential = _credential(scope)
            authenticator = getattr(scope["app"].state, "authenticator", None)
            if credential is not None and authenticator is not None:
                try:
                    state[_PRINCIPAL] = await authenticator.resolve(credential)
                except AppError as exc:
                    state[_AUTH_ERROR] = exc
        await self.app(scope, receive, send)


def principal_of(scope: Scope) -> Principal | None:
    """Return the principal the request's credentials resolved to, if any."""
    found: Principal | None = scope.get("state", {}).get(_PRINCIPAL)
    return found


def auth_error_of(scope: Scope) -> AppError | None:
    """Return why the request's credentials were refused, if they were."""
    error: AppError | None = scope.get("state", {}).get(_AUTH_ERROR)
    return error


# Advertised in the OpenAPI document so that Swagger's Authorize button offers both: the
# password flow (it gets a token from /auth/token) and an API key in X-API-Key. A key sent as
# a Bearer token works the same; these objects only describe, the middleware authenticates.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


async def current_principal(
    request: Request,
    _token: Annotated[str | None, Security(oauth2_scheme)] = None,
    _key: Annotated[str | None, Security(api_key_scheme)] = None,
) -> Principal:
    """Return the caller; with authentication off, the local user.

    Raises:
        InvalidCredentials: credentials were sent and are wrong, expired or revoked.
        AuthenticationRequired: none were sent.
    """
    if request.app.state.settings.auth_mode == "none":
        return LOCAL
    state = request.scope.get("state", {})
    error: AppError | None = state.get(_AUTH_ERROR)
    if error is not None:
        log.warning(
            "request with invalid credentials",
            extra={"error_code": error.code, "client": _client(request)},
        )
        raise error
    principal: Principal | None = state.get(_PRINCIPAL)
    if principal is None:
        log.warning("request without credentials", extra={"client": _client(request)})
        raise AuthenticationRequired()
    return principal


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def writer(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """Return the caller if it may change things (not a viewer)."""
    if principal.role == Role.VIEWER:
        raise AccessDenied(details="a viewer account can read but not change anything")
    return principal


async def admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """Return the caller if it is an admin."""
    if principal.role != Role.ADMIN:
        raise AccessDenied(details="only an admin may do this")
    return principal


ReaderDep = Annotated[Principal, Depends(current_principal)]
WriterDep = Annotated[Principal, Depends(writer)]
AdminDep = Annotated[Principal, Depends(admin)]
