"""``nesydet submit``'s pieces on their own: which files it sends, the bodies it streams, how
it reads the event stream and the API's errors, and its progress lines. Talking to a server
is exercised live in ``tests/integration/test_submit.py`` (the chunked path with
``--chunked``), never against a stand-in server.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import socket
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from nesydet.submit import inputs, progress
from nesydet.submit.errors import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, SubmitError
from nesydet.submit.follow import sse_events
from nesydet.submit.inputs import Part
from nesydet.submit.transport import Server, check_url, refusal


def _tree(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())


def test_a_directory_gives_its_images_by_relative_path_and_skips_the_rest(tmp_path: Path) -> None:
    names = ["b/two.PNG", "a/one.jpg", "notes.txt", ".hidden.png", ".git/x.png"]
    _tree(tmp_path / "d", [*names, "__MACOSX/a/._one.jpg", "Thumbs.db", "c/three.tiff"])
    single = tmp_path / "extra.dat"
    single.write_bytes(b"x")
    selection = inputs.collect([tmp_path / "d", single])
    assert [i.name for i in selection.images] == ["a/one.jpg", "b/two.PNG", "c/three.tiff",
                                                  "extra.dat"]  # fmt: skip
    assert selection.left_out == 1  # notes.txt; hidden and system files are not counted
    assert selection.images[0].size == len(b"a/one.jpg")


def test_two_images_with_one_name_are_refused_before_anything_is_sent(tmp_path: Path) -> None:
    _tree(tmp_path, ["x/A.png", "y/a.png"])
    with pytest.raises(SubmitError) as caught:
        inputs.collect([tmp_path / "x", tmp_path / "y"])
    assert caught.value.code == "DUPLICATE_FILE"
    assert caught.value.exit_status == EXIT_USAGE


@pytest.mark.parametrize(
    ("given", "code"),
    [(["missing"], "FILE_ERROR"), (["empty"], "NO_FILES")],
)
def test_nothing_to_send_is_a_usage_error(tmp_path: Path, given: list[str], code: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SubmitError) as caught:
        inputs.collect([tmp_path / g for g in given])
    assert (caught.value.code, caught.value.exit_status) == (code, EXIT_USAGE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, {}), ('{"confidence_threshold": 0.3}', {"confidence_threshold": 0.3})],
)
def test_config_is_a_json_object(text: str | None, expected: dict[str, Any]) -> None:
    assert inputs.parse_config(text) == expected


@pytest.mark.parametrize("text", ["[1]", "{nope", "@/nonexistent/config.json"])
def test_a_bad_config_is_refused_with_the_servers_code(text: str) -> None:
    with pytest.raises(SubmitError) as caught:
        inputs.parse_config(text)
    assert caught.value.code in {"INVALID_CONFIG", "FILE_ERROR"}
    assert caught.value.exit_status == EXIT_USAGE


def test_a_config_file(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"sahi": {"enabled": false}}')
    assert inputs.parse_config(f"@{tmp_path / 'c.json'}") == {"sahi": {"enabled": False}}


def _parts(body: inputs.Body) -> dict[str, tuple[str | None, bytes]]:
    raw = b"".join(body.chunks())
    head = f"Content-Type: {body.content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    found: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str)
        assert isinstance(payload, bytes)
        found[name] = (part.get_filename(), payload)
    return found


def test_the_batch_body_is_a_form_with_the_config_and_a_zip_of_the_images(tmp_path: Path) -> None:
    _tree(tmp_path, ["site/a.png", "site/sub/b.jpg", 'odd "name".png'])
    images = inputs.collect([tmp_path]).images
    size, stream = inputs.archive(images)
    sent: list[int] = []
    body = inputs.multipart(
        [
            Part("config", b'{"a": 1}'),
            Part("archive", (size, stream), "images.zip", "application/zip"),
        ],
        sent.append,
    )
    parts = _parts(body)
    assert sum(sent) == body.length  # the progress bar ends at exactly 100%
    assert parts["config"] == (None, b'{"a": 1}')
    filename, archive = parts["archive"]
    assert filename == "images.zip"
    assert len(archive) == size
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.testzip() is None
        assert {n: zf.read(n) for n in zf.namelist()} == {i.name: i.name.encode() for i in images}


def test_the_length_announced_is_the_length_sent(tmp_path: Path) -> None:
    _tree(tmp_path, ["a.png", "b.tif"])
    images = inputs.collect([tmp_path]).images
    body = inputs.multipart([inputs.image_part(i) for i in images], lambda _n: None)
    assert len(b"".join(body.chunks())) == body.length
    assert [f for f, _ in _parts(body).values()] == ["b.tif"]  # one field name, kept last
    assert inputs.chunks_of(images * 3, 4) == [images * 2, images]


def test_server_sent_events_are_split_into_events() -> None:
    text = (
        'retry: 2000\n\nid: 1\nevent: status\ndata: {"a": 1}\n\n: keep-alive\n\n'
        'event: status\ndata: {"b":\ndata: 2}\n\ndata: plain\n\n'
    )
    assert list(sse_events(text.split("\n"))) == [
        ("status", '{"a": 1}'),
        ("status", '{"b":\n2}'),
        ("message", "plain"),
    ]


def _response(status: int, body: Any) -> httpx.Response:
    request = httpx.Request("POST", "http://api.test/api/v1/inference/batch")
    if isinstance(body, str):
        return httpx.Response(status, text=body, request=request)
    return httpx.Response(status, json=body, request=request)


def test_the_apis_error_envelope_gives_its_code_message_and_each_failure() -> None:
    envelope = {
        "status": "error", "message": "2 of 3 files failed validation",
        "error_code": "VALIDATION_ERROR", "details": "a.txt: INVALID_FORMAT",
        "errors": [{"filename": "a.txt", "error_code": "INVALID_FORMAT", "error": "not an image"},
                   {"field": "config.x", "error": "Extra inputs are not permitted"}],
        "error": {"code": "VALIDATION_ERROR", "message": "2 of 3 files failed validation"},
    }  # fmt: skip
    error = refusal(_response(400, envelope))
    assert error.render() == (
        "VALIDATION_ERROR: 2 of 3 files failed validation\n"
        "  a.txt: INVALID_FORMAT: not an image\n"
        "  config.x: Extra inputs are not permitted"
    )
    assert error.exit_status == EXIT_FAILED
    plain = {"error": {"code": "JOB_NOT_FOUND", "message": "Job not found", "details": "job_x"}}
    assert refusal(_response(404, plain)).render() == "JOB_NOT_FOUND: Job not found: job_x"


def test_an_answer_that_is_not_the_apis_says_so() -> None:
    error = refusal(_response(502, "<html>Bad Gateway</html>"))
    assert error.code == "SERVICE_UNAVAILABLE"
    assert "is it a nesydet API?" in error.message


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://host/", "http://", "just words"])
def test_a_server_that_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(SubmitError) as caught:
        check_url(url)
    assert (caught.value.code, caught.value.exit_status) == ("VALIDATION_ERROR", EXIT_USAGE)


def test_a_server_that_does_not_answer_is_unreachable() -> None:
    with socket.socket() as probe:  # a port nothing listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Server(f"http://127.0.0.1:{port}/")
    with pytest.raises(SubmitError) as caught:
        server.request("GET", "/healthz")
    assert caught.value.code == "SERVICE_UNAVAILABLE"
    assert caught.value.exit_status == EXIT_UNREACHABLE
    assert f"http://127.0.0.1:{port}: " in caught.value.message


def test_plain_progress_lines_come_at_each_tenth(capsys: pytest.CaptureFixture[str]) -> None:
    bar = progress.bar("upload", 1000, "B")
    for _ in range(20):
        bar.advance(50)
    bar.close("sent")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "upload: 5% (50 B of 1000 B)"
    assert lines[-2:] == [
        "upload: 100% (1000 B of 1000 B)",
        "upload: 100% (1000 B of 1000 B), sent",
    ]
    assert len(lines) == 12
    job = progress.bar("job_x", 3, "images")
    job.show(0, "queued")
    job.show(2, "processing")
    job.close()
    assert capsys.readouterr().err.splitlines() == [
        "job_x: 0% (0/3 images), queued",
        "job_x: 66% (2/3 images), processing",
    ]
