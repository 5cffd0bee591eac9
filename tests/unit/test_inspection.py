"""An uploaded file is inspected in a child process with time and memory limits: a pickle
that sleeps or eats memory is refused, and the service process is never at risk."""

from __future__ import annotations

import asyncio
import pickle
import time
from pathlib import Path

import pytest

from nesydet.errors_assets import InvalidModel
from nesydet.services.registry.inspection import inspect_file


class Sleeps:
    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (time.sleep, (600,))


class EatsMemory:
    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (bytearray, (64 * 1024**3,))


def test_a_model_that_runs_too_long_is_killed_and_refused(tmp_path: Path) -> None:
    path = tmp_path / "slow.pt"
    path.write_bytes(pickle.dumps(Sleeps()))
    started = time.monotonic()
    with pytest.raises(InvalidModel) as caught:
        asyncio.run(inspect_file("model", path, timeout_s=20, memory_mb=4096))
    assert "in time" in caught.value.message
    assert time.monotonic() - started < 60  # killed at the limit, not after the sleep


def test_a_model_that_wants_too_much_memory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "greedy.pt"
    path.write_bytes(pickle.dumps(EatsMemory()))
    with pytest.raises(InvalidModel) as caught:
        asyncio.run(inspect_file("model", path, timeout_s=120, memory_mb=4096))
    assert caught.value.details is not None
    assert "memory" in caught.value.details.lower() or "MemoryError" in caught.value.details
