"""The real ultralytics adapter: the demo model's metadata, bad model files, CLI round trip."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nesydet.pipeline import ModelLoadError, Pipeline, PipelineConfig, SahiConfig
from nesydet.pipeline.cli import main as cli_main
from nesydet.pipeline.detector import UltralyticsDetector
from tests.pipeline_fixtures import DEMO_MODEL, RULES_DIR, demo_scenes_module, offline_env

DOTA = [
    *("plane", "ship", "storage_tank", "baseball_diamond", "tennis_court", "basketball_court"),
    *("ground_track_field", "harbor", "bridge", "large_vehicle", "small_vehicle", "helicopter"),
    *("roundabout", "soccer_ball_field", "swimming_pool"),
]


@pytest.fixture(scope="module", autouse=True)
def _offline() -> None:
    for k, v in offline_env().items():
        os.environ.setdefault(k, v)


@pytest.fixture(scope="module")
def detector() -> UltralyticsDetector:
    return UltralyticsDetector(DEMO_MODEL, "cpu")


def test_demo_model_metadata(detector: UltralyticsDetector) -> None:
    assert detector.task == "obb"
    assert [detector.names[i] for i in range(len(detector.names))] == DOTA
    assert detector.imgsz == 320
    assert DEMO_MODEL.stat().st_size < 10 * 1024 * 1024


def test_predict_batch_on_blank_and_noise(detector: UltralyticsDetector) -> None:
    blank = np.zeros((320, 320, 3), dtype=np.uint8)
    out = detector.predict_batch([blank, blank[:200, :256]], 0.25, iou=0.45, imgsz=320)
    assert len(out) == 2
    assert all(r.obb is not None for r in out)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.pt", b""),
        ("garbage.pt", os.urandom(4096)),
        ("zip.pt", b"PK\x03\x04" + b"\x00" * 200),
    ],
)
def test_bad_model_files(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    pipe = Pipeline(tmp_path, RULES_DIR, default_model=name, device="cpu")
    with pytest.raises(ModelLoadError) as err:
        pipe.run(Image.new("RGB", (64, 64)), PipelineConfig())
    assert err.value.code == "MODEL_LOAD_ERROR"


def test_not_a_yolo_checkpoint(tmp_path: Path) -> None:
    import torch

    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelLoadError):
        UltralyticsDetector(tmp_path / "other.pt", "cpu")


def test_missing_default_model(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path, RULES_DIR, default_model="nope.pt")
    with pytest.raises(ModelLoadError):
        pipe.warmup()


def test_cli_predict_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo_scenes_module()
    from demo_scenes import generate_scene

    scene = generate_scene(900, 700, (77, 1))
    images, gt = tmp_path / "images", tmp_path / "gt"
    images.mkdir()
    gt.mkdir()
    scene.image.save(images / "s1.png")
    scene.image.crop((0, 0, 500, 400)).save(images / "s2.jpg")
    (gt / "s1.txt").write_text(
        "".join(
            f"{o.cls} " + " ".join(f"{v:.6f}" for v in (o.corners / [900, 700]).reshape(-1)) + "\n"
            for o in scene.objects
        )
    )
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(DEMO_MODEL, models / DEMO_MODEL.name)
    base = ["--models-dir", str(models), "--rules-dir", str(RULES_DIR)]
    out = tmp_path / "out"
    assert cli_main([*base, "predict", str(images), "--out", str(out), "--format", "yolo_obb"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "s1.txt",
        "s1_annotated.jpg",
        "s2.txt",
        "s2_annotated.jpg",
    ]
    (out / "s2.txt").unlink()  # no ground truth for the crop
    capsys.readouterr()
    assert cli_main([*base, "eval", str(out), str(gt), "--names", ",".join(DOTA)]) == 0
    table = capsys.readouterr().out
    assert "small_vehicle" in table
    overall = re.search(r"^all\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", table, re.M)
    assert overall is not None, table
    assert float(overall.group(4)) > 0.3  # recall on this small scene

    for fmt, expected in (("coco", "coco.json"), ("voc", "s1.xml"), ("json", "s1.json")):
        dest = tmp_path / fmt
        code = cli_main(
            [
                *base,
                "predict",
                str(images / "s1.png"),
                "--out",
                str(dest),
                "--format",
                fmt,
                "--no-images",
                "--no-reasoning",
                "--slice",
                "512",
            ]
        )
        assert code == 0
        assert (dest / expected).is_file()


def test_cli_errors(tmp_path: Path) -> None:
    base = ["--models-dir", str(DEMO_MODEL.parent), "--rules-dir", str(RULES_DIR)]
    assert (
        cli_main([*base, "predict", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")])
        == 2
    )
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    assert (
        cli_main(
            [
                *base,
                "predict",
                str(tmp_path / "a.png"),
                "--out",
                str(tmp_path / "o"),
                "--model",
                "../x.pt",
            ]
        )
        == 1
    )
    assert (
        cli_main(
            [*base, "predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--conf", "2"]
        )
        == 2
    )
    assert cli_main([*base, "eval", str(tmp_path / "nope"), str(tmp_path)]) == 2


def test_full_image_mode_misses_small_objects_sahi_finds(
    detector: UltralyticsDetector, tmp_path: Path
) -> None:
    demo_scenes_module()
    from demo_scenes import generate_scene

    scene = generate_scene(1600, 1600, (99, 3))
    pipe = Pipeline(DEMO_MODEL.parent, RULES_DIR, default_model=DEMO_MODEL.name, device="cpu")
    sliced = pipe.run(scene.image, PipelineConfig())
    full = pipe.run(scene.image, PipelineConfig(sahi=SahiConfig(enabled=False)))
    assert len(sliced.detections) > 2 * len(full.detections)
