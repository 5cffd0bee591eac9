"""Job status cache in Redis, so that polling does not reach the database.

The database stays the truth: writers update the cache only after their commit, non-final
states expire quickly, and readers fall back to the database on a miss or any Redis error.

Writers race: a worker's progress write and the API's cancel can commit in one order and reach
Redis in the other. Every entry therefore carries the job row's ``version`` (bumped by each
write that changes the status), and a script on the server stores an entry only when it is
newer than the one there, so the cached status never goes backwards. Each entry also names
the job's owner, so that a poll is checked against its caller without the database.

Every entry stored is also published, by the same script, on the job's channel
(:func:`channel`), with the job's log lines (:meth:`RedisStatusCache.log`): a watcher that
subscribes there sees each status in version order without polling.
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
_CHANNEL = "nesydet:job-events:"
_LOG = "nesydet:job-log:"
# A job's last log lines, kept for watchers that come late; kept a day after the last one.
LOG_KEEP = 200
LOG_TTL_S = 86400
LOG_RETRY_AFTER_S = 5.0
# A non-final status may lag the database by at most this long if a cache write was lost.
LIVE_TTL_S = 30
READ_RETRY_AFTER_S = 5.0

# KEYS[1] the job's key, KEYS[2] its channel; ARGV: version, entry text, expiry in seconds.
# Entries are stored as "<version>:<owner>:<json>" so the script compares versions without
# decoding JSON; what is stored is published as "s:<version>:<owner>:<json>".
_PUT_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local seen = tonumber(string.match(current, '^(%d+):'))
  if seen and seen >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'EX', tonumber(ARGV[3]))
redis.call('PUBLISH', KEYS[2], 's:' .. ARGV[1] .. ':' .. ARGV[2])
return 1
"""
# KEYS[1] the job's log list, KEYS[2] its sequence counter, KEYS[3] its channel; ARGV: the
# line's JSON, how many lines to keep, expiry. Lines are kept as "<seq>:<json>" and
# published as "l:<seq>:<json>"; the sequence orders them for a watcher reading both.
_APPEND_LOG = """
local seq = redis.call('INCR', KEYS[2])
local line = seq .. ':' .. ARGV[1]
redis.call('RPUSH', KEYS[1], line)
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
redis.call('PUBLISH', KEYS[3], 'l:' .. line)
return seq
"""


def channel(job_id: str) -> str:
    """Return the pub/sub channel of a job's statuses and log lines."""
    return _CHANNEL + job_id


def log_key(job_id: str) -> str:
    """Return the key of the list of a job's last log lines ("<seq>:<json>")."""
    return _LOG + job_id


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

    async def log(self, job_id: str, line: dict[str, Any]) -> None:
        """Publish a log line of the job (stage change, retry, warning); never raises."""

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

    async def log(self, job_id: str, line: dict[str, Any]) -> None:
        """Do nothing: without Redis a job has no log line stream."""

    async def close(self) -> None:
        """Do nothing."""


class RedisStatusCache:
    """Status payloads under one key per job, each with the version of the row it shows."""

    def __init__(self, url: str, final_ttl_s: int) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
        self._put = self._redis.register_script(_PUT_IF_NEWER)
        self._append_log = self._redis.register_script(_APPEND_LOG)
        self._final_ttl = final_ttl_s
        self._reads_off_until = 0.0
        self._logs_off_until = 0.0

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
            await self._put(
                keys=[key, channel(job_id)], args=[version, text, _ttl(payload, self._final_ttl)]
            )
        except redis.RedisError as exc:
            log.warning("status cache write failed", extra={"error": repr(exc)})
            try:
                await self._redis.delete(key)
            except redis.RedisError:
                pass

    async def log(self, job_id: str, line: dict[str, Any]) -> None:
        """Keep the line in the job's log and publish it on the job's channel.

        Log lines are a courtesy to watchers: a failure is logged and, for a few seconds,
        later lines are skipped, so that a frozen Redis never slows a job down.
        """
        if time.monotonic() < self._logs_off_until:
            return
        keys = [log_key(job_id), log_key(job_id) + ":seq", channel(job_id)]
        try:
            await self._append_log(keys=keys, args=[json.dumps(line), LOG_KEEP, LOG_TTL_S])
        except redis.RedisError as exc:
            self._logs_off_until = time.monotonic() + LOG_RETRY_AFTER_S
            log.warning("job log write failed", extra={"error": repr(exc)})

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def make_status_cache(url: str | None, final_ttl_s: int) -> StatusCache:
    """Return the Redis cache when a URL is configured, else the no-op one."""
    return RedisStatusCache(url, final_ttl_s) if url else NoStatusCache()
