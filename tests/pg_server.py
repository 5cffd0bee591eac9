"""A private PostgreSQL server on a free port that a fault test can stop, start and freeze.

Made with Debian's ``initdb`` and ``postgres`` binaries in a throw-away data directory; never
the machine's shared server. PostgreSQL refuses to run as root, so as root it runs as the
``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import IN_CI


def _binaries() -> Path | None:
    base = Path("/usr/lib/postgresql")
    if not base.is_dir():
        return None
    versions = sorted((p for p in base.iterdir() if (p / "bin" / "initdb").exists()), reverse=True)
    return versions[0] / "bin" if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """``postgres`` on 127.0.0.1 with trust authentication and a database ``test``.

    ``listen`` gives other addresses to listen on (``url`` names the first), and ``clients``
    the networks besides loopback whose connections are trusted.
    """

    def __init__(self, listen: Sequence[str] = ("127.0.0.1",), clients: Sequence[str] = ()) -> None:
        binaries = _binaries()
        if binaries is None:
            message = "PostgreSQL server binaries are not installed"
            if IN_CI:
                pytest.fail(f"{message}; CI=true requires them", pytrace=False)
            pytest.skip(message)
        self.bin = binaries
        self.listen = list(listen)
        self.host = self.listen[0]
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="nesydet-pg-"))
        self.data = self.root / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: list[str] = []
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.writelines(f"host all all {network} trust\n" for network in clients)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._user, str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    @property
    def url(self) -> str:
        """Return the asyncpg URL of the ``test`` database."""
        return f"postgresql+asyncpg://postgres@{self.host}:{self.port}/test"

    def start(self) -> None:
        """Start the server and wait until it accepts connections; create ``test`` once."""
        self.proc = subprocess.Popen(
            [*self._user, str(self.bin / "postgres"), "-D", str(self.data),
             "-p", str(self.port), "-h", ",".join(self.listen), "-k", str(self.root),
             "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", self.host, "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the private PostgreSQL did not start")
            time.sleep(0.1)
        created = subprocess.run(
            [*self._user, str(self.bin / "createdb"), "-h", self.host, "-p", str(self.port),
             "-U", "postgres", "test"],
            capture_output=True, check=False,
        )  # fmt: skip
        if created.returncode != 0 and b"already exists" not in created.stderr:
            raise RuntimeError(created.stderr.decode())

    def _pid(self) -> int:
        # The server's own pid (runuser forks it as a child).
        first = (self.data / "postmaster.pid").read_text().split()[0]
        return int(first)

    def stop(self) -> None:
        """Stop the server at once (fast shutdown: clients are disconnected)."""
        if self.proc is None:
            return
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            os.kill(self._pid(), signal.SIGINT)
        self.proc.wait(60)
        self.proc = None

    def freeze(self, frozen: bool) -> None:
        """Stop (SIGSTOP) or resume (SIGCONT) every server process: a hung database."""
        sig = signal.SIGSTOP if frozen else signal.SIGCONT
        os.killpg(os.getpgid(self._pid()), sig)

    def remove(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
