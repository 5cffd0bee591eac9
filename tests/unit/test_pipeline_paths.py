"""Model and rules file names are confined to their directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nesydet.pipeline import ModelLoadError, Pipeline, RulesError
from nesydet.pipeline.detector import Detector
from nesydet.pipeline.paths import UnsafePathError, resolve_in_dir
from nesydet.pipeline.reasoning.engine import PrologReasoner
from tests.pipeline_fixtures import FakeDetector


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    models, rules, outside = tmp_path / "models", tmp_path / "rules", tmp_path / "outside"
    for d in (models, rules, outside):
        d.mkdir()
    (models / "ok.pt").write_bytes(b"x" * 100)
    (models / "sub").mkdir()
    (models / "sub" / "nested.onnx").write_bytes(b"x" * 100)
    (rules / "ok.pl").write_text("decide(_, keep, 1.0, x, []).\n")
    (outside / "evil.pt").write_bytes(b"x" * 100)
    (outside / "evil.pl").write_text("x.\n")
    os.symlink(outside / "evil.pt", models / "link.pt")
    os.symlink(outside / "evil.pl", rules / "link.pl")
    os.symlink(outside, models / "linkdir")
    os.symlink(models / "ok.pt", models / "inside_link.pt")
    return models, rules, outside


ESCAPES = [
    "../outside/evil.pt",
    "sub/../../outside/evil.pt",
    "/etc/passwd.pt",
    "link.pt",
    "linkdir/evil.pt",
    "~/x.pt",
    "ok.pt\x00.pl",
    "sub\\..\\..\\outside\\evil.pt",
    "",
    "missing.pt",
    "sub",
    "ok.txt",
    "./",
]


@pytest.mark.parametrize("name", ESCAPES)
def test_model_names_escaping_are_rejected(dirs: tuple[Path, Path, Path], name: str) -> None:
    models, _, _ = dirs
    with pytest.raises(UnsafePathError):
        resolve_in_dir(models, name, (".pt", ".onnx"))
    loaded: list[Path] = []

    def factory(path: Path, device: str) -> Detector:
        loaded.append(path)
        return FakeDetector()

    pipe = Pipeline(models, dirs[1], default_model="ok.pt", detector_factory=factory)
    with pytest.raises(ModelLoadError):
        pipe.detector(name or "../x.pt")
    assert loaded == []  # nothing outside models_dir was ever opened


def test_allowed_names(dirs: tuple[Path, Path, Path]) -> None:
    models, _, _ = dirs
    assert resolve_in_dir(models, "ok.pt", (".pt",)) == (models / "ok.pt").resolve()
    assert resolve_in_dir(models, "sub/nested.onnx", (".onnx",)).name == "nested.onnx"
    assert resolve_in_dir(models, "./ok.pt", (".pt",)).name == "ok.pt"
    # a symlink that stays inside the directory is fine
    assert resolve_in_dir(models, "inside_link.pt", (".pt",)) == (models / "ok.pt").resolve()


@pytest.mark.parametrize(
    "name", ["../outside/evil.pl", "/etc/passwd", "link.pl", "ok.pt", "nope.pl", "a/../../b.pl"]
)
def test_rules_names_escaping_are_rejected(dirs: tuple[Path, Path, Path], name: str) -> None:
    _, rules, _ = dirs
    reasoner = PrologReasoner(rules)  # resolve() never starts Prolog
    with pytest.raises(RulesError):
        reasoner.resolve(name)
    assert reasoner.resolve("ok.pl").name == "ok.pl"


def test_model_cache_reuses_detector(dirs: tuple[Path, Path, Path]) -> None:
    models, rules, _ = dirs
    made: list[Path] = []

    def factory(path: Path, device: str) -> Detector:
        made.append(path)
        return FakeDetector()

    pipe = Pipeline(models, rules, default_model="ok.pt", detector_factory=factory)
    a = pipe.detector()
    b = pipe.detector("ok.pt")
    c = pipe.detector("inside_link.pt")  # same resolved file
    assert a is b
    assert b is c
    assert len(made) == 1
    assert pipe.model_name() == "ok"
    assert pipe.model_name("sub/nested.onnx") == "nested"
