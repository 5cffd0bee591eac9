"""Shared test set-up: real PostgreSQL and Redis servers, migrated databases, an app client.

Under ``CI=true`` a missing PostgreSQL or Redis fails the tests that need it; elsewhere they are
skipped with the reason. The servers are started here when they are installed but not running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

# Before anything imports prometheus_client: every process of a test run (the test process and
# any worker it starts) writes metrics here, as in production.
_METRICS_DIR = Path(tempfile.mkdtemp(prefix="nesydet-metrics-"))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_METRICS_DIR))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

import httpx  # noqa: E402
import pytest  # noqa: E402

from nesydet.api.app import create_app, new_checker  # noqa: E402
from nesydet.config import Settings  # noqa: E402
from nesydet.services.image_checker import ImageChecker  # noqa: E402
from tests import contract  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_URL = os.environ.get("NESYDET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("NESYDET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _wait_port(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _port_open(host, port):
            return True
        time.sleep(0.2)
    return False


def _unavailable(what: str) -> None:
    message = f"{what} is not reachable"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


def _start_postgres() -> None:
    clusters = Path("/etc/postgresql")
    if shutil.which("pg_ctlcluster") and clusters.is_dir():
        for version in sorted(p.name for p in clusters.iterdir()):
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                check=False,
                capture_output=True,
                timeout=60,
            )


def _start_redis() -> None:
    if shutil.which("redis-server"):
        subprocess.run(
            ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
             "--save", "", "--appendonly", "no"],
            check=False,
            capture_output=True,
            timeout=30,
        )  # fmt: skip


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """Return the admin URL of a running PostgreSQL, starting it if installed."""
    if not _port_open("127.0.0.1", 5432):
        _start_postgres()
        if not _wait_port("127.0.0.1", 5432, 30):
            _unavailable("PostgreSQL at 127.0.0.1:5432")
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def redis_server() -> str:
    """Return the URL of a running Redis, starting it if installed."""
    if not _port_open("127.0.0.1", 6379):
        _start_redis()
        if not _wait_port("127.0.0.1", 6379, 15):
            _unavailable("Redis at 127.0.0.1:6379")
    return REDIS_URL


def _asyncpg_url(url: str, database: str) -> str:
    base = url.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{database}"


async def _pg_admin(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def migrate(url: str) -> None:
    """Run every migration up on the database at ``url``."""
    from nesydet.cli import migrate as run_migrate

    run_migrate(Settings(database_url=url))


@pytest.fixture(scope="session")
def pg_database(postgres_server: str) -> Iterator[str]:
    """Return the URL of a migrated PostgreSQL database private to this test session."""
    name = f"nesydet_test_{os.getpid()}"
    asyncio.run(
        _pg_admin(postgres_server, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    )
    url = _asyncpg_url(postgres_server, name)
    migrate(url)
    yield url
    asyncio.run(_pg_admin(postgres_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a migrated SQLite file that tests copy."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate(f"sqlite+aiosqlite:///{path}")
    return path


def _table_names() -> list[str]:
    from nesydet.db import models  # noqa: F401
    from nesydet.db.base import Base

    return [t.name for t in reversed(Base.metadata.sorted_tables)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return a migrated, empty database URL: SQLite, then the real PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "nesydet.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("pg_database")
    admin = url.replace("postgresql+asyncpg://", "postgresql://")
    asyncio.run(_pg_admin(admin, f"TRUNCATE {', '.join(_table_names())} CASCADE"))
    return url


@pytest.fixture
def asset_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Return a models and a rules directory with placeholder files (no inference runs)."""
    models, rules = tmp_path / "models", tmp_path / "rules"
    models.mkdir()
    rules.mkdir()
    (models / "nesydet-demo-obb.pt").write_bytes(b"placeholder")
    (models / "other.pt").write_bytes(b"placeholder")
    (rules / "dota.pl").write_text("% placeholder\n")
    return models, rules


@pytest.fixture
def settings(db_url: str, tmp_path: Path, asset_dirs: tuple[Path, Path]) -> Settings:
    """Return settings on the test database with storage under ``tmp_path``.

    The broker is the filesystem transport under ``tmp_path`` with no worker, and the
    sweeper does not run on its own (tests call it).
    """
    models, rules = asset_dirs
    return Settings(
        database_url=db_url,
        var_dir=tmp_path / "var",
        storage_root=tmp_path / "storage",
        broker_url="filesystem://localhost/",
        models_dir=models,
        rules_dir=rules,
        rate_limit=None,
        metrics_dir=None,
        log_format="text",
        sweeper_interval_s=0,
        register_bundled=False,
    )


@pytest.fixture(scope="session", autouse=True)
def openapi_contract() -> Iterator[None]:
    """Check every response the tests get from the app against its OpenAPI document."""
    with contract.install():
        yield


@pytest.fixture(scope="session")
def checker() -> Iterator[ImageChecker]:
    """Return one image-checker pool for the whole session (its processes take a while)."""
    pool = new_checker(Settings())
    yield pool
    pool.close()


@pytest.fixture
async def client(settings: Settings, checker: ImageChecker) -> AsyncIterator[httpx.AsyncClient]:
    """Return an HTTP client bound to a running app (lifespan included)."""
    app = create_app(settings, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http
