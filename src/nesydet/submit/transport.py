"""The HTTP side of ``nesydet submit``: one client for one server, and every failure turned
into a :class:`SubmitError` carrying the server's error code (``error.code: message``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from nesydet.submit.errors import EXIT_UNREACHABLE, SubmitError, usage

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
# The batch endpoint answers once every image is checked: minutes for thousands of them.
CHECK_TIMEOUT_S = 1800.0
ERRORS_SHOWN = 20
_CODES_BY_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    413: "REQUEST_TOO_LARGE",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    502: "SERVICE_UNAVAILABLE",
    503: "SERVICE_UNAVAILABLE",
    504: "SERVICE_UNAVAILABLE",
}


def check_url(url: str) -> str:
    """Return ``url`` without a trailing slash, or raise if it is not an http(s) URL."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise usage("VALIDATION_ERROR", f"--server: not a URL: {url!r} ({exc})") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise usage(
            "VALIDATION_ERROR", f"--server: expected a URL like http://localhost:8000, got {url!r}"
        )
    return url.rstrip("/")


class Server:
    """A nesydet API at ``url``; ``api_key`` goes in ``X-API-Key`` with every request
    (``transport``: another way to the server than the network, for tests)."""

    def __init__(
        self, url: str, api_key: str | None = None, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = check_url(url)
        headers = {"Accept": "application/json", "User-Agent": "nesydet-submit"}
        if api_key:
            headers["X-API-Key"] = api_key
        self.client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            transport=transport,
        )

    def close(self) -> None:
        """Close the connections."""
        self.client.close()

    def request(
        self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        """Return the response to a request, read whole.

        Raises:
            SubmitError: the server could not be reached, or answered another status than
                ``ok`` (with its error code and message).
        """
        with self.transport_errors():
            response = self.client.request(method, path, **kwargs)
        if response.status_code not in ok:
            raise refusal(response)
        return response

    def data(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Return the ``data`` object of a JSON answer (see :meth:`request`)."""
        response = self.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError as exc:
            raise SubmitError(
                "INVALID_RESPONSE", f"{self.url}{path} did not answer JSON: is it a nesydet API?"
            ) from exc
        data: Any = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise SubmitError("INVALID_RESPONSE", f"{self.url}{path} answered without data")
        return data

    @contextlib.contextmanager
    def stream(self, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """Yield a streamed ``GET`` response with status 200 (see :meth:`request`)."""
        with self.transport_errors(), self.client.stream("GET", path, **kwargs) as response:
            if response.status_code != 200:
                response.read()
                raise refusal(response)
            yield response

    @contextlib.contextmanager
    def transport_errors(self) -> Iterator[None]:
        """Turn the failures of the connection inside the block into a SubmitError."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise SubmitError(
                "SERVICE_UNAVAILABLE",
                f"{self.url} did not answer in time ({type(exc).__name__})",
                exit_status=EXIT_UNREACHABLE,
            ) from exc
        except httpx.ConnectError as exc:
            raise SubmitError(
                "SERVICE_UNAVAILABLE",
                f"cannot reach the server at {self.url}: {exc}",
                exit_status=EXIT_UNREACHABLE,
            ) from exc
        except httpx.TransportError as exc:
            raise SubmitError(
                "SERVICE_UNAVAILABLE",
                f"the connection to {self.url} broke: {exc or type(exc).__name__}",
                exit_status=EXIT_UNREACHABLE,
            ) from exc


def error_code(response: httpx.Response) -> str | None:
    """Return the code of the API's error envelope in ``response`` (None if there is none)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    nested = body.get("error")
    code = nested.get("code") if isinstance(nested, dict) else body.get("error_code")
    return code if isinstance(code, str) else None


def refusal(response: httpx.Response) -> SubmitError:
    """Return the error an answer that is not a success stands for: the envelope's code and
    message, and each failing item of its ``errors`` on a line of its own."""
    code = error_code(response)
    if code is None:
        status = response.status_code
        fallback = _CODES_BY_STATUS.get(status, "INTERNAL_ERROR" if status >= 500 else "HTTP_ERROR")
        return SubmitError(
            fallback,
            f"{response.request.method} {response.request.url} answered {status} "
            f"{response.reason_phrase} without the API's error body: is it a nesydet API?",
        )
    body = response.json()
    nested = body.get("error") if isinstance(body.get("error"), dict) else body
    message = str(nested.get("message") or body.get("message") or "")
    details = nested.get("details") or body.get("details")
    items = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    if details and not items:
        message = f"{message}: {details}"
    lines = [_item(e) for e in items[:ERRORS_SHOWN]]
    if len(items) > ERRORS_SHOWN:
        lines.append(f"... and {len(items) - ERRORS_SHOWN} more")
    return SubmitError(code, message, lines=lines)


def _item(error: dict[str, Any]) -> str:
    where = error.get("filename") or error.get("field") or "-"
    item_code = error.get("error_code")
    text = error.get("error") or ""
    return f"{where}: {item_code}: {text}" if item_code else f"{where}: {text}"
