"""Rate limits shared through Redis fail open to per-process counting when Redis is away."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nesydet.api import ratelimit
from nesydet.api.app import create_app
from nesydet.config import Settings
from nesydet.domain import Role
from nesydet.services import accounts
from nesydet.services.image_checker import ImageChecker
from tests.api.test_uploads import assert_envelope
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

UNKNOWN = "/api/v1/uploads/upl_000000000000"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def fallbacks(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "rate_limit_fallback":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    return 0.0


async def hits(settings: Settings, checker: ImageChecker, count: int) -> tuple[list[int], float]:
    app = create_app(settings, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            before = fallbacks((await http.get("/metrics")).text)
            codes = [(await http.get(UNKNOWN)).status_code for _ in range(count)]
            after = fallbacks((await http.get("/metrics")).text)
    return codes, after - before


async def test_limits_are_shared_through_redis(
    settings: Settings, checker: ImageChecker, private_redis: RedisServer
) -> None:
    shared = settings.model_copy(update={"rate_limit": "5/minute", "redis_url": private_redis.url})
    first, _ = await hits(shared, checker, 3)
    # Another process (another app) sees the same count.
    second, fell_back = await hits(shared, checker, 3)
    assert first == [404, 404, 404]
    assert second == [404, 404, 429]
    assert fell_back == 0


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
async def test_redis_away_falls_back_to_per_process_counting(
    settings: Settings,
    checker: ImageChecker,
    private_redis: RedisServer,
    fault: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Redis is left alone for SHARED_RETRY_AFTER_S after a failed attempt; a loaded machine
    # may take longer than the 5 s default to send seven requests, which would try it again.
    monkeypatch.setattr(ratelimit, "SHARED_RETRY_AFTER_S", 600.0)
    shared = settings.model_copy(update={"rate_limit": "5/minute", "redis_url": private_redis.url})
    assert private_redis.proc is not None
    if fault == "stopped":
        private_redis.stop()
    else:
        os.kill(private_redis.proc.pid, signal.SIGSTOP)
    try:
        codes, fell_back = await hits(shared, checker, 7)
    finally:
        if fault == "frozen":
            os.kill(private_redis.proc.pid, signal.SIGCONT)
    # Never a 500; the limit still holds, counted in this process.
    assert codes == [404] * 5 + [429] * 2
    # One failed attempt, then Redis is left alone for a while: no request waits on it.
    assert fell_back == 1


async def test_the_429_keeps_its_envelope_when_counting_falls_back(
    settings: Settings, checker: ImageChecker, private_redis: RedisServer
) -> None:
    shared = settings.model_copy(update={"rate_limit": "1/minute", "redis_url": private_redis.url})
    private_redis.stop()
    app = create_app(shared, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            await http.get(UNKNOWN)
            over = await http.get(UNKNOWN)
    assert over.status_code == 429
    assert_envelope(over.json(), "RATE_LIMIT_EXCEEDED")
    assert int(over.headers["retry-after"]) >= 1


async def count_before_429(client: httpx.AsyncClient, headers_for: Any, tries: int = 12) -> int:
    """Return how many requests passed before the first 429 (``tries`` if none was refused)."""
    for n in range(tries):
        response = await client.get(UNKNOWN, headers=headers_for(n))
        if response.status_code == 429:
            return n
    return tries


def limited_app(settings: Settings, checker: ImageChecker, **update: Any) -> Any:
    return create_app(
        settings.model_copy(update={"rate_limit": "5/minute", **update}), checker=checker
    )


async def test_a_forged_x_forwarded_for_does_not_raise_the_limit(
    settings: Settings, checker: ImageChecker
) -> None:
    counts = {}
    for label, forged in (("without", False), ("with", True)):
        app = limited_app(settings, checker)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                counts[label] = await count_before_429(
                    http, lambda n, f=forged: {"X-Forwarded-For": f"10.0.0.{n}"} if f else {}
                )
    print(f"requests before 429: {counts}")
    assert counts == {"without": 5, "with": 5}


async def test_behind_a_trusted_proxy_the_right_most_untrusted_hop_is_counted(
    settings: Settings, checker: ImageChecker
) -> None:
    # The test client connects from 127.0.0.1: here, that is the trusted proxy.
    app = limited_app(settings, checker, trusted_proxies=["127.0.0.1/32", "10.9.0.0/16"])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            # A client forging its own left-most hop: the proxy appended the real one.
            spoofed = await count_before_429(
                http, lambda n: {"X-Forwarded-For": f"6.6.6.{n}, 203.0.113.7, 10.9.0.2"}
            )
            # Different real clients behind the proxy are counted apart.
            others = await count_before_429(http, lambda n: {"X-Forwarded-For": f"198.51.100.{n}"})
    assert spoofed == 5
    assert others == 12


async def test_authenticated_callers_are_counted_per_key(
    auth_settings: Settings, checker: ImageChecker
) -> None:
    app = create_app(auth_settings.model_copy(update={"rate_limit": "3/minute"}), checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            keys = []
            async with app.state.sessionmaker() as session:
                for name in ("ana", "bob"):
                    user = await accounts.create_user(
                        session=session, name=name, role=Role.USER, password=None
                    )
                    made = await accounts.create_key(
                        session=session, user_id=user.id, label="", expires_in_days=None
                    )
                    keys.append(made.key)
                await session.commit()
            # Same address, two keys: each has its own budget.
            counts = [
                await count_before_429(http, lambda n, k=key: {"X-API-Key": k}, tries=6)
                for key in keys
            ]
    assert counts == [3, 3]
