"""How every ``nesydet`` command fails: one line ``CODE: message``, with the error code the
API would answer (``RULES_ERROR``, ``USER_EXISTS``, ``SERVICE_UNAVAILABLE``, ...), and a
non-zero exit status. A wrong argument, a missing file or a database that cannot be reached is
never shown as a traceback; only a fault in the code itself (``INTERNAL_ERROR``) keeps one,
for its bug report."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from nesydet.errors import AppError
from nesydet.pipeline.errors import PipelineError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_MISSING_SCHEMA = ("no such table", "undefinedtable")
_DRIVERS = ("sqlalchemy", "asyncpg", "aiosqlite")


class CodedArgumentParser(argparse.ArgumentParser):
    """An argument parser whose refusals end with ``VALIDATION_ERROR: ...`` (the API's code
    for a bad parameter) after the usage; subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        """Print the usage and the refusal, then exit with status 2."""
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"VALIDATION_ERROR: {self.prog}: {message}\n")


def positive_int(text: str) -> int:
    """Return a whole number of 1 or more (an argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return value


def port_number(text: str) -> int:
    """Return a TCP port, 1 to 65535 (an argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return value


def run_reported(command: Callable[[], int]) -> int:
    """Return ``command``'s exit status; a failure is printed as ``CODE: message`` on
    standard error and gives a non-zero status."""
    try:
        return command()
    except KeyboardInterrupt:
        print("INTERRUPTED: stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        code, message, status = describe(exc)
        if code == "INTERNAL_ERROR":
            traceback.print_exc()
        print(f"{code}: {message}", file=sys.stderr, flush=True)
        return status


def describe(exc: Exception) -> tuple[str, str, int]:
    """Return the error code, message and exit status a failure is reported with."""
    if isinstance(exc, AppError):
        message = f"{exc.message}: {exc.details}" if exc.details else exc.message
        return exc.code, message, EXIT_FAILED
    if isinstance(exc, PipelineError):
        return exc.code, str(exc), EXIT_FAILED
    database = _database_failure(exc)
    if database is not None:
        return "SERVICE_UNAVAILABLE", database, EXIT_FAILED
    if _is_settings_error(exc):
        return "CONFIG_ERROR", _one_line(exc), EXIT_USAGE
    if type(exc).__name__ == "CommandError" and type(exc).__module__.startswith("alembic"):
        return "VALIDATION_ERROR", f"migrate: {exc}", EXIT_USAGE
    if isinstance(exc, ConnectionError | TimeoutError):
        return "SERVICE_UNAVAILABLE", f"a server cannot be reached: {exc}", EXIT_FAILED
    if isinstance(exc, OSError):
        return "FILE_ERROR", _os_message(exc), EXIT_FAILED
    return "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}", EXIT_FAILED


def _database_failure(exc: Exception) -> str | None:
    """Return why the database failed the command, or None if ``exc`` is not about it."""
    if "sqlalchemy" not in sys.modules and "asyncpg" not in sys.modules:
        return None  # no database was used: the error is something else
    from sqlalchemy.exc import SQLAlchemyError

    from nesydet.db.session import is_unavailable

    chain = _chain(exc)
    if not any(isinstance(e, SQLAlchemyError) or _raised_in_driver(e) for e in chain):
        return None
    root = _one_line(chain[-1])
    if any(mark in repr(e).lower() for e in chain for mark in _MISSING_SCHEMA):
        return f"the database has no tables yet: run `nesydet migrate` ({root})"
    if is_unavailable(exc):
        return f"the database cannot be reached: {root}"
    return None


def _raised_in_driver(exc: BaseException) -> bool:
    """Return whether ``exc`` came out of the database's code (asyncpg's connect, say, raises
    a plain ``OSError`` that SQLAlchemy does not wrap)."""
    files = [frame.filename for frame in traceback.extract_tb(exc.__traceback__)]
    return any(f"{os.sep}{name}{os.sep}" in f for f in files for name in _DRIVERS)


def _chain(exc: BaseException) -> list[BaseException]:
    """Return ``exc`` and its causes (a driver's error under SQLAlchemy's), outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return seen


def _is_settings_error(exc: Exception) -> bool:
    from pydantic import ValidationError

    return isinstance(exc, ValidationError) and "Settings" in str(exc.title)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500] or type(exc).__name__


def _os_message(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"
