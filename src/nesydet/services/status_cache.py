"""Job status cache in Redis, so that polling does not reach the database.

The database stays the truth: writers update the cache only after their commit, non-final
states expire quickly, and readers fall back to the database on a miss or any Redis error.

Writers race: a worker's progress write and the API's cancel can commit in one order and reach
Redis in the other. Every entry therefore carries the job row's ``version`` (bumped by each
write that changes the status), and a script on the server stores an entry only when it is
newer than the one there, so the cached status never goes backwards. Each entry also names
the job's owner, so that a poll is checked against its caller without the database.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis

from nesydet.domain import TERMINAL_STATUSES

log = logging.getLogger(__name__)

_PREFIX = "nesydet:job-status:"
# A non-final status may lag the database by at most this long if a cache write was lost.
LIVE_TTL_S = 30
READ_RETRY_AFTER_S = 5.0

# KEYS[1] the job's key; ARGV: version, entry text, expiry in seconds. Entries are stored as
# "<version>:<owner>:<json>" so the script compares versions without decoding JSON.
_PUT_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local seen = tonumber(string.match(current, '^(%d+):'))
  if seen and seen >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""


@dataclass(frozen=True, slots=True)
class CachedStatus:
    """A cached status: whose job it is (None: no owner), and the payload's JSON text."""

    owner: str | None
    payload_json: bytes

    def payload(self) -> dict[str, Any]:
        """Return the payload decoded."""
        value: dict[str, Any] = json.loads(self.payload_json)
        return value


def _ttl(payload: dict[str, Any], final_ttl: int) -> int:
    return final_ttl if payload.get("status") in TERMINAL_STATUSES else LIVE_TTL_S


def _entry(raw: bytes | str) -> CachedStatus | None:
    """Return the parts of a stored entry ("<version>:<owner>:<json>")."""
    if isinstance(raw, str):
        raw = raw.encode()
    parts = raw.split(b":", 2)
    if len(parts) != 3:
        return None
    return CachedStatus(owner=parts[1].decode() or None, payload_json=parts[2])


class StatusCache(Protocol):
    async def get(self, job_id: str) -> CachedStatus | None:
        """Return the cached status, or None."""

    async def put(
        self, job_id: str, version: int, owner: str | None, payload: dict[str, Any]
    ) -> None:
        """Cache a status payload that was just committed, unless a newer one is cached."""

    async def close(self) -> None:
        """Release connections."""


class NoStatusCache:
    """The embedded set-up has no Redis: every read goes to the database."""

    async def get(self, job_id: str) -> CachedStatus | None:
        """Return None: nothing is cached."""
        return None

    async def put(
        self, job_id: str, version: int, owner: str | None, payload: dict[str, Any]
    ) -> None:
        """Do nothing."""

    async def close(self) -> None:
        """Do nothing."""


class RedisStatusCache:
    """Status payloads under one key per job, each with the version of the row it shows."""

    def __init__(self, url: str, final_ttl_s: int) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
        self._put = self._redis.register_script(_PUT_IF_NEWER)
        self._final_ttl = final_ttl_s
        self._reads_off_until = 0.0

    async def get(self, job_id: str) -> CachedStatus | None:
        """Return the cached status; None on a miss or when Redis fails.

        After a failed read, reads skip Redis for a few seconds and go to the database, so a
        frozen Redis costs one timeout, not one per poll.
        """
        if time.monotonic() < self._reads_off_until:
            return None
        try:
            raw = await self._redis.get(_PREFIX + job_id)
        except redis.RedisError as exc:
            self._reads_off_until = time.monotonic() + READ_RETRY_AFTER_S
            log.warning("status cache read failed", extra={"error": repr(exc)})
            return None
        return None if raw is None else _entry(raw)

    async def put(
        self, job_id: str, version: int, owner: str | None, payload: dict[str, Any]
    ) -> None:
        """Store the payload if it is newer than the cached one; a failure costs a read later.

        When the write fails the entry is dropped if possible, so that readers go to the
        database instead of trusting an entry that may now be behind it.
        """
        key = _PREFIX + job_id
        text = f"{owner or ''}:{json.dumps(payload)}"
        try:
            await self._put(keys=[key], args=[version, text, _ttl(payload, self._final_ttl)])
        except redis.RedisError as exc:
            log.warning("status cache write failed", extra={"error": repr(exc)})
            try:
                await self._redis.delete(key)
            except redis.RedisError:
                pass

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def make_status_cache(url: str | None, final_ttl_s: int) -> StatusCache:
    """Return the Redis cache when a URL is configured, else the no-op one."""
    return RedisStatusCache(url, final_ttl_s) if url else NoStatusCache()
