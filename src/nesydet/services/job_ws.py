"""Watching jobs live: a per-process hub that fans each job's statuses and log lines out to
every watcher of the job (the WebSocket endpoint's source).

One *topic* per watched job and API process, shared by all its watchers:

- with Redis, the topic subscribes once to the job's channel (where every status stored in
  the status cache, and every log line of the worker, is published; one pub/sub connection
  carries the channels of all topics), reads the job's row, then the last log lines kept;
  afterwards it reads the row again only after a silence of ``recheck_s`` (a status written
  while Redis was away is never missed for long);
- without Redis (the embedded set-up) it polls the row every ``poll_s``, as the SSE stream does.

Statuses reach watchers in version order, never twice; a watcher that joins late gets the
current status and the log lines kept so far. The topic ends, and every watch with it, once
the job reaches a final status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.errors import AppError
from nesydet.services import jobs as job_service
from nesydet.services.job_status import is_terminal, job_status_payload
from nesydet.services.status_cache import LOG_KEEP, channel, log_key

log = logging.getLogger(__name__)

POLL_S = 0.5  # the SSE stream's pace
RECHECK_S = 5.0
WATCHER_BACKLOG = 1024  # events a watcher may fall behind by before it is dropped
_CHANNEL_PREFIX = channel("")


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A status payload (the status endpoint's ``data``) or a log line of the job."""

    kind: Literal["status", "log"]
    data: dict[str, Any]


class Watch:
    """One watcher's events, in order; :meth:`next` gives None once the watch has ended."""

    def __init__(self, limit: int) -> None:
        self._items: deque[JobEvent] = deque()
        self._ready = asyncio.Event()
        self._limit = limit
        self.closed = False
        self.overflowed = False  # fell too far behind: dropped
        self.error: AppError | None = None  # the job could no longer be read (deleted)

    def push(self, event: JobEvent) -> None:
        """Queue an event; a watcher that fell ``limit`` events behind is dropped."""
        if self.closed:
            return
        if len(self._items) >= self._limit:
            self.overflowed = True
            self.close()
            return
        self._items.append(event)
        self._ready.set()

    def close(self, error: AppError | None = None) -> None:
        """End the watch once the events queued so far are read."""
        self.error = self.error or error
        self.closed = True
        self._ready.set()

    async def next(self) -> JobEvent | None:
        """Return the next event, waiting for it; None when the watch has ended."""
        while not self._items:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


@dataclass(eq=False)
class _Topic:
    """One watched job in this process: what its watchers have been sent so far."""

    job_id: str
    watchers: set[Watch] = field(default_factory=set)
    inbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    version: int = -1
    status: dict[str, Any] | None = None
    log_seq: int = 0
    logs: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_KEEP))
    done: bool = False
    task: asyncio.Task[None] | None = None

    def send(self, event: JobEvent) -> None:
        for watch in list(self.watchers):
            watch.push(event)
            if watch.overflowed:
                self.watchers.discard(watch)

    def status_event(self, version: int, payload: dict[str, Any]) -> None:
        """Send a status newer than the last one sent; after a final one, end the watches."""
        if version <= self.version or self.done:
            return
        self.version = version
        self.status = payload
        self.send(JobEvent("status", payload))
        if is_terminal(str(payload.get("status"))):
            self.finish()

    def log_event(self, seq: int, line: dict[str, Any]) -> None:
        """Send a log line not sent yet."""
        if seq <= self.log_seq or self.done:
            return
        self.log_seq = seq
        line = {"seq": seq, **line}
        self.logs.append(line)
        self.send(JobEvent("log", line))

    def join(self, watch: Watch) -> None:
        """Add a watcher: it gets the current status and the log lines kept, then what comes."""
        if self.status is not None:
            watch.push(JobEvent("status", self.status))
        for line in self.logs:
            watch.push(JobEvent("log", line))
        if self.done:
            watch.close()
        else:
            self.watchers.add(watch)

    def finish(self, error: AppError | None = None) -> None:
        self.done = True
        for watch in self.watchers:
            watch.close(error)
        self.watchers.clear()


def _parse(raw: bytes) -> tuple[str, int, dict[str, Any]] | None:
    """Return (kind, version or sequence, payload) of a channel message, or None."""
    try:
        if raw.startswith(b"s:"):
            version, _owner, text = raw[2:].split(b":", 2)
            return "status", int(version), json.loads(text)
        if raw.startswith(b"l:"):
            seq, text = raw[2:].split(b":", 1)
            return "log", int(seq), json.loads(text)
    except ValueError:
        pass
    log.warning("unreadable job channel message", extra={"message": raw[:100].decode("latin-1")})
    return None


