"""A worker's own ``/metrics``: its pool processes' samples and its host's CPU, memory and GPUs.

Served by the worker's main process on ``NESYDET_WORKER_METRICS_HOST:PORT`` (9091 by default,
the spec's ``celery_workers`` target), so a worker on a host of its own is scraped there and
needs no folder shared with the API. A port that is taken costs the metrics, not the worker:
it is logged, and Prometheus shows the target down.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from nesydet.config import Settings
from nesydet.observability import metrics
from nesydet.observability.host_metrics import HostFigures

log = logging.getLogger(__name__)


@dataclass
class MetricsServer:
    """The running HTTP server and its thread."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """Return the port it listens on."""
        return int(self.server.server_address[1])

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self in _serving:
            _serving.remove(self)
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


_serving: list[MetricsServer] = []  # the main process's server, for its forked children


def close_inherited_socket() -> None:
    """Close, in a forked pool process, the listening socket inherited from the main process
    (only the main process serves; the child must not keep the port bound if it outlives it)."""
    for served in _serving:
        served.server.socket.close()
    _serving.clear()


def start_metrics_server(settings: Settings) -> MetricsServer | None:
    """Serve this worker's metrics in a thread, or return None when turned off or not possible."""
    if settings.worker_metrics_port == 0:
        return None
    registry = metrics.scrape_registry(HostFigures(scope="worker", main_pid=os.getpid()))
    try:
        server, thread = start_http_server(
            settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=registry
        )
    except OSError as exc:
        log.error(
            "worker metrics not served",
            extra={
                "address": f"{settings.worker_metrics_host}:{settings.worker_metrics_port}",
                "error": repr(exc),
            },
        )
        return None
    served = MetricsServer(server=server, thread=thread)
    _serving.append(served)
    log.info(
        "worker metrics served",
        extra={"address": f"{settings.worker_metrics_host}:{served.port}", "path": "/metrics"},
    )
    return served
