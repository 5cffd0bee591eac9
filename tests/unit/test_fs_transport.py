"""The embedded broker's filesystem transport: a consumer never reads half a message."""

from __future__ import annotations

from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection
from kombu.utils.json import dumps

import nesydet.fs_transport as fs

URL = "filesystem://localhost/"


def test_a_message_being_written_is_invisible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every folder under tmp_path: kombu's default control folder is ./control
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "control_folder": str(tmp_path / "control"),
    }
    seen: list[object] = []
    with (
        Connection(URL, transport="nesydet.fs_transport:Transport", transport_options=options) as a,
        Connection(URL, transport="nesydet.fs_transport:Transport", transport_options=options) as b,
    ):
        consumer = b.default_channel

        def poll_then_dump(payload: Any) -> str:
            # a consumer polls at the worst moment: the file is open, nothing written yet
            # (kombu's own transport hands it an empty file here: JSONDecodeError)
            try:
                seen.append(consumer._get("q"))
            except Empty:
                seen.append("empty")
            return dumps(payload)

        monkeypatch.setattr(fs, "dumps", poll_then_dump)
        a.default_channel._put("q", {"n": 1})
        assert seen == ["empty"]
        assert consumer._get("q") == {"n": 1}  # whole once renamed
    assert not list(tmp_path.glob(f"*{fs.PARTIAL}"))
