"""OpenTelemetry tracing, off unless ``NESYDET_OTEL_ENDPOINT`` is set.

Each process starts its own tracer provider: the API in ``create_app``, every worker pool
process in ``worker_process_init`` (after the fork: a thread or a connection made before it
would not survive it). Ended spans wait in a bounded in-memory queue and a background thread
sends them in batches to ``<endpoint>/v1/traces``; a collector that is down or slow loses
spans, it never delays or fails a request or a job.

Unset, nothing is created: no provider, no thread, no exporter imported, and every helper here
returns at its first line.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from nesydet import __version__

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

API_SERVICE = "nesydet-api"
WORKER_SERVICE = "nesydet-worker"
TRACES_PATH = "/v1/traces"
# One export request, retries included, gives up after this long (the batch is dropped).
EXPORT_TIMEOUT_S = 5.0
# How long stopping waits for the last batch: the SDK's own shutdown would wait 30 s for a
# collector that does not answer.
STOP_TIMEOUT_S = 5.0
# A span never carries unbounded client input (a long URL path): text attributes are cut here.
MAX_ATTRIBUTE_CHARS = 2000

# Span kinds of messages: the API sends a job's task (producer), a worker runs it (consumer).
PRODUCER, CONSUMER = SpanKind.PRODUCER, SpanKind.CONSUMER
AttributeValue = str | bool | int | float
_NOTHING: AbstractContextManager[Any] = nullcontext()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


def start_tracing(endpoint: str | None, *, service: str) -> TracerProvider | None:
    """Return this process's tracer provider, exporting to ``endpoint``; None when it is unset.

    The queue is bounded (``OTEL_BSP_MAX_QUEUE_SIZE``, 2048 spans by default: spans beyond it
    are dropped) and batches leave every ``OTEL_BSP_SCHEDULE_DELAY`` ms (5000 by default).

    Args:
        endpoint: the collector's OTLP/HTTP base URL, e.g. ``http://collector:4318``.
        service: ``service.name`` of this process (``nesydet-api``, ``nesydet-worker``).
    """
    global _provider, _tracer
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": service,
            "service.version": __version__,
            "host.name": socket.gethostname(),
            "process.pid": os.getpid(),
        }
    )
    provider = TracerProvider(
        resource=resource,
        span_limits=SpanLimits(max_span_attribute_length=MAX_ATTRIBUTE_CHARS),
        shutdown_on_exit=False,  # stop_tracing() stops it, within STOP_TIMEOUT_S
    )
    url = endpoint.rstrip("/") + TRACES_PATH
    exporter = OTLPSpanExporter(endpoint=url, timeout=EXPORT_TIMEOUT_S)
    provider.add_span_processor(
        BatchSpanProcessor(exporter, export_timeout_millis=EXPORT_TIMEOUT_S * 1000)
    )
    stop_tracing()  # a provider this process started before is replaced
    _provider, _tracer = provider, provider.get_tracer("nesydet", __version__)
    log.info("tracing on", extra={"otel_traces_url": url, "service": service})
    return provider


def stop_tracing(timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Send the spans still queued and stop; waits ``timeout_s`` at most."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is None:
        return
    stopping = threading.Thread(target=provider.shutdown, name="otel-stop", daemon=True)
    stopping.start()
    stopping.join(timeout_s)


atexit.register(stop_tracing)


def enabled() -> bool:
    """Return whether this process records spans."""
    return _tracer is not None


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> AbstractContextManager[Any]:
    """Return a context manager that runs its block in a new child span of the current one.

    An exception leaving the block is recorded on the span and marks it failed. Off, it is a
    shared ``nullcontext``.
    """
    tracer = _tracer
    if tracer is None:
        return _NOTHING
    return tracer.start_as_current_span(name, kind=kind, attributes=attributes)


def set_attribute(key: str, value: AttributeValue) -> None:
    """Set an attribute on the current span (nothing when off or outside a span)."""
    if _tracer is not None:
        trace.get_current_span().set_attribute(key, value)


def record_steps(
    timings: Mapping[str, float], *, end_ns: int, attributes: Mapping[str, AttributeValue]
) -> None:
    """Record one child span of the current span per step, from the steps' measured seconds.

    The steps ran one after another in the mapping's order and the last one ended at
    ``end_ns`` (``time.time_ns()``): the spans are laid out backwards from there. Each span
    is named after its step and has it as its ``stage`` attribute.
    """
    tracer = _tracer
    if tracer is None:
        return
    end = end_ns
    for name, seconds in reversed(list(timings.items())):
        start = end - max(0, round(seconds * 1e9))
        step = tracer.start_span(name, start_time=start, attributes={**attributes, "stage": name})
        step.end(end_time=end)
        end = start


def inject() -> dict[str, str]:
    """Return the headers that carry the current span to another process (W3C
    ``traceparent``, ``tracestate``); empty when off."""
    if _tracer is None:
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def continued(carrier: Mapping[str, Any] | None) -> Iterator[None]:
    """Run the block as part of the trace that ``carrier`` (headers from :func:`inject`) names.

    Without such headers, or when off, the block runs as it is.
    """
    headers = {k: v for k, v in (carrier or {}).items() if isinstance(v, str)}
    if _tracer is None or not headers:
        yield
        return
    from opentelemetry import propagate

    token = otel_context.attach(propagate.extract(headers))
    try:
        yield
    finally:
        otel_context.detach(token)


def current_ids() -> tuple[str, str] | None:
    """Return the (trace id, span id) of the current span as hex, or None outside a span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
