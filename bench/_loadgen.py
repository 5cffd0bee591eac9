"""A small HTTP/1.1 load generator on raw asyncio streams (keep-alive, one GET path).

Run as its own process so that its CPU shows as a separate client, the way real pollers are:

    python -m bench._loadgen HOST PORT PATH loop --clients 8 --seconds 10
    python -m bench._loadgen HOST PORT PATH crowd --clients 200 --rate 1 --seconds 20

``loop``: each client sends its next request as soon as the last answer is in (throughput).
``crowd``: each client sends ``--rate`` requests a second from a random phase (latency).
Prints one JSON object: requests, seconds, requests per second, latency percentiles (ms),
and the count of each status code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter


class Connection:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port = host, port
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self) -> int:
        """Send the request once; return the status code after reading the whole answer."""
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        await self.reader.readexactly(length)
        if close:
            self.writer.close()
            self.reader = self.writer = None
        return status


async def _client(
    conn: Connection, deadline: float, period: float | None, lat: list[float], codes: Counter[int]
) -> None:
    if period is not None:
        await asyncio.sleep(random.uniform(0, period))
    while (now := time.perf_counter()) < deadline:
        try:
            codes[await conn.get()] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            codes[0] += 1
            conn.reader = conn.writer = None
        done = time.perf_counter()
        lat.append(done - now)
        if period is not None:
            await asyncio.sleep(max(0.0, period - (done - now)))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Return the figures of one run."""
    period = None if args.mode == "loop" else 1.0 / args.rate
    conns = [Connection(args.host, args.port, args.path) for _ in range(args.clients)]
    for conn in conns[: min(len(conns), 4)]:
        await conn.get()  # warm: the first answers include connection set-up
    lat: list[float] = []
    codes: Counter[int] = Counter()
    started = time.perf_counter()
    deadline = started + args.seconds
    await asyncio.gather(*(_client(c, deadline, period, lat, codes) for c in conns))
    elapsed = time.perf_counter() - started
    return {
        "requests": len(lat),
        "seconds": round(elapsed, 2),
        "rps": round(len(lat) / elapsed, 1),
        "p50_ms": round(_pct(lat, 0.50), 2),
        "p95_ms": round(_pct(lat, 0.95), 2),
        "p99_ms": round(_pct(lat, 0.99), 2),
        "codes": {str(k): v for k, v in sorted(codes.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("mode", choices=["loop", "crowd"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
