"""``nesydet worker``: a Celery worker on the ``inference`` and ``exports`` queues."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init, worker_process_shutdown

from nesydet.broker import EXPORT_QUEUE, EXPORT_TASK, INFERENCE_TASK, QUEUE, make_celery
from nesydet.config import Settings
from nesydet.observability import metrics, worker_metrics
from nesydet.pipeline import RulesError
from nesydet.pipeline.reasoning.engine import check_version, installed_version
from nesydet.services.registry.export import export_version
from nesydet.tasks import runtime
from nesydet.tasks.metrics_server import close_inherited_socket, start_metrics_server
from nesydet.tasks.supervision import (
    EXIT_CANNOT_START,
    PoolWatch,
    mark_ready,
    mark_starting,
    markers_dir,
)
from nesydet.tasks.tracing import connect_tracing, task_trace

log = logging.getLogger(__name__)


def register_tasks(app: Celery) -> None:
    """Define the inference task on ``app``: a job id in, the runner does the rest."""

    @app.task(name=INFERENCE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_inference(self: Task, job_id: str) -> None:  # type: ignore[type-arg]
        with task_trace(self):
            runtime.runtime().runner.run(job_id)

    @app.task(name=EXPORT_TASK, acks_late=True, reject_on_worker_lost=True)
    def export_model(version_id: int) -> None:
        runner = runtime.runtime().runner
        export_version(
            version_id=version_id,
            sessionmaker=runner.store.sessionmaker,
            io=runner.io,
            storage=runner.storage,
            files=runner.assets,
        )


def create_worker_app(settings: Settings, *, concurrency: int, markers: Path) -> Celery:
    """Return the Celery app with the task registered and process hooks connected.

    Pool processes leave their start-up markers in ``markers`` for the main process's watch.
    """
    app = make_celery(settings)
    register_tasks(app)
    connect_tracing(settings)  # before the runtime's hooks: pool processes trace from the start

    def init_process(**_: Any) -> None:
        close_inherited_socket()
        mark_starting(markers)
        try:
            runtime.start_runtime(settings, app, concurrency=concurrency)
        except Exception:  # it cannot run jobs: die, so the main process counts a failed start
            log.exception("a pool process could not start")
            os._exit(EXIT_CANNOT_START)
        worker_metrics.WORKER_PROCESSES.set(1)
        mark_ready(markers)

    def shutdown_process(**_: Any) -> None:
        try:
            runtime.stop_runtime()
        finally:
            metrics.mark_process_dead(os.getpid())

    # weak=False: the closures would otherwise be collected right away.
    worker_process_init.connect(init_process, weak=False)
    worker_process_shutdown.connect(shutdown_process, weak=False)
    return app


def run_worker(
    settings: Settings,
    *,
    concurrency: int | None,
    loglevel: str | None,
    queues: str = f"{QUEUE},{EXPORT_QUEUE}",
) -> int:
    """Run a worker until it is stopped; returns its exit status (2: it cannot run jobs)."""
    try:
        # Checked before the pool forks, without loading Prolog here (children load it).
        check_version(installed_version())
    except RulesError as exc:
        log.critical("the worker cannot start", extra={"error_code": exc.code, "error": str(exc)})
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 2
    processes = concurrency or settings.worker_concurrency
    markers = markers_dir(settings.var_dir, os.getpid())
    app = create_worker_app(settings, concurrency=processes, markers=markers)
    watch = PoolWatch(
        markers,
        max_failed_starts=settings.worker_max_failed_starts,
        on_dead=metrics.mark_process_dead,
    )
    argv = [
        "worker",
        f"--queues={queues}",
        f"--concurrency={processes}",
        "--pool=prefork",
        f"--loglevel={(loglevel or settings.log_level).upper()}",
        "--without-gossip",
        "--without-mingle",
        "--hostname=nesydet@%h",
    ]
    served = start_metrics_server(settings)
    watch.start()
    try:
        app.worker_main(argv)
    finally:
        watch.stop()
        if served is not None:
            served.stop()
    return 0
