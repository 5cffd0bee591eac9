"""`nesydet rules test`: a rules file's effect on a labelled set (fake detector, real Prolog)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from nesydet.pipeline import Pipeline, PipelineConfig, ReasoningConfig, VisualizationConfig
from nesydet.pipeline.detector import Detector
from nesydet.pipeline.rules_cli import register
from nesydet.pipeline.rules_report import format_report, labelled_images, rules_report
from tests.pipeline_fixtures import FakeDetector, paint_blob, rotated_rect

# Drops every ship; a boost for planes; nothing else.
RULES = """
decide(Id, drop, C, K, [no_ships]) :- det(Id, K, C, _, _), K == ship, !.
decide(Id, keep, C1, K, [planes_welcome]) :- det(Id, K, C, _, _), K == plane, !,
    C1 is min(1.0, C + 0.05).
decide(Id, keep, C, K, []) :- det(Id, K, C, _, _).
"""


def labelled_set(root: Path) -> Path:
    """Two images: a true plane, a true ship and a false ship (background), YOLO-labelled."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    objs = [
        (0, 0.9, rotated_rect(100, 100, 60, 50, 0.3), True),  # plane
        (1, 0.8, rotated_rect(300, 300, 50, 14, 0.7), True),  # ship
        (1, 0.7, rotated_rect(200, 420, 50, 14, 0.0), False),  # a "ship" that is not there
    ]
    for k in range(2):
        img = Image.new("RGB", (500, 500), (90, 100, 80))
        lines = []
        for cls, score, corners, real in objs:
            paint_blob(img, cls, score, corners)
            if real:
                flat = " ".join(f"{x / 500:.6f} {y / 500:.6f}" for x, y in corners)
                lines.append(f"{cls} {flat}")
        img.save(root / "images" / f"s{k}.png")
        (root / "labels" / f"s{k}.txt").write_text("\n".join(lines) + "\n")
    return root


def pipeline(tmp_path: Path) -> Pipeline:
    (tmp_path / "fake.pt").write_bytes(b"fake model")
    (tmp_path / "mine.pl").write_text(RULES)
    fake = FakeDetector("obb")

    def factory(path: Path, device: str) -> Detector:
        return fake

    return Pipeline(tmp_path, tmp_path, default_model="fake.pt", detector_factory=factory)


def test_report_counts_each_rule_on_true_and_false_detections(tmp_path: Path) -> None:
    scenes = labelled_set(tmp_path / "set")
    report = rules_report(pipeline(tmp_path), "mine.pl", labelled_images(scenes))
    assert report.images == 2
    assert report.detections == 6
    ships = report.rules["no_ships"]
    assert (ships.fired, ships.fired_true, ships.dropped_true, ships.dropped_false) == (4, 2, 2, 2)
    planes = report.rules["planes_welcome"]
    assert (planes.fired, planes.fired_true, planes.dropped_true) == (2, 2, 0)
    assert report.without.precision == pytest.approx(4 / 6)
    assert report.with_rules.precision == pytest.approx(1.0)
    assert report.with_rules.recall == pytest.approx(0.5)
    text = format_report(report)
    assert "no_ships" in text
    assert "+33.33" in text  # precision, in points


def test_cli_reads_a_rules_file_by_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scenes = labelled_set(tmp_path / "set")
    pipeline(tmp_path)  # writes fake.pt and mine.pl
    fake = FakeDetector("obb")
    real_init = Pipeline.__init__

    def init(self: Pipeline, *args: Any, **kwargs: Any) -> None:
        kwargs["detector_factory"] = lambda path, device: fake
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "__init__", init)  # the model boundary only
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub, models_dir=tmp_path, rules_dir=tmp_path / "elsewhere", default_model="fake.pt")
    ns = parser.parse_args(["rules", "test", str(tmp_path / "mine.pl"), "--scenes", str(scenes)])
    assert ns.func(ns) == 0
    out = capsys.readouterr().out
    assert "no_ships" in out
    assert str(tmp_path / "mine.pl") in out


def test_cli_refuses_a_directory_without_labels(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub, models_dir=tmp_path, rules_dir=tmp_path, default_model="fake.pt")
    ns = parser.parse_args(["rules", "test", "dota.pl", "--scenes", str(tmp_path)])
    assert ns.func(ns) == 2


def test_traces_list_the_facts_the_rules_saw(tmp_path: Path) -> None:
    (tmp_path / "crowd.pl").write_text(
        "decide(Id, keep, C, K, [crowd]) :- det(Id, K, C, _, _), cluster(Id, N), N > 0, !.\n"
        "decide(Id, keep, C, K, []) :- det(Id, K, C, _, _).\n"
    )
    pipe = pipeline(tmp_path)
    img = Image.new("RGB", (400, 300), (90, 100, 80))
    for x in (100, 160):  # two planes side by side, one alone far away
        paint_blob(img, 0, 0.9, rotated_rect(x, 100, 40, 40, 0.0))
    paint_blob(img, 0, 0.9, rotated_rect(330, 250, 40, 40, 0.0))
    cfg = PipelineConfig(
        symbolic_reasoning=ReasoningConfig(rules_file="crowd.pl"),
        visualization=VisualizationConfig(enabled=False),
    )
    res = pipe.run(img, cfg)
    traces = sorted(
        (d.bbox[0], d.reasoning.rules_fired, d.reasoning.facts)
        for d in res.detections
        if d.reasoning is not None
    )
    assert [t[1] for t in traces] == [["crowd"], ["crowd"], []]
    assert any(f.startswith("cluster(") and f.endswith(",1)") for f in traces[0][2])
    assert not any(f.startswith("nearest(") for f in traces[0][2])  # never read: not sent
    assert traces[2][2] == []  # no rule fired: nothing to explain
    shown = [d.to_dict(400, 300)["reasoning"] for d in res.detections]
    assert sum("facts" in r for r in shown) == 2
