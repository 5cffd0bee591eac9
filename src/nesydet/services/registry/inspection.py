"""Runs `nesydet.pipeline.inspect_asset` on an uploaded file in a capped child process.

The child gets an address-space limit (``NESYDET_INSPECT_MEMORY_MB``), a CPU-time limit, no
core dumps, an empty working directory, and is killed at ``NESYDET_INSPECT_TIMEOUT_S``. A
pickle that tries to eat the host's memory or loop forever is refused as not a model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nesydet.errors_assets import INVALID
from nesydet.pipeline.inspect_asset import MARKER
from nesydet.services.image_inspect import limit_memory

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 1024 * 1024  # the child's output kept: its result line and some log


def _limits(memory_mb: int, cpu_s: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child, between fork and exec
        limit_memory(memory_mb * 1024 * 1024)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()  # its own process group: a timeout kills what it started too

    return apply


async def inspect_file(
    kind: str, path: Path, *, timeout_s: float, memory_mb: int, device_env: bool = False
) -> dict[str, Any]:
    """Returns what the inspection read from the file (its JSON, without ``ok``).

    Raises:
        InvalidModel | InvalidRules: The file is not usable, or its inspection ran out of
            memory or time; the message says which.
    """
    invalid = INVALID[kind]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    if not device_env:
        env["CUDA_VISIBLE_DEVICES"] = ""  # inspection is CPU work; a GPU context costs memory
    with tempfile.TemporaryDirectory(prefix="nesydet-inspect-") as scratch:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "nesydet.pipeline.inspect_asset",
            kind,
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            cwd=scratch,
            env=env,
            preexec_fn=_limits(memory_mb, int(timeout_s) + 1),
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            _kill(proc.pid)
            await proc.wait()
            raise invalid(
                f"The {kind} file could not be inspected in time",
                details=f"its inspection ran past {timeout_s:g} s",
            ) from None
        except BaseException:  # cancelled (shutdown, client gone): the child goes too
            _kill(proc.pid)
            raise
    return _result(kind, out[-OUTPUT_LIMIT:].decode("utf-8", "replace"), proc.returncode)


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass


def _result(kind: str, output: str, returncode: int | None) -> dict[str, Any]:
    invalid = INVALID[kind]
    lines = [line for line in output.splitlines() if line.startswith(MARKER)]
    if not lines:
        tail = " ".join(output.strip().splitlines()[-3:])[-500:]
        memory = "MemoryError" in output or "std::bad_alloc" in output or returncode == -9
        log.warning("inspection failed", extra={"kind": kind, "rc": returncode, "tail": tail})
        raise invalid(
            f"The {kind} file could not be inspected",
            details="it needs more memory than NESYDET_INSPECT_MEMORY_MB allows"
            if memory
            else f"the inspection ended with status {returncode}: {tail}",
        )
    result: dict[str, Any] = json.loads(lines[-1][len(MARKER) :])
    if not result.pop("ok", False):
        raise invalid(f"The file is not a usable {kind} file", details=str(result.get("reason")))
    return result