class JobHub:
    """The watched jobs of one API process; see the module's docstring."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis_url: str | None,
        poll_s: float = POLL_S,
        recheck_s: float = RECHECK_S,
        watcher_backlog: int = WATCHER_BACKLOG,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.redis_url = redis_url
        self.poll_s = poll_s
        self.recheck_s = recheck_s
        self.watcher_backlog = watcher_backlog
        # SUBSCRIBE commands sent: one per topic, however many watch it (tests, metrics).
        self.subscriptions = 0
        self._topics: dict[str, _Topic] = {}
        self._redis: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._channels: set[str] = set()
        # One (un)subscription at a time: two at once on a PubSub not yet connected would each
        # open a connection, and the channel of the first would never be read.
        self._commands = asyncio.Lock()

    def watching(self, job_id: str) -> int:
        """Return how many watchers the job has in this process."""
        topic = self._topics.get(job_id)
        return len(topic.watchers) if topic is not None else 0

    @contextlib.asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[Watch]:
        """Yield a watch of the job (whose existence and owner the caller has checked)."""
        topic = self._topics.get(job_id)
        if topic is None or topic.done:
            topic = _Topic(job_id)
            self._topics[job_id] = topic
            topic.task = asyncio.create_task(self._run(topic), name=f"watch {job_id}")
        watch = Watch(self.watcher_backlog)
        topic.join(watch)
        try:
            yield watch
        finally:
            topic.watchers.discard(watch)
            if not topic.watchers and not topic.done and topic.task is not None:
                topic.task.cancel()

    async def _run(self, topic: _Topic) -> None:
        subscribed = False
        try:
            subscribed = await self._subscribe(topic)
            await self._snapshot(topic)
            if subscribed:
                await self._backlog(topic)
            while not topic.done:
                wait = self.recheck_s if subscribed else self.poll_s
                try:
                    raw = await asyncio.wait_for(topic.inbox.get(), wait)
                except TimeoutError:
                    await self._snapshot(topic)
                    continue
                parsed = _parse(raw)
                if parsed is None:
                    continue
                kind, number, data = parsed
                if kind == "status":
                    topic.status_event(number, data)
                else:
                    topic.log_event(number, data)
        except AppError as exc:  # the job was deleted while watched
            topic.finish(exc)
        except Exception:
            log.exception("job watch failed", extra={"job_id": topic.job_id})
            topic.finish()
        finally:
            topic.finish()
            if self._topics.get(topic.job_id) is topic:
                del self._topics[topic.job_id]
            if subscribed:
                await self._unsubscribe(topic.job_id)

    async def _snapshot(self, topic: _Topic) -> None:
        """Send the job's row if it is newer than what was sent (the database is the truth)."""
        async with self.sessionmaker() as session:
            job = await job_service.get_job(session=session, job_id=topic.job_id, owner=None)
            version, payload = job.version, job_status_payload(job)
        topic.status_event(version, payload)

    async def _backlog(self, topic: _Topic) -> None:
        """Send the log lines the job has written so far."""
        if self._redis is None:
            return
        try:
            lines = await self._redis.lrange(log_key(topic.job_id), 0, -1)
        except redis.RedisError as exc:
            log.warning("job log read failed", extra={"error": repr(exc)})
            return
        for raw in lines:
            parsed = _parse(b"l:" + (raw if isinstance(raw, bytes) else raw.encode()))
            if parsed is not None:
                topic.log_event(parsed[1], parsed[2])

    async def _subscribe(self, topic: _Topic) -> bool:
        """Subscribe to the job's channel; False without Redis or when it cannot be reached."""
        if self.redis_url is None:
            return False
        name = channel(topic.job_id)
        async with self._commands:
            try:
                if self._pubsub is None:
                    self._redis = aioredis.Redis.from_url(
                        self.redis_url, socket_connect_timeout=1.0, health_check_interval=30
                    )
                    self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                self._channels.add(name)
                await self._pubsub.subscribe(name)
            except redis.RedisError as exc:
                self._channels.discard(name)
                log.warning("job channel subscription failed", extra={"error": repr(exc)})
                return False
            self.subscriptions += 1
            if self._reader is None:
                self._reader = asyncio.create_task(self._read(self._pubsub), name="job channels")
            return True

    async def _unsubscribe(self, job_id: str) -> None:
        name = channel(job_id)
        async with self._commands:
            self._channels.discard(name)
            if self._pubsub is None:
                return
            try:
                await self._pubsub.unsubscribe(name)
            except redis.RedisError as exc:
                log.warning("job channel unsubscription failed", extra={"error": repr(exc)})

    async def _read(self, pubsub: PubSub) -> None:
        """Hand each channel message to its topic, while any topic is subscribed."""
        try:
            while self._channels:
                try:
                    message = await pubsub.get_message(timeout=1.0)
                except redis.RedisError as exc:  # reconnects (and resubscribes) on next read
                    log.warning("job channel read failed", extra={"error": repr(exc)})
                    await asyncio.sleep(1.0)
                    continue
                if message is None or message.get("type") != "message":
                    continue
                job_id = bytes(message["channel"]).decode()[len(_CHANNEL_PREFIX) :]
                topic = self._topics.get(job_id)
                if topic is not None:
                    topic.inbox.put_nowait(bytes(message["data"]))
        finally:
            # Nothing is watched: the connection goes, the next watch opens a new one.
            self._reader = None
            self._pubsub = None
            client, self._redis = self._redis, None
            with contextlib.suppress(redis.RedisError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                if client is not None:
                    await client.aclose()

    async def close(self) -> None:
        """End every watch and release the connection."""
        for topic in list(self._topics.values()):
            if topic.task is not None:
                topic.task.cancel()
        tasks = [t.task for t in self._topics.values() if t.task is not None]
        if self._reader is not None:
            tasks.append(self._reader)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
