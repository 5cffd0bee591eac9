"""``nesydet worker``: a Celery worker on the ``inference`` queue."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init, worker_process_shutdown

from nesydet.config import Settings
from nesydet.observability import metrics
from nesydet.tasks import runtime
from nesydet.tasks.celery_app import INFERENCE_TASK, QUEUE, make_celery

log = logging.getLogger(__name__)


def register_tasks(app: Celery) -> None:
    """Define the inference task on ``app``: a job id in, the runner does the rest."""

    @app.task(name=INFERENCE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_inference(self: Task, job_id: str) -> None:  # type: ignore[type-arg]
        runtime.runtime().runner.run(job_id)


def create_worker_app(settings: Settings, *, concurrency: int) -> Celery:
    """Return the Celery app with the task registered and process hooks connected."""
    app = make_celery(settings)
    register_tasks(app)

    def init_process(**_: Any) -> None:
        runtime.start_runtime(settings, app, concurrency=concurrency)

    def shutdown_process(**_: Any) -> None:
        try:
            runtime.stop_runtime()
        finally:
            metrics.mark_process_dead(os.getpid())

    # weak=False: the closures would otherwise be collected right away.
    worker_process_init.connect(init_process, weak=False)
    worker_process_shutdown.connect(shutdown_process, weak=False)
    return app


def run_worker(settings: Settings, *, concurrency: int | None, loglevel: str | None) -> int:
    """Run a worker until it is stopped; returns its exit status."""
    processes = concurrency or settings.worker_concurrency
    app = create_worker_app(settings, concurrency=processes)
    argv = [
        "worker",
        f"--queues={QUEUE}",
        f"--concurrency={processes}",
        "--pool=prefork",
        f"--loglevel={(loglevel or settings.log_level).upper()}",
        "--without-gossip",
        "--without-mingle",
        "--hostname=nesydet@%h",
    ]
    app.worker_main(argv)
    return 0
