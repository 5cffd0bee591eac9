"""Which database errors mean "unreachable now" (503, retry) rather than a bug (500)."""

from __future__ import annotations

import errno

import pytest
from asyncpg import exceptions as pg
from sqlalchemy import exc as sa_exc

from nesydet.db.session import is_unavailable


def wrapped(cause: BaseException) -> sa_exc.DBAPIError:
    """Return the error SQLAlchemy raises for ``cause``: a DBAPIError around its adapter."""

    class AdaptedError(Exception):
        pass

    adapted = AdaptedError(str(cause))
    adapted.__cause__ = cause
    error = sa_exc.DBAPIError("SELECT 1", {}, adapted)
    error.__cause__ = adapted
    return error


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"),
        TimeoutError(),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        pg.CannotConnectNowError("the database system is starting up"),
        pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        pg.AdminShutdownError("terminating connection due to administrator command"),
        wrapped(pg.CannotConnectNowError("the database system is starting up")),
        wrapped(ConnectionResetError(errno.ECONNRESET, "reset")),
        sa_exc.OperationalError("SELECT 1", {}, Exception("unable to open database file")),
    ],
)
def test_outages_are_unavailable(error: BaseException) -> None:
    assert is_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        FileNotFoundError(errno.ENOENT, "missing"),
        sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
        wrapped(pg.UniqueViolationError("duplicate key value")),
        wrapped(pg.DataError("invalid byte sequence")),
    ],
)
def test_faults_of_the_request_or_the_code_are_not(error: BaseException) -> None:
    assert not is_unavailable(error)
