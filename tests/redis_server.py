"""A private redis-server on a free port that a test can stop and start again."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import IN_CI


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``redis-server`` on 127.0.0.1 with no persistence; ``stop`` and ``start`` at will.

    ``listen`` gives other addresses to listen on (``url`` names the first). On any but a
    loopback address protected mode is off: Redis would otherwise refuse every client there,
    having no password.
    """

    def __init__(self, workdir: Path, listen: Sequence[str] = ("127.0.0.1",)) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed"
            if IN_CI:
                pytest.fail(f"{message}; CI=true requires it", pytrace=False)
            pytest.skip(message)
        self.binary = str(binary)
        self.listen = list(listen)
        self.host = self.listen[0]
        self.port = _free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        loopback = all(ipaddress.ip_address(address).is_loopback for address in self.listen)
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", *self.listen, "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir),
             "--protected-mode", "yes" if loopback else "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
