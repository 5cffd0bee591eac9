"""Tracing in the worker: a tracer provider per pool process, and each task run in the trace
its sender started.

The provider (and its exporting thread) is made in ``worker_process_init``, in each child
after the prefork pool forked it, never in the main process: a thread does not survive a
fork, and the spans must carry the child's own ``process.pid``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from celery import Task
from celery.signals import worker_process_init, worker_process_shutdown

from nesydet.config import Settings
from nesydet.observability import tracing


def connect_tracing(settings: Settings) -> None:
    """Start tracing in each pool process as it starts, and flush it as it stops."""
    if not settings.otel_endpoint:
        return

    def start(**_: Any) -> None:
        tracing.start_tracing(settings.otel_endpoint, service=tracing.WORKER_SERVICE)

    def stop(**_: Any) -> None:
        tracing.stop_tracing()

    # weak=False: the closures would otherwise be collected right away.
    worker_process_init.connect(start, weak=False)
    worker_process_shutdown.connect(stop, weak=False)


def task_trace(task: Task) -> AbstractContextManager[None]:  # type: ignore[type-arg]
    """Return a context manager that runs the task in the trace of the request that sent it.

    The sender put ``traceparent`` (and ``tracestate``) among the message's headers (see
    ``Dispatcher.publish``); Celery gives custom headers back as ``request.headers``.
    """
    request = task.request
    headers = getattr(request, "headers", None)
    if not isinstance(headers, dict) or "traceparent" not in headers:
        headers = {key: getattr(request, key, None) for key in ("traceparent", "tracestate")}
    return tracing.continued(headers)
