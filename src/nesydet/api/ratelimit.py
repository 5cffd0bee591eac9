"""Rate limits per API key or user (per client address when anonymous), answered with the
error envelope and ``Retry-After``.

Built on ``limits`` (the engine under slowapi) in a pure ASGI middleware: slowapi's own ASGI
middleware re-sends the response start for every body chunk (which breaks file downloads and
Server-Sent Events) and its other middleware can only call synchronous handlers.

Counts are shared by every API process through Redis when there is one. Redis is a helper
here, not a dependency: when it is down or frozen, counting falls back to this process (with a
log line and ``rate_limit_fallback_total``) after a short timeout, and Redis is tried again a
few seconds later. A request is never refused, or made to wait, because Redis is away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time

from fastapi import FastAPI
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import RateLimiter, SlidingWindowCounterRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from nesydet.api.auth import principal_of
from nesydet.api.errors import error_body
from nesydet.config import Settings
from nesydet.observability import metrics

log = logging.getLogger(__name__)

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
# A shared count must answer within this, or this process counts alone for a while.
SHARED_TIMEOUT_S = 0.25
SHARED_RETRY_AFTER_S = 5.0


class RateLimitMiddleware:
    """Counts requests per principal or address in a sliding window; 429 when over."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: RateLimitItem,
        shared: Storage | None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.shared = SlidingWindowCounterRateLimiter(shared) if shared is not None else None
        self._shared_down_until = 0.0

    @staticmethod
    def _key(scope: Scope) -> str:
        """Return who is counted: the key or user when authenticated, else the address (as
        the client-address middleware set it from trusted proxies only)."""
        principal = principal_of(scope)
        if principal is not None:
            return principal.rate_key
        client = scope.get("client")
        return f"ip:{client[0]}" if client else "ip:unknown"

    async def _hit(self, key: str) -> tuple[bool, RateLimiter]:
        """Count one request of ``key``; return whether it is allowed and who counted it."""
        if self.shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                async with asyncio.timeout(SHARED_TIMEOUT_S):
                    return await self.shared.hit(self.limit, key), self.shared
            except Exception as exc:  # Redis down, frozen or refusing: count here for now
                self._shared_down_until = time.monotonic() + SHARED_RETRY_AFTER_S
                metrics.RATE_LIMIT_FALLBACK.inc()
                log.warning(
                    "shared rate limits unreachable: counting per process for a while",
                    extra={"error": repr(exc)[:200], "retry_in_s": SHARED_RETRY_AFTER_S},
                )
        return await self.local.hit(self.limit, key), self.local

    async def _retry_after(self, limiter: RateLimiter, key: str) -> int:
        try:
            async with asyncio.timeout(SHARED_TIMEOUT_S):
                stats = await limiter.get_window_stats(self.limit, key)
        except Exception:  # the count said no; how long to wait is only advice
            return int(self.limit.get_expiry())
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        key = self._key(scope)
        allowed, limiter = await self._hit(key)
        if allowed:
            await self.app(scope, receive, send)
            return
        retry_after = await self._retry_after(limiter, key)
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


def shared_storage(redis_url: str) -> Storage:
    """Return the Redis storage for counts shared across processes, with short timeouts."""
    uri = redis_url if redis_url.startswith("async+") else "async+" + redis_url
    return RedisStorage(
        uri,
        implementation="redispy",
        key_prefix="nesydet-ratelimit",
        socket_connect_timeout=SHARED_TIMEOUT_S,
        socket_timeout=SHARED_TIMEOUT_S,
    )


def install_rate_limits(app: FastAPI, settings: Settings) -> None:
    """Add the middleware when a limit is configured (``NESYDET_RATE_LIMIT``)."""
    if not settings.rate_limit:
        return
    app.add_middleware(
        RateLimitMiddleware,
        limit=parse(settings.rate_limit),
        shared=shared_storage(settings.redis_url) if settings.redis_url else None,
    )
