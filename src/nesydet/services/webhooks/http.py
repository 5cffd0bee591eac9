"""One signed POST of a webhook delivery, to an address the SSRF guard checked.

The standard library's ``http.client`` is used on purpose: it follows no redirects, reads no
proxy settings, and lets the connection go to the checked address while the ``Host`` header
and TLS (SNI and certificate) keep the URL's host name.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from standardwebhooks import Webhook as Signer

from nesydet.services.webhooks.ssrf import AllowList, IPAddress, RefusedUrl, permitted_addresses

USER_AGENT = "nesydet-webhooks/1.0"
# Read at most this much of an answer: its status is what counts.
_MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class PostResult:
    """What one attempt got: the receiver's status (None when no answer), the address it
    went to, how long it took, and what went wrong when it did."""

    status_code: int | None
    address: str | None
    latency_ms: float
    error: str | None

    @property
    def ok(self) -> bool:
        """Return whether the receiver took the event (a 2xx answer)."""
        return self.status_code is not None and 200 <= self.status_code < 300


def signed_headers(*, secret: str, message_id: str, body: str, when: datetime) -> dict[str, str]:
    """Return the Standard Webhooks headers of a body sent at ``when``."""
    when = when.astimezone(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Signer(secret).sign(message_id, when, body),
    }


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to a fixed address, whatever the host name resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(_PinnedHTTP):
    """The same over TLS, verified for the URL's host name."""

    default_port = 443

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, address, timeout)
        self._tls = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host)


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:300]


def post(
    url: str,
    body: str,
    *,
    secret: str,
    message_id: str,
    allow: AllowList,
    timeout_s: float,
) -> PostResult:
    """POST ``body`` (JSON text) to ``url``, signed; never raises for the receiver's faults.

    The URL is checked again here (its host may resolve elsewhere than when the webhook was
    made), and the request goes to the first address that answers; a redirect is an answer
    like any other non-2xx one, never followed.
    """
    started = time.monotonic()

    def result(code: int | None, address: IPAddress | None, error: str | None) -> PostResult:
        elapsed = round((time.monotonic() - started) * 1000, 2)
        return PostResult(code, str(address) if address else None, elapsed, error)

    try:
        addresses = permitted_addresses(url, allow)
    except RefusedUrl as exc:
        return result(None, None, f"refused: {exc}")
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(secret=secret, message_id=message_id, body=body, when=datetime.now(UTC)),
    }
    error: str | None = None
    last: IPAddress | None = None
    for address in addresses:
        last = address
        conn = connection(host, port, str(address), timeout_s)
        try:
            try:
                conn.connect()
            except OSError as exc:  # nothing was sent: the host's next address, if any
                error = _short(exc)
                continue
            try:
                conn.request("POST", target, body=body.encode(), headers=headers)
                response = conn.getresponse()
                response.read(_MAX_RESPONSE_BYTES)
            except (OSError, http.client.HTTPException) as exc:
                return result(None, address, _short(exc))
            code = response.status
            return result(code, address, None if 200 <= code < 300 else f"HTTP {code}")
        finally:
            conn.close()
    return result(None, last, error)
