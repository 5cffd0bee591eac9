"""Following a job to its end: its Server-Sent Events stream (``/jobs/{id}/events``), and
polling its status instead where the stream is not served or breaks off."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from nesydet.domain import TERMINAL_STATUSES as TERMINAL  # the job states the API ends in
from nesydet.submit.errors import EXIT_UNREACHABLE, SubmitError
from nesydet.submit.transport import CONNECT_TIMEOUT_S, Server, error_code, refusal

POLL_S = 2.0  # the spec's polling interval is 2 to 5 s
# The stream sends a comment every 15 s of silence: a minute without a byte is a dead stream.
STREAM_READ_TIMEOUT_S = 60.0
# How long polling rides out a server that cannot be reached (a restart) before giving up.
UNREACHABLE_FOR_S = 120.0
MAX_RETRY_AFTER_S = 30.0

Status = dict[str, Any]
OnStatus = Callable[[Status], None]


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Yield ``(event, data)`` of a ``text/event-stream``, one per blank-line-ended event."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def watch(server: Server, job_id: str, on_status: OnStatus, *, poll_s: float = POLL_S) -> Status:
    """Return the job's final status (the status endpoint's ``data``), calling ``on_status``
    with every status seen on the way.

    Raises:
        SubmitError: the job is not there, or the server stopped answering for good.
    """
    last = _stream(server, job_id, on_status)
    if last is not None and last.get("status") in TERMINAL:
        return last
    return _poll(server, job_id, on_status, poll_s)


def _stream(server: Server, job_id: str, on_status: OnStatus) -> Status | None:
    """Return the last status of the job's event stream, or None where there is no stream."""
    last: Status | None = None
    timeout = httpx.Timeout(STREAM_READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    headers = {"Accept": "text/event-stream"}
    path = f"/api/v1/jobs/{job_id}/events"
    try:
        with server.client.stream("GET", path, headers=headers, timeout=timeout) as response:
            kind = response.headers.get("content-type", "")
            if response.status_code != 200 or not kind.startswith("text/event-stream"):
                response.read()
                if response.status_code in (401, 403) or error_code(response) == "JOB_NOT_FOUND":
                    raise refusal(response)
                return None  # no stream here (an older server, a proxy): poll instead
            for event, data in sse_events(response.iter_lines()):
                if event != "status":
                    continue
                status: Status = json.loads(data)
                last = status
                on_status(status)
                if status.get("status") in TERMINAL:
                    break
    except (httpx.TransportError, json.JSONDecodeError):
        pass  # a stream that broke off: polling takes over from the last status
    return last


def _poll(server: Server, job_id: str, on_status: OnStatus, poll_s: float) -> Status:
    reached = time.monotonic()
    while True:
        try:
            response = server.request(
                "GET", f"/api/v1/jobs/{job_id}/status", ok=(200, 429, 502, 503, 504)
            )
        except SubmitError as exc:
            if (
                exc.exit_status != EXIT_UNREACHABLE
                or time.monotonic() - reached > UNREACHABLE_FOR_S
            ):
                raise
            time.sleep(poll_s)
            continue
        reached = time.monotonic()
        if response.status_code != 200:  # busy or restarting: as long as it asks
            time.sleep(_retry_after(response, poll_s))
            continue
        status: Status = response.json()["data"]
        on_status(status)
        if status.get("status") in TERMINAL:
            return status
        time.sleep(poll_s)


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return min(float(response.headers.get("retry-after", default)), MAX_RETRY_AFTER_S)
    except ValueError:
        return default
