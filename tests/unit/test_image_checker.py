"""The image checker's child processes: a hung or crashed child costs only its own file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from nesydet.api.app import create_app
from nesydet.config import Settings
from nesydet.services.image_checker import ImageChecker
from nesydet.services.image_inspect import ImageInfo, ImageProblem
from tests import images
from tests.api.test_uploads import assert_envelope, post, staging_leftovers
from tests.checker_faults import CRASH, HANG, faulty_inspect, pid_file

pytestmark = pytest.mark.timeout(60)

TIMEOUT_S = 2.0
TIMED_OUT = ImageProblem(
    "CORRUPTED_FILE", "Image could not be decoded", "decoding took longer than 2 s"
)
CRASHED = ImageProblem(
    "CORRUPTED_FILE", "Image could not be decoded", "the decoder crashed on this file"
)
JPEG_INFO = ImageInfo(format="JPEG", width=320, height=240, mode="RGB", page_count=1)
PNG_INFO = ImageInfo(format="PNG", width=200, height=100, mode="RGB", page_count=1)
# How long to wait for something that happens in a few seconds when all is well.
DEADLINE_S = 20.0

MakeChecker = Callable[[int], ImageChecker]


@pytest.fixture
def make_checker() -> Iterator[MakeChecker]:
    """Return a factory of checkers that run ``faulty_inspect``; they are closed afterwards."""
    made: list[ImageChecker] = []
    defaults = Settings()

    def make(workers: int) -> ImageChecker:
        checker = ImageChecker(
            workers=workers,
            memory_limit_bytes=defaults.image_check_memory_limit_bytes,
            timeout_s=TIMEOUT_S,
            min_dim=defaults.min_image_dimension,
            max_dim=defaults.max_image_dimension,
            inspect=faulty_inspect,
        )
        made.append(checker)
        return checker

    yield make
    for checker in made:
        checker.close()


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def hanging(directory: Path, name: str = "hang.png") -> Path:
    return write(directory, name, images.png(64, 64) + HANG)


def crashing(directory: Path, name: str = "crash.png") -> Path:
    return write(directory, name, images.png(64, 64) + CRASH)


def good_jpeg(directory: Path, name: str = "photo.jpg") -> Path:
    return write(directory, name, images.jpeg(320, 240))


def good_png(directory: Path, name: str = "scene.png") -> Path:
    return write(directory, name, images.png(200, 100))


async def child_pid(find: Callable[[], list[Path]]) -> int:
    """Return the pid a faulty child wrote, once it has written it."""
    deadline = time.monotonic() + DEADLINE_S
    while not (found := find()):
        if time.monotonic() > deadline:
            pytest.fail("the faulty check never started")
        await asyncio.sleep(0.05)
    return int(found[0].read_text())


async def gone(pid: int) -> bool:
    """Return whether the process ``pid`` is gone, waiting for it up to the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while psutil.pid_exists(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.mark.parametrize(
    "workers",
    [
        pytest.param(2, id="a-free-child-runs-the-others"),
        # The only child is stuck: the others wait for its replacement, their timeout not begun.
        pytest.param(1, id="the-others-wait-for-the-replacement"),
    ],
)
async def test_hung_check_is_killed_while_concurrent_checks_finish(
    make_checker: MakeChecker, tmp_path: Path, workers: int
) -> None:
    checker = make_checker(workers)
    await checker.start()
    hang = hanging(tmp_path)
    hung = asyncio.create_task(checker.check(hang, "PNG"))
    pid = await child_pid(lambda: [p for p in [pid_file(hang)] if p.exists()])

    results = await asyncio.gather(
        hung,
        checker.check(good_jpeg(tmp_path), "JPEG"),
        checker.check(good_png(tmp_path), "PNG"),
    )

    assert list(results) == [TIMED_OUT, JPEG_INFO, PNG_INFO]
    # The stuck child ignores SIGTERM, as one stuck in C code does: it was killed all the same.
    assert not psutil.pid_exists(pid)
    assert await checker.check(good_jpeg(tmp_path, "again.jpg"), "JPEG") == JPEG_INFO


async def test_crashing_check_fails_alone_and_the_pool_recovers(
    make_checker: MakeChecker, tmp_path: Path
) -> None:
    checker = make_checker(1)
    await checker.start()
    crash = crashing(tmp_path)

    results = await asyncio.gather(
        checker.check(crash, "PNG"),
        checker.check(good_jpeg(tmp_path), "JPEG"),
        checker.check(good_png(tmp_path), "PNG"),
    )

    assert list(results) == [CRASHED, JPEG_INFO, PNG_INFO]
    assert not psutil.pid_exists(int(pid_file(crash).read_text()))
    assert await checker.check(good_jpeg(tmp_path, "again.jpg"), "JPEG") == JPEG_INFO


async def test_cancelling_a_check_stops_only_that_check(
    make_checker: MakeChecker, tmp_path: Path
) -> None:
    checker = make_checker(2)
    await checker.start()
    hang = hanging(tmp_path)
    hung = asyncio.create_task(checker.check(hang, "PNG"))
    pid = await child_pid(lambda: [p for p in [pid_file(hang)] if p.exists()])
    other = asyncio.create_task(checker.check(good_png(tmp_path), "PNG"))

    hung.cancel()  # its client went away

    with pytest.raises(asyncio.CancelledError):
        await hung
    assert await other == PNG_INFO
    assert await gone(pid), "the cancelled check's child is still running"
    assert await checker.check(good_jpeg(tmp_path), "JPEG") == JPEG_INFO


async def test_upload_with_a_hanging_file_fails_alone(
    make_checker: MakeChecker, settings: Settings
) -> None:
    # One child: the other upload's file waits behind the stuck one.
    checker = make_checker(1)
    app = create_app(settings, checker=checker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            stuck = asyncio.create_task(
                post(
                    http,
                    ("stuck.png", images.png(64, 64) + HANG),
                    ("fine.jpg", images.jpeg(320, 240)),
                )
            )
            pid = await child_pid(lambda: sorted(settings.staging_dir.glob("*/*.pid")))
            other = asyncio.create_task(post(http, ("other.png", images.png(200, 100))))
            rejected, accepted = await asyncio.gather(stuck, other)

    assert rejected.status_code == 400, rejected.text
    body = rejected.json()
    assert_envelope(body, "CORRUPTED_FILE")
    assert body["errors"] == [
        {
            "filename": "stuck.png",
            "index": 0,
            "error_code": "CORRUPTED_FILE",
            "error": "Image could not be decoded",
            "details": "decoding took longer than 2 s",
        }
    ]
    assert accepted.status_code == 200, accepted.text
    [item] = accepted.json()["data"]["uploaded_files"]
    assert item["filename"] == "other.png"
    assert not psutil.pid_exists(pid)
    assert staging_leftovers(settings) == []
