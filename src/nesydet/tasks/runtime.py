"""Per worker process state: the pipeline (model and Prolog), database, storage and heartbeat.

Built in ``worker_process_init``, after the fork, so every child has its own model, Prolog
engine and connections, and the parent never starts Prolog.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

from celery import Celery

from nesydet.config import Settings
from nesydet.db.repositories import jobs as job_repo
from nesydet.db.session import create_engine, create_sessionmaker
from nesydet.pipeline import Pipeline
from nesydet.services.dispatch import Dispatcher
from nesydet.services.processing import HeldJob, JobRunner
from nesydet.services.saver import BackgroundSaver
from nesydet.services.status_cache import SyncStatusCache
from nesydet.storage import create_storage

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Tells the database every few seconds that this process lives, and which job it holds.

    It has its own event loop and connections: the main thread may sit in the model or in
    Prolog for a long time, and the heartbeat must not wait for it.
    """

    def __init__(self, settings: Settings, worker_id: str) -> None:
        super().__init__(name="nesydet-heartbeat", daemon=True)
        self.settings = settings
        self.worker_id = worker_id
        self.held: HeldJob | None = None
        self._stop_event = threading.Event()
        self._wake = threading.Event()

    def hold(self, held: HeldJob | None) -> None:
        """Record the job this process now holds (None when idle) and beat at once."""
        self.held = held
        self._wake.set()

    def run(self) -> None:
        loop = asyncio.new_event_loop()
        engine = create_engine(self.settings.database_url, null_pool=True)
        sessionmaker = create_sessionmaker(engine)
        host = socket.gethostname()
        try:
            while not self._stop_event.is_set():
                held = self.held
                try:
                    loop.run_until_complete(self._beat(sessionmaker, host, held))
                except Exception as exc:  # a missed beat is logged; the next one may work
                    log.warning("heartbeat failed", extra={"error": repr(exc)})
                self._wake.wait(self.settings.heartbeat_interval_s)
                self._wake.clear()
            loop.run_until_complete(self._forget(sessionmaker))
        finally:
            loop.run_until_complete(engine.dispose())
            loop.close()

    async def _beat(self, sessionmaker: Any, host: str, held: HeldJob | None) -> None:
        async with sessionmaker() as session:
            await job_repo.worker_heartbeat(
                session=session,
                worker_id=self.worker_id,
                hostname=host,
                pid=os.getpid(),
                job_id=held.job.id if held else None,
            )
            if held is not None:
                await job_repo.heartbeat(session=session, job_id=held.job.id, token=held.token)
            await session.commit()

    async def _forget(self, sessionmaker: Any) -> None:
        async with sessionmaker() as session:
            await job_repo.remove_worker(session=session, worker_id=self.worker_id)
            await session.commit()

    def stop(self) -> None:
        """End the thread and remove this worker's row."""
        self._stop_event.set()
        self._wake.set()
        self.join(timeout=10)


@dataclass
class WorkerRuntime:
    runner: JobRunner
    heartbeat: Heartbeat
    loop: asyncio.AbstractEventLoop

    def close(self) -> None:
        """Stop the heartbeat and release connections."""
        self.heartbeat.stop()
        self.runner.saver.close()
        engine = self.runner.sessionmaker.kw["bind"]
        self.loop.run_until_complete(engine.dispose())
        self.loop.close()


_runtime: WorkerRuntime | None = None


def start_runtime(settings: Settings, celery: Celery, *, concurrency: int) -> WorkerRuntime:
    """Build this process's runtime: load the model, start Prolog, connect, start beating."""
    global _runtime
    if settings.worker_nice:
        os.nice(settings.worker_nice)  # inference is batch work; requests come first
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    engine = create_engine(settings.database_url)
    pipeline = Pipeline(
        settings.models_dir,
        settings.rules_dir,
        default_model=settings.default_model,
        device=settings.device,
        cpu_threads=settings.worker_cpu_threads(concurrency),
    )
    try:
        pipeline.warmup()
    except Exception as exc:  # a bad default model fails its jobs, it must not kill the worker
        log.error("pipeline warm-up failed", extra={"error": repr(exc)})
    heartbeat = Heartbeat(settings, worker_id)
    saver = BackgroundSaver(create_engine(settings.database_url), nice=settings.saver_nice)
    runner = JobRunner(
        settings=settings,
        pipeline=pipeline,
        storage=create_storage(settings),
        sessionmaker=create_sessionmaker(engine),
        loop=loop,
        cache=SyncStatusCache(settings.redis_url, settings.status_cache_ttl_s),
        dispatcher=Dispatcher(celery, settings),
        saver=saver,
        worker_id=worker_id,
        on_hold=heartbeat.hold,
    )
    heartbeat.start()
    _runtime = WorkerRuntime(runner=runner, heartbeat=heartbeat, loop=loop)
    # Everything loaded so far (torch, the model, Celery, SQLAlchemy) lives as long as the
    # process: keep it out of the collector's full passes (one took 0.23 s mid-job here).
    gc.freeze()
    log.info("worker process ready", extra={"worker_id": worker_id})
    return _runtime


def runtime() -> WorkerRuntime:
    """Return this process's runtime; it exists once ``worker_process_init`` has run."""
    if _runtime is None:
        raise RuntimeError("the worker runtime is not started in this process")
    return _runtime


def stop_runtime() -> None:
    """Tear down this process's runtime, if any."""
    global _runtime
    if _runtime is not None:
        _runtime.close()
        _runtime = None
