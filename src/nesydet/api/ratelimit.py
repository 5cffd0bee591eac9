"""Per-client rate limits, answered with the error envelope and ``Retry-After``.

Built on ``limits``, the engine under slowapi, in a pure ASGI middleware: slowapi's own ASGI
middleware re-sends the response start for every body chunk (which breaks file downloads and
Server-Sent Events) and its other middleware can only call synchronous handlers.
"""

from __future__ import annotations

import json
import math
import time

from fastapi import FastAPI
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from nesydet.api.errors import error_body
from nesydet.config import Settings

# Probes, scrapes and the docs must keep working for a client that hit its limit.
EXEMPT_PREFIXES = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/static-offline-docs",
)


class RateLimitMiddleware:
    """Counts requests per client address in a moving window; 429 when over."""

    def __init__(
        self, app: ASGIApp, *, limit: RateLimitItem, storage: Storage, trust_proxy: bool = False
    ) -> None:
        self.app = app
        self.limit = limit
        self.limiter = MovingWindowRateLimiter(storage)
        self.trust_proxy = trust_proxy

    def _key(self, scope: Scope) -> str:
        if self.trust_proxy:
            forwarded = Request(scope).headers.get("x-forwarded-for")
            if forwarded:
                return forwarded.split(",")[0].strip()
        client = scope.get("client")
        return client[0] if client else "unknown"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        key = self._key(scope)
        if await self.limiter.hit(self.limit, key):
            await self.app(scope, receive, send)
            return
        stats = await self.limiter.get_window_stats(self.limit, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        body = json.dumps(
            error_body(
                code="RATE_LIMIT_EXCEEDED",
                message="Too many requests, try again later",
                details=f"limit {self.limit}; retry in {retry_after} s",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry_after).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def install_rate_limits(app: FastAPI, settings: Settings) -> None:
    """Add the middleware when a limit is configured (``NESYDET_RATE_LIMIT``)."""
    if not settings.rate_limit:
        return
    storage: Storage
    if settings.redis_url:
        uri = (
            "async+" + settings.redis_url
            if not settings.redis_url.startswith("async+")
            else settings.redis_url
        )
        storage = RedisStorage(uri, implementation="redispy", key_prefix="nesydet-ratelimit")
    else:
        storage = MemoryStorage()
    app.add_middleware(
        RateLimitMiddleware,
        limit=parse(settings.rate_limit),
        storage=storage,
        trust_proxy=settings.trust_proxy_headers,
    )
