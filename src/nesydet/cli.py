"""The ``nesydet`` command: serve, run, migrate, worker, sweep, predict, eval, submit."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

from nesydet.admin_cli import register as register_admin_commands
from nesydet.cli_errors import CodedArgumentParser, port_number, positive_int, run_reported
from nesydet.config import Settings, get_settings, refusals
from nesydet.pipeline.cli import register as register_pipeline_commands
from nesydet.submit import register as register_submit_command

REPO_ROOT = Path(__file__).resolve().parents[2]


def _alembic_config(settings: Settings) -> Any:
    from alembic.config import Config  # alembic only for this command

    ini = Path("alembic.ini")
    if not ini.exists():
        ini = REPO_ROOT / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("script_location", str(ini.parent / "migrations"))
    config.attributes["database_url"] = settings.database_url
    return config


def _ensure_sqlite_dir(settings: Settings) -> None:
    if settings.is_sqlite and ":///" in settings.database_url:
        path = settings.database_url.split(":///", 1)[1].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def migrate(settings: Settings, revision: str = "head") -> None:
    """Run ``alembic upgrade`` to ``revision`` against the configured database."""
    from alembic import command

    _ensure_sqlite_dir(settings)
    command.upgrade(_alembic_config(settings), revision)


def _setup_process(settings: Settings, *, metrics_role: str | None = None) -> None:
    """Configure logging and, for a long-running ``metrics_role`` ("api", "worker"), metrics.

    Multiprocess metrics must be configured before prometheus_client is first imported.
    One-off commands keep their few samples in memory: nothing scrapes them.
    """
    from nesydet.observability.logging import add_secrets, configure_logging

    if (
        metrics_role is not None
        and settings.metrics_dir is not None
        and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    ):
        from nesydet.observability.metrics_dir import prepare

        prepare(settings.metrics_dir, metrics_role)
    add_secrets(
        [
            settings.s3_secret_access_key,
            settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
        ]
    )
    configure_logging(settings.log_level, settings.log_format)


def _refused(settings: Settings, *, host: str | None) -> bool:
    """Print why the settings are unsafe for this process and return True, or return False."""
    problems = refusals(settings, host=host)
    for problem in problems:
        print(f"CONFIG_ERROR: {problem}", file=sys.stderr)
    return bool(problems)


def _serve(args: argparse.Namespace) -> int:
    settings = get_settings()
    host = args.host or settings.host
    if _refused(settings, host=host):
        return 2
    certfile = args.ssl_certfile or settings.ssl_certfile
    keyfile = args.ssl_keyfile or settings.ssl_keyfile
    for flag, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if path is not None and not Path(path).is_file():
            print(f"CONFIG_ERROR: {flag}: no such file: {path}", file=sys.stderr)
            return 2
    _setup_process(settings, metrics_role="api")
    if args.migrate:
        migrate(settings)
    import uvicorn

    uvicorn.run(
        "nesydet.api.app:create_app",
        factory=True,
        host=host,
        port=args.port or settings.port,
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        workers=args.workers,
        log_config=None,
        # X-Forwarded-* are read by the app, from NESYDET_TRUSTED_PROXIES only.
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        server_header=False,  # no server name or version in responses
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    settings = get_settings()
    _setup_process(settings)
    migrate(settings, args.revision)
    return 0


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _run(args: argparse.Namespace) -> int:
    """Serve the API and one worker together (the embedded, single-machine set-up)."""
    settings = get_settings()
    if _refused(settings, host=args.host or settings.host):
        return 2
    _setup_process(settings)
    migrate(settings)
    workers: list[subprocess.Popen[bytes]] = []
    if not args.no_worker:
        # The worker keeps its own metrics and serves them itself (port 9091 by default);
        # webhooks go out through a worker of their own, on the same embedded broker.
        workers = [
            subprocess.Popen([sys.executable, "-m", "nesydet.cli", "worker"]),
            subprocess.Popen([sys.executable, "-m", "nesydet.cli", "webhook-worker"]),
        ]
    # uvicorn sends itself the SIGTERM it stopped on once it has shut down: with the default
    # handler that would end this process before the workers below are stopped.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        serve = argparse.Namespace(
            host=args.host,
            port=args.port,
            workers=1,
            migrate=False,
            ssl_certfile=None,
            ssl_keyfile=None,
        )
        return _serve(serve)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()


def _worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    if _refused(settings, host=None):
        return 2
    _setup_process(settings, metrics_role="worker")
    from nesydet.tasks.worker import run_worker  # celery, torch: workers only

    return run_worker(
        settings, concurrency=args.concurrency, loglevel=args.loglevel, queues=args.queues
    )


def _webhook_worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    if _refused(settings, host=None):
        return 2
    _setup_process(settings)
    from nesydet.tasks.webhooks import run_webhook_worker  # celery: workers only

    return run_webhook_worker(settings, concurrency=args.concurrency, loglevel=args.loglevel)


def _sweep(args: argparse.Namespace) -> int:
    settings = get_settings()
    _setup_process(settings)
    from nesydet.services.sweeper import sweep_once

    print(json.dumps(asyncio.run(sweep_once(settings))))
    return 0


def _add_worker_parser(sub: argparse._SubParsersAction[CodedArgumentParser]) -> None:
    worker = sub.add_parser(
        "worker", help="run a Celery worker on the 'inference' and 'exports' queues"
    )
    worker.add_argument("--concurrency", type=positive_int, default=None, help="worker processes")
    worker.add_argument(
        "--queues",
        default="inference,exports",
        choices=["inference,exports", "inference", "exports"],
        help="queues to take tasks from: exports = ONNX exports of registered .pt models",
    )
    worker.add_argument("--loglevel", default=None)
    worker.set_defaults(func=_worker)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``nesydet`` command."""
    # Its refusals print VALIDATION_ERROR, as the API does (subcommands inherit the class).
    parser = CodedArgumentParser(prog="nesydet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=port_number, default=None)
    serve.add_argument("--workers", type=positive_int, default=1, help="uvicorn worker processes")
    serve.add_argument("--migrate", action="store_true", help="run migrations first")
    serve.add_argument("--ssl-certfile", type=Path, default=None, help="serve HTTPS: the cert")
    serve.add_argument("--ssl-keyfile", type=Path, default=None, help="... and its private key")
    serve.set_defaults(func=_serve)

    run = sub.add_parser("run", help="migrate, then serve the API with one worker beside it")
    run.add_argument("--host", default=None)
    run.add_argument("--port", type=port_number, default=None)
    run.add_argument("--no-worker", action="store_true")
    run.set_defaults(func=_run)

    mig = sub.add_parser("migrate", help="upgrade the database schema (alembic upgrade)")
    mig.add_argument("revision", nargs="?", default="head")
    mig.set_defaults(func=_migrate)

    _add_worker_parser(sub)

    hooks = sub.add_parser(
        "webhook-worker", help="run a Celery worker that sends webhooks (queue 'webhooks')"
    )
    hooks.add_argument(
        "--concurrency", type=positive_int, default=None, help="deliveries sent at once (threads)"
    )
    hooks.add_argument("--loglevel", default=None)
    hooks.set_defaults(func=_webhook_worker)

    sweep = sub.add_parser("sweep", help="re-send unsent jobs and recover stale ones, once")
    sweep.set_defaults(func=_sweep)

    register_admin_commands(sub)
    register_submit_command(sub)
    settings = get_settings()
    register_pipeline_commands(
        cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub),  # a subclass's
        models_dir=settings.models_dir,
        rules_dir=settings.rules_dir,
        default_model=settings.default_model,
    )

    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""

    def command() -> int:
        args = build_parser().parse_args(argv)
        result: int = args.func(args)
        return result

    # A failure prints the API's error code (`RULES_ERROR: ...`) and a non-zero status.
    return run_reported(command)


if __name__ == "__main__":
    sys.exit(main())
