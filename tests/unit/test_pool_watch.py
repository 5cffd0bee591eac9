"""The worker's watch over its pool processes: failed starts counted, dead processes dropped,
and a worker that cannot bring up a pool process exits non-zero for its supervisor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nesydet.tasks.supervision import EXIT_CANNOT_START, PoolWatch


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def marker(folder: Path, pid: int, state: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{pid}.{state}").touch()


def test_processes_that_die_before_they_are_ready_are_counted_in_a_row(tmp_path: Path) -> None:
    gone: list[int] = []
    watch = PoolWatch(tmp_path, max_failed_starts=3, on_dead=gone.append)
    first, second = dead_pid(), dead_pid()
    marker(tmp_path, first, "starting")
    marker(tmp_path, second, "starting")
    marker(tmp_path, os.getpid(), "starting")  # alive, still starting: not a failure
    watch.check()
    assert watch.failed_in_a_row == 2
    assert sorted(gone) == sorted([first, second])
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{os.getpid()}.starting"]


def test_a_process_that_became_ready_resets_the_count(tmp_path: Path) -> None:
    watch = PoolWatch(tmp_path, max_failed_starts=3)
    marker(tmp_path, dead_pid(), "starting")
    watch.check()
    assert watch.failed_in_a_row == 1
    marker(tmp_path, os.getpid(), "ready")
    watch.check()
    assert watch.failed_in_a_row == 0


def test_a_ready_process_killed_later_is_dropped_but_is_no_failed_start(tmp_path: Path) -> None:
    gone: list[int] = []
    watch = PoolWatch(tmp_path, max_failed_starts=3, on_dead=gone.append)
    pid = dead_pid()
    marker(tmp_path, pid, "ready")
    watch.check()
    assert (watch.failed_in_a_row, gone) == (0, [pid])


def test_a_worker_whose_pool_processes_cannot_start_exits_with_status_3(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NESYDET_VAR_DIR": str(tmp_path / "var"),
        "NESYDET_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        "NESYDET_METRICS_DIR": "",
        # A plug-in that cannot be imported: every pool process dies while starting.
        "NESYDET_DETECTOR_FACTORY": "no_such_module:factory",
        "NESYDET_WORKER_MAX_FAILED_STARTS": "2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "nesydet.cli", "worker", "--concurrency", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == EXIT_CANNOT_START, done.stderr[-3000:]
    assert "cannot bring up its pool processes" in done.stderr
    assert "No module named 'no_such_module'" in done.stderr
