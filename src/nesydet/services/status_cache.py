"""Job status cache in Redis, so that polling does not reach the database.

The database stays the truth: writers update the cache only after their commit, non-final
states expire quickly, and readers fall back to the database on a miss or any Redis error.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis

log = logging.getLogger(__name__)

_PREFIX = "nesydet:job-status:"
# A non-final status may lag the database by at most this long if a cache write was lost.
LIVE_TTL_S = 30
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


def _ttl(payload: dict[str, Any], final_ttl: int) -> int:
    return final_ttl if payload.get("status") in FINAL_STATUSES else LIVE_TTL_S


class StatusCache(Protocol):
    async def get(self, job_id: str) -> dict[str, Any] | None:
        """Return the cached status payload, or None."""

    async def put(self, job_id: str, payload: dict[str, Any]) -> None:
        """Cache a status payload that was just committed."""

    async def close(self) -> None:
        """Release connections."""


class NoStatusCache:
    """The embedded set-up has no Redis: every read goes to the database."""

    async def get(self, job_id: str) -> dict[str, Any] | None:
        """Return None: nothing is cached."""
        return None

    async def put(self, job_id: str, payload: dict[str, Any]) -> None:
        """Do nothing."""

    async def close(self) -> None:
        """Do nothing."""


class RedisStatusCache:
    """Status payloads as JSON strings under one key per job."""

    def __init__(self, url: str, final_ttl_s: int) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
        self._final_ttl = final_ttl_s

    async def get(self, job_id: str) -> dict[str, Any] | None:
        """Return the cached payload; None on a miss or when Redis fails."""
        try:
            raw = await self._redis.get(_PREFIX + job_id)
        except redis.RedisError as exc:
            log.warning("status cache read failed", extra={"error": repr(exc)})
            return None
        if raw is None:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value

    async def put(self, job_id: str, payload: dict[str, Any]) -> None:
        """Store the payload; a failure only costs a database read later."""
        try:
            await self._redis.set(
                _PREFIX + job_id, json.dumps(payload), ex=_ttl(payload, self._final_ttl)
            )
        except redis.RedisError as exc:
            log.warning("status cache write failed", extra={"error": repr(exc)})

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


class SyncStatusCache:
    """The workers' blocking twin of :class:`RedisStatusCache` (same keys and expiry)."""

    def __init__(self, url: str | None, final_ttl_s: int) -> None:
        self._redis = (
            redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
            if url
            else None
        )
        self._final_ttl = final_ttl_s

    def put(self, job_id: str, payload: dict[str, Any]) -> None:
        """Store the payload if there is a Redis; failures are logged, not raised."""
        if self._redis is None:
            return
        try:
            self._redis.set(
                _PREFIX + job_id, json.dumps(payload), ex=_ttl(payload, self._final_ttl)
            )
        except redis.RedisError as exc:
            log.warning("status cache write failed", extra={"error": repr(exc)})
            try:
                self._redis.delete(_PREFIX + job_id)
            except redis.RedisError:
                pass


def make_status_cache(url: str | None, final_ttl_s: int) -> StatusCache:
    """Return the Redis cache when a URL is configured, else the no-op one."""
    return RedisStatusCache(url, final_ttl_s) if url else NoStatusCache()
