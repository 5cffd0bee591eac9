"""The worker process's runtime: what it does around the jobs it runs."""

from __future__ import annotations

import gc
from typing import Any, cast

import pytest

from nesydet.tasks.runtime import WorkerRuntime


def test_the_first_job_freezes_what_it_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(gc, "collect", lambda *_: calls.append("collect") or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    none = cast(Any, None)
    rt = WorkerRuntime(runner=none, heartbeat=none, beating=none, cache=none, engine=none, io=none)
    rt.after_job()
    rt.after_job()
    rt.after_job()
    # collected first (so no garbage is frozen for good), frozen once, never again
    assert calls == ["collect", "freeze"]
