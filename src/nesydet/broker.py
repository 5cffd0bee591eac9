"""The broker: queue and task names, and the Celery app configured from the settings.

Neutral ground: the API and the services send tasks by name through it, the worker
(``nesydet.tasks``) registers them under the same names; it imports no task code.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from nesydet.config import Settings

QUEUE = "inference"
INFERENCE_TASK = "nesydet.run_inference"
# Webhook deliveries: their own queue, consumed by `nesydet webhook-worker` (never by the
# inference workers, whose processes are busy with the model for minutes at a time).
WEBHOOK_QUEUE = "webhooks"
WEBHOOK_TASK = "nesydet.deliver_webhook"
# ONNX exports of registered .pt models: their own queue, so that a deployment can give them
# a worker of their own (`nesydet worker --queues exports`); a plain worker takes both.
EXPORT_QUEUE = "exports"
EXPORT_TASK = "nesydet.export_model"


def broker_options(settings: Settings) -> dict[str, Any]:
    """Return the transport options for the configured broker."""
    url = settings.broker_url
    if url.startswith("filesystem://"):
        folder = settings.broker_dir
        for sub in ("queue", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    if url.startswith(("redis://", "rediss://", "sentinel://")):
        return {
            # A message not acknowledged within this time is delivered again: it must exceed
            # the hard time limit of the longest job.
            "visibility_timeout": settings.visibility_timeout_s,
            "socket_connect_timeout": settings.broker_publish_timeout_s,
            # Above the consumer's blocking poll (1 s): a frozen broker is noticed in seconds.
            "socket_timeout": 10,
            "retry_on_timeout": True,
        }
    return {}


def make_celery(settings: Settings) -> Celery:
    """Return a Celery app on the configured broker, with no result backend."""
    app = Celery("nesydet", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_routes={
            INFERENCE_TASK: {"queue": QUEUE},
            WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
            EXPORT_TASK: {"queue": EXPORT_QUEUE},
        },
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # No lost work: a task is acknowledged only once it has finished, and a task whose
        # worker process died goes back to the queue.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=None,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        broker_transport_options=broker_options(settings),
        # the filesystem transport, with atomic writes (see nesydet.fs_transport)
        broker_transport=(
            "nesydet.fs_transport:Transport"
            if settings.broker_url.startswith("filesystem://")
            else None
        ),
        broker_connection_timeout=settings.broker_publish_timeout_s,
        broker_connection_retry_on_startup=True,
        broker_pool_limit=4,
        task_time_limit=settings.max_job_time_limit_s,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # A new pool process loads the model and Prolog (6-10 s measured) before it reports up;
        # Celery's default (4 s) killed every replacement of a process that died.
        worker_proc_alive_timeout=settings.worker_start_timeout_s,
    )
    return app
