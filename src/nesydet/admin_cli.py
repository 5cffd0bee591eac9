"""``nesydet users``, ``nesydet keys`` and ``nesydet cleanup``: accounts and retention from the
shell, non-interactive, for the first admin and for scripts.

Every command prints what it did; a failure prints the API's error code and message
(``USER_EXISTS: ...``) and exits 1.

The services are imported when a command runs, not with this module: the ``nesydet`` command
imports it to build its parser, before it has set up Prometheus' multiprocess mode, and no
metric may exist before that (see observability/metrics_dir.py).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nesydet.config import Settings, get_settings
from nesydet.db.session import create_engine, create_sessionmaker
from nesydet.domain import Role
from nesydet.errors import AppError
from nesydet.schemas.common import iso_z
from nesydet.storage import create_storage

Work = Callable[[async_sessionmaker[AsyncSession], Settings], Awaitable[None]]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([dhms])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def duration(text: str) -> timedelta:
    """Return ``7d``, ``12h``, ``30m`` or ``30s`` as a timedelta (argparse type)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration like 7d, 12h, 30m or 30s: {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def _run(work: Work) -> int:
    settings = get_settings()

    async def main() -> None:
        engine = create_engine(settings.database_url)
        try:
            await work(create_sessionmaker(engine), settings)
        finally:
            await engine.dispose()

    try:
        asyncio.run(main())
    except AppError as exc:
        print(f"{exc.code}: {exc.message}" + (f": {exc.details}" if exc.details else ""),
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _users_create(args: argparse.Namespace) -> int:
    password = sys.stdin.read().rstrip("\r\n") if args.password_stdin else None

    async def work(maker: async_sessionmaker[AsyncSession], _settings: Settings) -> None:
        from nesydet.services import accounts  # see the module docstring

        async with maker() as session:
            user = await accounts.create_user(
                session=session, name=args.name, role=Role(args.role), password=password
            )
            await session.commit()
        print(f"created user {user.name} ({user.id}), role {user.role}")

    return _run(work)


def _users_list(_args: argparse.Namespace) -> int:
    async def work(maker: async_sessionmaker[AsyncSession], _settings: Settings) -> None:
        from nesydet.services import accounts  # see the module docstring

        async with maker() as session:
            for user in await accounts.list_users(session=session):
                state = "disabled" if user.disabled_at else "active"
                print(f"{user.id}\t{user.name}\t{user.role}\t{state}")

    return _run(work)


def _keys_create(args: argparse.Namespace) -> int:
    async def work(maker: async_sessionmaker[AsyncSession], _settings: Settings) -> None:
        from nesydet.services import accounts  # see the module docstring

        async with maker() as session:
            user = await accounts.find_user(session=session, name=args.user)
            made = await accounts.create_key(
                session=session,
                user_id=user.id,
                label=args.label,
                expires_in_days=args.expires_in_days,
            )
            await session.commit()
        expires = iso_z(made.row.expires_at) if made.row.expires_at else "never"
        print(f"created key {made.row.id} for {user.name} (expires {expires}); store it now:")
        print(made.key)  # alone on the last line, for `| tail -n 1`

    return _run(work)


def _keys_list(args: argparse.Namespace) -> int:
    async def work(maker: async_sessionmaker[AsyncSession], _settings: Settings) -> None:
        from nesydet.services import accounts  # see the module docstring

        async with maker() as session:
            user_id = None
            if args.user:
                user_id = (await accounts.find_user(session=session, name=args.user)).id
            for key, user in await accounts.list_keys(session=session, user_id=user_id):
                used = iso_z(key.last_used_at) if key.last_used_at else "never"
                print(f"{key.id}\t{user.name}\t{accounts.key_state(key)}\t{key.prefix}...\t"
                      f"last used {used}\t{key.label}")  # fmt: skip

    return _run(work)


def _keys_revoke(args: argparse.Namespace) -> int:
    async def work(maker: async_sessionmaker[AsyncSession], _settings: Settings) -> None:
        from nesydet.services import accounts  # see the module docstring

        async with maker() as session:
            key = await accounts.revoke_key(session=session, principal=None, key_id=args.key_id)
            await session.commit()
        print(f"revoked key {key.id}")

    return _run(work)


def _cleanup(args: argparse.Namespace) -> int:
    async def work(maker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        from nesydet.services import retention  # see the module docstring

        older_than = args.older_than or timedelta(days=settings.retention_days)
        report = await retention.cleanup(
            sessionmaker=maker,
            storage=create_storage(settings),
            older_than=older_than,
            dry_run=args.dry_run,
        )
        verb = "would delete" if args.dry_run else "deleted"
        for item in report.deleted:
            print(f"{verb} {item.upload_id}\towner {item.owner_id or '-'}\t"
                  f"last used {iso_z(item.last_use)}\t{item.bytes} bytes uploaded")  # fmt: skip
        for item in report.kept_in_use:
            print(f"kept {item.upload_id}\ta job on it is queued or running")
        freed = (
            ""
            if args.dry_run
            else (f"; {report.freed.objects} objects, {report.freed.bytes} bytes freed")
        )
        print(f"{verb} {len(report.deleted)} uploads unused for {older_than}{freed}")

    return _run(work)


def register(sub: Any) -> None:
    """Add the ``users``, ``keys`` and ``cleanup`` commands to the ``nesydet`` parser."""
    users = sub.add_parser("users", help="accounts").add_subparsers(dest="action", required=True)
    create = users.add_parser("create", help="create an account")
    create.add_argument("name")
    create.add_argument("--role", choices=[r.value for r in Role], default=Role.USER.value)
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create.set_defaults(func=_users_create)
    users.add_parser("list", help="list the accounts").set_defaults(func=_users_list)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    kc = keys.add_parser("create", help="make an API key; the key is printed alone, last")
    kc.add_argument("--user", required=True, help="the account's name")
    kc.add_argument("--label", default="")
    kc.add_argument("--expires-in-days", type=float, default=None)
    kc.set_defaults(func=_keys_create)
    kl = keys.add_parser("list", help="one key a line, its id first (never the secret)")
    kl.add_argument("--user", default=None, help="only this account's keys")
    kl.set_defaults(func=_keys_list)
    kr = keys.add_parser("revoke", help="revoke a key")
    kr.add_argument("key_id")
    kr.set_defaults(func=_keys_revoke)

    clean = sub.add_parser("cleanup", help="delete uploads unused for the retention period")
    clean.add_argument(
        "--older-than", type=duration, default=None, help="7d, 12h, 30s (default: retention)"
    )
    clean.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    clean.set_defaults(func=_cleanup)
