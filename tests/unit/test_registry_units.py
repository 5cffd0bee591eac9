"""The registry's pure parts: references, version numbers, the routing pick, the loaded
model cache, name resolution over several folders, fetched files and job configs."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from nesydet.asset_names import Ref, next_version, parse_ref, pick_version, storage_key
from nesydet.pipeline.model_cache import ModelCache
from nesydet.pipeline.paths import UnsafePathError, resolve_in_dirs
from nesydet.services.registry.files import AssetFetchError, AssetFiles, pipeline_dict
from nesydet.storage.local import LocalStorage

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("roads", Ref("roads", None)),
        ("roads@3", Ref("roads", "3")),
        ("nesydet-demo-obb@2026.11-rc1", Ref("nesydet-demo-obb", "2026.11-rc1")),
        ("Roads", None),
        ("roads@", None),
        ("roads@a/b", None),
        ("../x", None),
        ("a@b@c", None),
    ],
)
def test_references_parse(text: str, ref: Ref | None) -> None:
    assert parse_ref(text) == ref


def test_the_next_version_is_one_more_than_the_largest_number() -> None:
    assert next_version([]) == "1"
    assert next_version(["1", "2", "beta", "10"]) == "11"


def test_files_are_stored_by_content() -> None:
    assert storage_key("model", "ab" * 32, ".pt") == f"registry/model/{'ab' * 32}.pt"


def test_the_routing_pick_is_deterministic_and_follows_the_weights() -> None:
    ids = [f"job_{i:012x}" for i in range(4000)]
    first = [pick_version({"3": 90, "4": 10}, i) for i in ids]
    assert first == [pick_version({"4": 10, "3": 90}, i) for i in ids]  # order of keys: none
    share = Counter(first)["4"] / len(ids)
    assert 0.08 < share < 0.12
    assert {pick_version({"3": 0, "4": 5}, i) for i in ids[:50]} == {"4"}
    with pytest.raises(ValueError, match="positive"):
        pick_version({"3": 0}, "job_x")


class Memory:
    """A process whose memory grows by a set amount per load."""

    def __init__(self) -> None:
        self.rss = 0

    def __call__(self) -> int:
        return self.rss


def test_the_model_cache_evicts_the_least_recently_used(tmp_path: Path) -> None:
    memory = Memory()
    cache: ModelCache[str] = ModelCache(250, measure=memory)
    paths = []
    for name in "abc":
        path = tmp_path / f"{name}.pt"
        path.write_bytes(b"w")
        paths.append(path)

    def load(path: Path) -> str:
        memory.rss += 100 * MiB
        return path.stem

    assert cache.get(paths[0], load) == "a"
    assert cache.get(paths[1], load) == "b"
    assert cache.get(paths[0], load) == "a"  # a is now the most recent
    assert cache.get(paths[2], load) == "c"  # 300 MiB > 250: b goes
    assert [name for name, _ in cache.loaded()] == ["a.pt", "c.pt"]
    assert cache.evictions == 1
    assert paths[1] not in cache


def test_a_model_alone_over_the_bound_stays_loaded(tmp_path: Path) -> None:
    memory = Memory()
    cache: ModelCache[int] = ModelCache(10, measure=memory)
    path = tmp_path / "big.onnx"
    path.write_bytes(b"w" * 100)

    def load(_path: Path) -> int:
        memory.rss += 50 * MiB
        return 1

    assert cache.get(path, load) == 1
    assert cache.total() == 50 * MiB


def test_names_resolve_in_the_first_folder_that_has_them(tmp_path: Path) -> None:
    first, second = tmp_path / "models", tmp_path / "fetched"
    first.mkdir()
    second.mkdir()
    (first / "a.pt").write_bytes(b"1")
    (second / "a.pt").write_bytes(b"2")
    (second / "b.pt").write_bytes(b"3")
    assert resolve_in_dirs([first, second], "a.pt", [".pt"]) == (first / "a.pt").resolve()
    assert resolve_in_dirs([first, second], "b.pt", [".pt"]) == (second / "b.pt").resolve()
    with pytest.raises(UnsafePathError):
        resolve_in_dirs([first, second], "../models/a.pt", [".pt"])


def fetched(tmp_path: Path, content: bytes) -> tuple[AssetFiles, dict[str, Any]]:
    storage = LocalStorage(tmp_path / "storage")
    sha = hashlib.sha256(content).hexdigest()
    key = storage_key("model", sha, ".pt")
    storage.put_bytes(key, content)
    ref = {"name": "roads", "version": "1", "sha256": sha, "storage_key": key, "format": "pt",
           "task": "obb"}  # fmt: skip
    return AssetFiles(storage, tmp_path / "assets"), ref


def test_a_registered_file_is_fetched_once_and_checked(tmp_path: Path) -> None:
    files, ref = fetched(tmp_path, b"weights")
    name = files.fetch("model", ref)
    assert name == f"{ref['sha256']}-obb.pt"
    assert (files.folder("model") / name).read_bytes() == b"weights"
    config = {"model": "roads@1", "model_path": None, "symbolic_reasoning": {"enabled": True,
              "rules_file": "dota.pl", "rules": None}}  # fmt: skip
    out = pipeline_dict(config, ref, None, files)
    assert out == {"model_path": name, "symbolic_reasoning": {"enabled": True,
                   "rules_file": "dota.pl"}}  # fmt: skip


def test_a_file_whose_content_changed_in_storage_is_refused(tmp_path: Path) -> None:
    files, ref = fetched(tmp_path, b"weights")
    files.storage.put_bytes(ref["storage_key"], b"tampered")
    with pytest.raises(AssetFetchError, match="sha256"):
        files.fetch("model", ref)
    assert list(files.folder("model").iterdir()) == []
