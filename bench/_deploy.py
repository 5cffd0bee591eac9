"""The service as the benchmarks run it: a real API process and real worker processes.

Production set-up: a fresh PostgreSQL database of the bench's own on 127.0.0.1:5432, a private
``redis-server`` as broker and status cache (the Redis on 6379, which the tests share, when
``redis-server`` is not installed), local storage. Embedded set-up: SQLite and the filesystem
broker. Either way every process has its state under one temporary folder.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tests.integration.prom import (
    ApiServer,
    Process,
    nesydet_command,
    spawn,
    start_api_server,
    wait_until,
)
from tests.redis_server import RedisServer

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
# Databases on the shared Redis, used only when no private one can be started: away from the
# 0 and 1 the tests use, so that no other worker takes these jobs.
SHARED_REDIS = "redis://127.0.0.1:6379/{db}"
READY_LINE = "worker process ready"


async def fresh_database(name: str) -> str:
    """Returns the SQLAlchemy URL of database ``name``, dropped and created anew."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG_URL.format(name=name)


@dataclass
class Service:
    """A running API server, the Redis it uses (if private), and what the set-up is."""

    api: ApiServer
    setup: str
    database_url: str
    redis: RedisServer | None = None
    workers: list[Process] = field(default_factory=list)

    def start_workers(
        self,
        count: int,
        *,
        tag: str,
        threads: int | None = None,
        nice: int | None = None,
        device: str | None = None,
    ) -> list[Process]:
        """Returns ``count`` new ``nesydet worker`` processes (one pool process each), ready.

        ``threads`` sets ``NESYDET_CPU_THREADS`` (torch threads per worker), ``nice``
        ``NESYDET_WORKER_NICE`` and ``device`` ``NESYDET_DEVICE``; None leaves the project's
        defaults (the machine's cores shared out among one worker's processes; niceness 10;
        CUDA when torch sees it, else the CPU).
        """
        env = dict(self.api.env)
        env["NESYDET_WORKER_METRICS_PORT"] = "0"  # two workers on one host: no port clash
        settings = {"NESYDET_CPU_THREADS": threads, "NESYDET_WORKER_NICE": nice,
                    "NESYDET_DEVICE": device}  # fmt: skip
        env.update({name: str(value) for name, value in settings.items() if value is not None})
        started = [
            spawn(f"worker-{tag}-{i}", nesydet_command("worker", "--concurrency", "1"),
                  env=env, cwd=self.api.root)
            for i in range(count)
        ]  # fmt: skip
        self.workers.extend(started)
        for worker in started:
            wait_until(
                partial(_is_ready, worker),
                timeout=180,
                what=f"{worker.name} to load the model and Prolog",
                process=worker,
            )
        return started

    def stop_workers(self) -> None:
        """Stops every worker started so far."""
        while self.workers:
            self.workers.pop().stop()

    def stop(self) -> None:
        """Stops the workers, the API server, then a private Redis."""
        self.stop_workers()
        self.api.stop()
        if self.redis is not None:
            self.redis.stop()


def _is_ready(worker: Process) -> bool:
    return READY_LINE in worker.log_text()


def _redis(root: Path) -> tuple[str, str, RedisServer | None]:
    """Returns the broker URL, the cache URL and the private server to stop (if any)."""
    if shutil.which("redis-server") is None:
        return SHARED_REDIS.format(db=14), SHARED_REDIS.format(db=15), None
    redis = RedisServer(root)
    redis.start()
    return redis.url, redis.url.replace("/0", "/1"), redis


def start_service(root: Path, *, database: str, embedded: bool, **env: str) -> Service:
    """Returns the API server started under ``root`` on database ``database`` (production
    set-up) or on SQLite and the filesystem broker (``embedded``); ``env`` adds settings."""
    if embedded:
        api = start_api_server(root / "service", timeout=60, **env)
        return Service(api, "embedded (SQLite, filesystem broker)", api.env["NESYDET_DATABASE_URL"])
    url = asyncio.run(fresh_database(database))
    broker, cache, redis = _redis(root)
    try:
        servers = {"NESYDET_DATABASE_URL": url, "NESYDET_BROKER_URL": broker}
        api = start_api_server(
            root / "service", timeout=60, NESYDET_REDIS_URL=cache, **servers, **env
        )
    except BaseException:
        if redis is not None:
            redis.stop()
        raise
    where = "a private redis-server" if redis else "Redis on 127.0.0.1:6379 (db 14, 15)"
    setup = f"production (PostgreSQL, {where} as broker and status cache, local storage)"
    return Service(api, setup, url, redis)
