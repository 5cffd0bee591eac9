"""Per worker process state: the pipeline (model and Prolog), the I/O loop with the database,
cache and heartbeat, storage, and the job runner.

Built in ``worker_process_init``, after the fork, so every child has its own model, Prolog
engine and connections, and the parent never starts Prolog.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import socket
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from celery import Celery
from sqlalchemy.ext.asyncio import AsyncEngine

from nesydet.config import Settings
from nesydet.db.session import create_engine, create_sessionmaker
from nesydet.pipeline import Pipeline
from nesydet.services.dispatch import Dispatcher
from nesydet.services.processing.heartbeat import Heartbeat
from nesydet.services.processing.io_loop import IoLoop
from nesydet.services.processing.runner import JobRunner
from nesydet.services.processing.saver import BackgroundSaver
from nesydet.services.processing.store import JobStore
from nesydet.services.registry.files import kind_dir
from nesydet.services.status_cache import StatusCache, make_status_cache
from nesydet.services.webhooks.outbox import WebhookOutbox
from nesydet.storage import create_storage

log = logging.getLogger(__name__)


@dataclass
class WorkerRuntime:
    runner: JobRunner
    heartbeat: Heartbeat
    beating: Future[None]
    cache: StatusCache
    engine: AsyncEngine
    io: IoLoop

    def close(self) -> None:
        """Stop the heartbeat, finish the pending save and release connections."""
        self.heartbeat.stop()
        try:
            self.beating.result(timeout=10)
        except Exception as exc:  # shutting down: report and go on
            log.warning("heartbeat did not stop cleanly", extra={"error": repr(exc)})
        self.runner.saver.close()
        self.io.run(self.cache.close())
        self.io.run(self.engine.dispose())
        self.io.close()


_runtime: WorkerRuntime | None = None


def detector_factory(settings: Settings) -> dict[str, Any]:
    """Return the Pipeline keyword that plugs in ``NESYDET_DETECTOR_FACTORY``, if set."""
    if not settings.detector_factory:
        return {}
    module, _, name = settings.detector_factory.partition(":")
    return {"detector_factory": getattr(importlib.import_module(module), name)}


def start_runtime(settings: Settings, celery: Celery, *, concurrency: int) -> WorkerRuntime:
    """Build this process's runtime: load the model, start Prolog, connect, start beating."""
    global _runtime
    if settings.worker_nice:
        os.nice(settings.worker_nice)  # inference is batch work; requests come first
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    pipeline = Pipeline(
        settings.models_dir,
        settings.rules_dir,
        default_model=settings.default_model,
        device=settings.device,
        backend=settings.inference_backend,
        onnx_cache_dir=settings.onnx_cache_dir,
        cpu_threads=settings.worker_cpu_threads(concurrency),
        extra_models_dir=kind_dir(settings.asset_cache_root, "model"),
        extra_rules_dir=kind_dir(settings.asset_cache_root, "rules"),
        model_cache_mb=settings.model_cache_mb or None,
        **detector_factory(settings),
    )
    try:
        pipeline.warmup()
    except Exception as exc:  # a bad default model fails its jobs, it must not kill the worker
        log.error("pipeline warm-up failed", extra={"error": repr(exc)})
    io = IoLoop()
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    cache = make_status_cache(settings.redis_url, settings.status_cache_ttl_s)
    heartbeat = Heartbeat(
        sessionmaker=sessionmaker,
        worker_id=worker_id,
        interval_s=settings.heartbeat_interval_s,
        loop=io.loop,
    )
    runner = JobRunner(
        settings=settings,
        pipeline=pipeline,
        storage=create_storage(settings),
        store=JobStore(
            sessionmaker=sessionmaker,
            cache=cache,
            worker_id=worker_id,
            heartbeat_stale_s=settings.heartbeat_stale_s,
            default_seconds_per_image=settings.default_seconds_per_image,
            webhooks=WebhookOutbox(celery, settings),
        ),
        io=io,
        dispatcher=Dispatcher(celery, settings),
        saver=BackgroundSaver(nice=settings.saver_nice),
        on_claim=heartbeat.hold,
    )
    beating = io.start(heartbeat.run())
    _runtime = WorkerRuntime(
        runner=runner, heartbeat=heartbeat, beating=beating, cache=cache, engine=engine, io=io
    )
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
