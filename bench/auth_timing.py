"""Does the time of a refused credential tell whether it exists? Prints medians and ratios.

1. API keys: keys that never existed against keys that exist but are revoked, each tried
   once (no process cache helps either), alternating, 300 of each.
2. Passwords: an unknown user name against a known user with a wrong password, 40 of each.

A ratio near 1.0 means an attacker learns nothing from timing. Runs the app in process on a
fresh SQLite database.

    .venv/bin/python -m bench.auth_timing
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

from nesydet.api.app import create_app
from nesydet.cli import migrate
from nesydet.config import Settings
from nesydet.domain import Role
from nesydet.services import accounts
from nesydet.services.auth import new_api_key

KEYS = 300
LOGINS = 40


async def timed(client: httpx.AsyncClient, **request: object) -> float:
    started = time.perf_counter()
    response = await client.request(**request)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    assert response.status_code == 401, response.text
    return elapsed


def bench_settings(root: Path) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{root / 'db.sqlite'}",
        var_dir=root / "var",
        storage_root=root / "storage",
        auth_mode="required",
        jwt_secret=SecretStr("bench-" + "z" * 40),
        rate_limit=None,
        metrics_dir=None,
        sweeper_interval_s=0,
    )


async def run(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        revoked: list[str] = []
        async with app.state.sessionmaker() as session:
            user = await accounts.create_user(
                session=session, name="ana", role=Role.USER, password="a long password"
            )
            for _ in range(KEYS):
                made = await accounts.create_key(
                    session=session, user_id=user.id, label="", expires_in_days=None
                )
                await accounts.revoke_key(session=session, principal=None, key_id=made.row.id)
                revoked.append(made.key)
            await session.commit()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            unknown_t, revoked_t = [], []
            for key in revoked:
                unknown_t.append(await timed(client, method="GET", url="/api/v1/auth/me",
                                             headers={"X-API-Key": new_api_key()[0]}))  # fmt: skip
                revoked_t.append(await timed(client, method="GET", url="/api/v1/auth/me",
                                             headers={"X-API-Key": key}))  # fmt: skip
            nobody_t, wrong_t = [], []
            for _ in range(LOGINS):
                form = {"username": "nobody", "password": "whatever it is"}
                nobody_t.append(await timed(client, method="POST", url="/api/v1/auth/token",
                                            data=form))  # fmt: skip
                form = {"username": "ana", "password": "whatever it is"}
                wrong_t.append(await timed(client, method="POST", url="/api/v1/auth/token",
                                           data=form))  # fmt: skip
    report("API key never existed", unknown_t, "API key revoked", revoked_t)
    report("unknown user name", nobody_t, "known user, wrong password", wrong_t)


def report(a_name: str, a: list[float], b_name: str, b: list[float]) -> None:
    a_ms, b_ms = statistics.median(a) * 1000, statistics.median(b) * 1000
    print(f"{a_name:<28} median {a_ms:8.3f} ms  ({len(a)} tries)")
    print(f"{b_name:<28} median {b_ms:8.3f} ms  ({len(b)} tries)")
    print(f"ratio {b_ms / a_ms:.3f} (1.0: the time tells nothing)\n")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="nesydet-auth-timing-") as tmp:
        settings = bench_settings(Path(tmp))
        migrate(settings)
        asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
