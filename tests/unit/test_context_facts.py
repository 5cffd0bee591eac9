"""Scene context: the surface map, and the per-detection facts made from it and the pairs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nesydet.pipeline import geometry as geo
from nesydet.pipeline.context import (
    DEFAULT_CONTEXT_MODEL,
    SURFACES,
    WATER,
    ContextMap,
    SurfaceModel,
    context_map,
    features,
)
from nesydet.pipeline.reasoning.facts import ALL_FACTS, FACT_ARITY, build_facts
from nesydet.pipeline.reasoning.scene_facts import (
    neighbourhood,
    shore_distances,
    surface_shares,
)

ROOT = Path(__file__).resolve().parents[2]
LAND = SURFACES.index("land")


def half_water(h: int = 50, w: int = 100) -> ContextMap:
    """Returns a map of 4 px cells: water on the left half, land on the right."""
    labels = np.full((h, w), LAND, dtype=np.uint8)
    labels[:, : w // 2] = WATER
    shore = np.abs(np.arange(w) - w / 2 + 0.5)[None, :].repeat(h, 0).astype(np.float32) * 4
    return ContextMap(labels, (4.0, 4.0), shore)


def test_summed_area_tables_and_shares_of_maps_of_any_size() -> None:
    # The tables live in a buffer the thread reuses: each call, at another size or the
    # same, must give numpy's cumulative sums of that map, and shares its cell counts.
    rng = np.random.default_rng(3)
    for h, w in [(7, 9), (40, 30), (7, 9)]:
        labels = rng.integers(0, len(SURFACES), (h, w)).astype(np.uint8)
        ctx = ContextMap(labels, (4.0, 4.0), None)
        tables = ctx.integral()
        assert len(tables) == len(SURFACES)
        for k, table in enumerate(tables):
            want = np.zeros((h + 1, w + 1), dtype=np.int64)
            want[1:, 1:] = np.cumsum(np.cumsum(labels == k, axis=0), axis=1)
            assert table.shape == want.shape
            assert (table == want).all()
        counts = np.bincount(labels.ravel(), minlength=len(SURFACES))
        assert ctx.shares() == pytest.approx(dict(zip(SURFACES, counts / labels.size, strict=True)))
        assert all(type(v) is float for v in ctx.shares().values())


def test_surface_shares_of_windows_and_rings() -> None:
    ctx = half_water()
    centres = np.array([[40.0, 100.0], [200.0, 100.0], [360.0, 100.0]])
    half = np.full((3, 2), 20.0)
    shares = surface_shares(ctx, centres, half)
    assert shares[0, WATER] == pytest.approx(1.0)
    assert shares[1, WATER] == pytest.approx(0.5)
    assert shares[2, LAND] == pytest.approx(1.0)
    assert shares.sum(axis=1) == pytest.approx(np.ones(3))
    # Leaving out the middle of a window straddling the shore keeps it half and half.
    ring = surface_shares(ctx, centres, half, np.full((3, 2), 8.0))
    assert ring[1, WATER] == pytest.approx(0.5)


def test_ring_leaves_the_object_out() -> None:
    labels = np.full((20, 20), LAND, dtype=np.uint8)
    labels[8:12, 8:12] = SURFACES.index("roof")  # a grey object in a field
    ctx = ContextMap(labels, (4.0, 4.0), None)
    centre, half, inner = np.array([[40.0, 40.0]]), np.array([[16.0, 16.0]]), np.array([[8.0, 8.0]])
    assert surface_shares(ctx, centre, half)[0, SURFACES.index("roof")] == pytest.approx(0.25)
    assert surface_shares(ctx, centre, half, inner)[0, LAND] == pytest.approx(1.0)


def test_shore_distance_in_diagonals() -> None:
    ctx = half_water()
    d = shore_distances(ctx, np.array([[200.0, 100.0], [300.0, 100.0]]), np.array([10.0, 20.0]))
    assert d is not None
    assert d[0] < 0.5
    assert d[1] == pytest.approx(100 / 20, abs=0.3)
    no_shore = ContextMap(np.zeros((10, 10), np.uint8), (4.0, 4.0), None)
    assert shore_distances(no_shore, np.zeros((1, 2)), np.ones(1)) is None


def test_neighbourhood_counts_separate_objects_only() -> None:
    # Three cars in a row (one a fragment of the first) and a truck across the row.
    classes = np.array([0, 0, 0, 1])
    angles = np.array([0.0, 0.02, math.pi / 2 + 0.01, 0.7])
    near = (np.array([0, 0, 1, 0]), np.array([1, 2, 2, 3]), np.array([1.0, 0.1, 1.1, 2.0]))
    overlap = (np.array([0]), np.array([2]), np.array([0.8]))
    hood = neighbourhood(classes, angles, near, overlap)
    assert hood.cluster.tolist() == [1, 2, 1, 0]  # 0-2 is one object seen twice
    assert hood.aligned is not None
    assert hood.aligned.tolist() == [1, 2, 1, 0]  # a right angle counts as aligned (grids)
    nearest = {
        (i, c): d
        for i, c, d in zip(
            hood.nearest_id.tolist(),
            hood.nearest_cls.tolist(),
            hood.nearest_dist.tolist(),
            strict=True,
        )
    }
    assert nearest == {(0, 0): 1.0, (0, 1): 2.0, (1, 0): 1.0, (2, 0): 1.1, (3, 0): 2.0}


def test_build_facts_sends_only_what_is_wanted() -> None:
    obb = np.array(
        [
            [100.0, 100, 16, 7, 0],
            [100, 115, 16, 7, 0],
            [100, 130, 16, 7, 0.05],
            [300, 100, 30, 9, 1],
        ]
    )
    polys = geo.obb_to_polygons(obb)
    names = ["small_vehicle", "small_vehicle", "small_vehicle", "ship"]
    args = (names, np.full(4, 0.5), geo.polygon_envelopes(polys), polys, (400, 200), 0.25)
    ctx = half_water()
    lean = build_facts(*args, context=ctx, wanted=frozenset({"nearest", "cluster", "on"}))
    assert "near(" not in lean
    assert "overlap(" not in lean
    assert "shore_distance(" not in lean
    assert "scene(" not in lean
    assert "elongation(" not in lean
    assert "nearest(1,'small_vehicle'," in lean
    assert "cluster(1,2)" in lean
    assert "on(3,land,1.000)" in lean  # the ship at x=300 lies in the land half
    full = build_facts(*args, context=ctx)
    for name in ALL_FACTS - {"overlap", "image_size", "threshold"}:
        assert f"{name}(" in full, name
    assert "scene(water,0.5000)" in full
    assert build_facts(*args) == build_facts(*args, wanted=ALL_FACTS)  # no context: none sent
    assert FACT_ARITY["on"] == 3
    assert "elongation(3,3.333)" in full  # the 30 x 9 ship, turned by 1 rad
    assert "elongation(0,2.286)" in full


def test_elongation_of_oriented_and_plain_boxes() -> None:
    obb = np.array([[50.0, 50, 10, 40, 0.7], [50, 50, 12, 12, 0.3], [50, 50, 20, 0, 0]])
    polys = geo.obb_to_polygons(obb)
    args = (["ship"] * 3, np.full(3, 0.5), geo.polygon_envelopes(polys))
    only = frozenset({"elongation"})
    facts = build_facts(*args, polys, (100, 100), 0.25, wanted=only)
    assert "elongation(0,4.000)" in facts  # turned boxes: their own sides, not the envelope
    assert "elongation(1,1.000)" in facts
    assert "elongation(2,100.000)" in facts  # a box with no width
    index: dict[int, list[str]] = {}
    build_facts(*args, polys, (100, 100), 0.25, wanted=only, index=index)
    assert index[0] == ["elongation(0,4.000)"]  # listed in the explanation when a rule fires
    # An axis-aligned box says nothing of the shape of a turned object: no fact.
    assert "elongation(" not in build_facts(*args, None, (100, 100), 0.25, wanted=only)


def blue_water_model() -> SurfaceModel:
    """Returns a hand-made model: a cell bluer than it is red is water, any other land."""
    n_feat = features(np.zeros((8, 8, 3), np.float32)).shape[-1]
    w1 = np.zeros((n_feat, 2), np.float32)
    w1[2, 0], w1[0, 0] = 1.0, -1.0  # blue - red
    w1[0, 1], w1[2, 1] = 1.0, -1.0  # red - blue
    w2 = np.zeros((2, len(SURFACES)), np.float32)
    w2[0, WATER], w2[1, LAND] = 10.0, 10.0
    return SurfaceModel(
        np.zeros(n_feat, np.float32),
        np.ones(n_feat, np.float32),
        w1,
        np.zeros(2, np.float32),
        w2,
        np.zeros(len(SURFACES), np.float32),
        {"surfaces": list(SURFACES), "features": 1},
    )


def test_context_map_finds_water_and_shore(tmp_path: Path) -> None:
    img = np.zeros((400, 600, 3), np.uint8)
    img[:, :300] = (30, 60, 140)  # water on the left
    img[:, 300:] = (120, 110, 60)  # fields on the right
    img[100:110, 450:460] = (20, 40, 200)  # a blue roof: too small to be a pond
    model = blue_water_model()
    model.save(tmp_path / "m.npz")
    ctx = context_map(img, SurfaceModel.load(tmp_path / "m.npz"))
    assert ctx.labels.shape == (100, 150)
    assert ctx.shares()["water"] == pytest.approx(0.5, abs=0.02)
    assert (ctx.labels[:, 120:] != WATER).all()  # the small blue patch is not water
    assert ctx.shore is not None
    assert ctx.shore[50, 10] > 200  # deep in the water, far from the shore


def test_model_of_another_version_is_refused(tmp_path: Path) -> None:
    model = blue_water_model()
    bad = SurfaceModel(
        model.mean, model.std, model.w1, model.b1, model.w2, model.b2, {"surfaces": ["x"]}
    )
    bad.save(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="do not match"):
        SurfaceModel.load(tmp_path / "bad.npz")


def test_shipped_context_model_is_small_and_loads() -> None:
    path = ROOT / "models" / DEFAULT_CONTEXT_MODEL
    assert path.stat().st_size < 10 * 1024 * 1024
    model = SurfaceModel.load(path)
    assert model.meta["surfaces"] == list(SURFACES)
    assert "train_seeds" in model.meta
