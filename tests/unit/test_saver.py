"""The worker's background saver: order, errors, and the saving thread's priority."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from nesydet.services.processing.saver import BackgroundSaver


def _saver(nice: int = 0) -> BackgroundSaver:
    return BackgroundSaver(nice=nice)


@pytest.fixture
def saver() -> Iterator[BackgroundSaver]:
    s = _saver()
    yield s
    s.close()


def test_saves_run_one_at_a_time_in_order(saver: BackgroundSaver) -> None:
    done: list[int] = []
    running = threading.Lock()

    def save(n: int) -> None:
        assert running.acquire(blocking=False), "two saves ran at once"
        time.sleep(0.01)
        done.append(n)
        running.release()

    for n in range(5):
        saver.submit(lambda n=n: save(n))  # type: ignore[misc]
    saver.wait()
    assert done == [0, 1, 2, 3, 4]


def test_a_failed_save_is_raised_at_the_next_hand_over(saver: BackgroundSaver) -> None:
    def fail() -> None:
        raise RuntimeError("disk full")

    saver.submit(fail)
    with pytest.raises(RuntimeError, match="disk full"):
        saver.submit(lambda: None)
    saver.wait()  # the failure was reported once; nothing is pending now


def test_drain_logs_a_failure_instead_of_raising(
    saver: BackgroundSaver, caplog: pytest.LogCaptureFixture
) -> None:
    def fail() -> None:
        raise RuntimeError("lost connection")

    saver.submit(fail)
    with caplog.at_level(logging.INFO, logger="nesydet.services.processing.saver"):
        saver.drain()
    assert "a pending save did not complete" in caplog.text


@pytest.mark.skipif(sys.platform != "linux", reason="niceness is per thread on Linux only")
def test_the_saving_thread_runs_at_a_lower_priority_and_its_threads_inherit_it() -> None:
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    saver = _saver(nice=5)
    seen: dict[str, int] = {}

    def child() -> None:
        seen["child"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def save() -> None:
        seen["saver"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        started = threading.Thread(target=child)
        started.start()
        started.join()

    try:
        saver.submit(save)
        saver.wait()
    finally:
        saver.close()
    assert seen == {"saver": min(19, own + 5), "child": min(19, own + 5)}
    # Only that thread: the caller's priority is unchanged.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own


def _own_priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_no_nice_leaves_the_priority_alone() -> None:
    own = _own_priority()
    saver = _saver(nice=0)
    seen: list[int] = []
    try:
        saver.submit(lambda: seen.append(_own_priority()))
        saver.wait()
    finally:
        saver.close()
    assert seen == [own]
