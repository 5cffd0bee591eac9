"""scripts/make_demo_dataset.py's training set: extra car-park scenes leave the default ones as
they are."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from tests.pipeline_fixtures import PYTHON, ROOT, demo_scenes_module

SCRIPT = ROOT / "scripts" / "make_demo_dataset.py"
SMALL = ["--train-scenes", "1", "--val-scenes", "1", "--scene-size", "640", "--tile", "320"]


def render(out: Path, *extra: str) -> None:
    subprocess.run(
        [PYTHON, str(SCRIPT), "--out", str(out), *SMALL, *extra],
        check=True,
        capture_output=True,
        timeout=300,
    )


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.*") if p.is_file()}


def label_classes(paths: list[Path]) -> Counter[int]:
    return Counter(int(line.split()[0]) for p in paths for line in p.read_text().splitlines())


def test_car_park_scenes_add_tiles_of_vehicles_beside_the_default_ones(tmp_path: Path) -> None:
    demo_scenes_module()
    from demo_scenes import CLASS_IDS

    plain, more = tmp_path / "plain", tmp_path / "more"
    render(plain)
    render(more, "--car-park-scenes", "2")
    before, after = files(plain), files(more)
    added = sorted(set(after) - set(before))
    # The default scenes' tiles and labels are byte for byte the same with the option.
    tiles = [k for k in before if k.startswith(("images/", "labels/"))]
    assert tiles
    assert all(after[k] == before[k] for k in tiles)
    assert added
    assert all(k.split("/")[-1].startswith("train_car_park_") for k in added)
    assert not any("/val/" in k for k in added)
    # The extra tiles are car parks: vehicles make up most of their objects.
    classes = label_classes([more / k for k in added if k.startswith("labels/")])
    vehicles = classes[CLASS_IDS["small_vehicle"]] + classes[CLASS_IDS["large_vehicle"]]
    assert vehicles >= 0.8 * sum(classes.values())
    assert vehicles >= 50
