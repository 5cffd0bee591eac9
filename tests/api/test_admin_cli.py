"""``nesydet users`` and ``nesydet keys``: the first admin and scripts' keys from the shell."""

from __future__ import annotations

import os
import subprocess
import sys

from nesydet.config import Settings
from tests.api.conftest import AuthApp


def nesydet(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NESYDET_DATABASE_URL": settings.database_url,
        "NESYDET_VAR_DIR": str(settings.var_dir),
        "NESYDET_METRICS_DIR": "",
    }
    return subprocess.run(
        [sys.executable, "-m", "nesydet.cli", *args], input=stdin, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def test_the_first_admin_and_a_scripts_key_from_the_shell(
    auth_app: AuthApp, auth_settings: Settings
) -> None:
    made = nesydet(
        auth_settings, "users", "create", "root", "--role", "admin", "--password-stdin",
        stdin="a long admin password\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "created user root" in made.stdout
    token = await auth_app.client.post(
        "/api/v1/auth/token", data={"username": "root", "password": "a long admin password"}
    )
    assert token.status_code == 200
    scripted = nesydet(
        auth_settings, "users", "create", "nightly", "--role", "user"
    )  # a script's account: keys only, no password
    assert scripted.returncode == 0, scripted.stderr
    created = nesydet(
        auth_settings, "keys", "create", "--user", "nightly", "--label", "batch",
        "--expires-in-days", "30",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]  # the key alone on the last line
    assert key.startswith("nsd_")
    me = await auth_app.client.get("/api/v1/auth/me", headers={"X-API-Key": key})
    assert me.json()["data"]["name"] == "nightly"
    listed = nesydet(auth_settings, "keys", "list")
    [line] = [row for row in listed.stdout.splitlines() if "nightly" in row]
    key_id = line.split("\t")[0]
    assert key_id.startswith("key_")
    assert key not in listed.stdout, "the secret is never listed"
    revoked = nesydet(auth_settings, "keys", "revoke", key_id)
    assert revoked.returncode == 0
    auth_app.app.state.authenticator.forget()  # another process revoked it: no cache wait
    gone = await auth_app.client.get("/api/v1/auth/me", headers={"X-API-Key": key})
    assert gone.status_code == 401


def test_failures_print_the_api_error_code(auth_settings: Settings) -> None:
    first = nesydet(auth_settings, "users", "create", "dup")
    assert first.returncode == 0
    again = nesydet(auth_settings, "users", "create", "dup")
    assert again.returncode == 1
    assert again.stderr.startswith("USER_EXISTS: ")
    missing = nesydet(auth_settings, "keys", "create", "--user", "nobody")
    assert missing.returncode == 1
    assert missing.stderr.startswith("USER_NOT_FOUND: ")
    short = nesydet(auth_settings, "users", "create", "x1y", "--password-stdin", stdin="short\n")
    assert short.stderr.startswith("VALIDATION_ERROR: ")


def test_keys_list_has_one_key_a_line(auth_settings: Settings) -> None:
    nesydet(auth_settings, "users", "create", "ana")
    for label in ("one", "two"):
        assert (
            nesydet(auth_settings, "keys", "create", "--user", "ana", "--label", label).returncode
            == 0
        )
    lines = nesydet(auth_settings, "keys", "list", "--user", "ana").stdout.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("key_") for line in lines)
