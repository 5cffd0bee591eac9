"""Facts for the rules: near/overlap pair geometry and the Prolog text."""

from __future__ import annotations

import numpy as np
import pytest

from nesydet.pipeline import geometry as geo
from nesydet.pipeline.reasoning.facts import build_facts, pair_geometry, prolog_atom


def test_prolog_atom_quoting() -> None:
    assert prolog_atom("small_vehicle") == "'small_vehicle'"
    assert prolog_atom("o'brien\\x") == "'o\\'brien\\\\x'"


def test_near_and_overlap_match_brute_force() -> None:
    rng = np.random.default_rng(5)
    n = 300
    c = rng.uniform(0, 1500, (n, 2))
    wh = rng.uniform(6, 60, (n, 2))
    boxes = np.column_stack([c - wh / 2, c + wh / 2])
    g = pair_geometry(boxes, None, 3.0)
    diag = np.hypot(wh[:, 0], wh[:, 1])
    want_near, want_overlap = set(), {}
    for i in range(n):
        for j in range(i + 1, n):
            d = np.hypot(*(c[i] - c[j])) / ((diag[i] + diag[j]) / 2)
            if d <= 3.0:
                want_near.add((i, j))
            inter = geo.box_intersections(boxes[i : i + 1], boxes[j : j + 1])[0]
            small = min(wh[i].prod(), wh[j].prod())
            if inter / small >= 0.01:
                want_overlap[(i, j)] = inter / small
    got_near = {(min(a, b), max(a, b)) for a, b in zip(g.near_i, g.near_j, strict=True)}
    assert got_near == want_near
    got_overlap = {
        (min(a, b), max(a, b)): s
        for a, b, s in zip(g.overlap_i, g.overlap_j, g.overlap_ios, strict=True)
    }
    assert got_overlap.keys() == want_overlap.keys()
    for k, v in want_overlap.items():
        assert got_overlap[k] == pytest.approx(v)


def test_rotated_overlap_is_exact() -> None:
    obb = np.array([[0.0, 0.0, 100.0, 10.0, np.pi / 4], [0.0, 0.0, 100.0, 10.0, -np.pi / 4]])
    polys = geo.obb_to_polygons(obb)
    g = pair_geometry(geo.polygon_envelopes(polys), polys, 3.0)
    assert g.overlap_ios.tolist() == pytest.approx([0.1])  # 10x10 crossing of 100x10 bars


def test_build_facts_text() -> None:
    boxes = np.array([[0.0, 0, 10, 10], [5.0, 5, 15, 15], [500.0, 500, 540, 540]])
    text = build_facts(
        ["ship", "harbor", "ship"], np.array([0.5, 0.8, 0.3]), boxes, None, (1000, 1000), 0.25
    )
    assert text.startswith("[image_size(1000,1000),threshold(0.250000),")
    assert "det(0,'ship',0.500000,0.00010000,0.1176)" in text  # 100 px^2 vs ship median 850
    assert "near(0,1," in text
    assert "near(1,0," in text
    assert "overlap(0,1,0.2500)" in text
    assert "near(0,2" not in text


def test_facts_for_1000_detections_hold_every_detection_and_pair() -> None:
    # How fast this is, is measured by bench/pipeline_speed.py.
    rng = np.random.default_rng(0)
    n = 1000
    c = rng.uniform(0, 3000, (n, 2))
    wh = rng.uniform(8, 40, (n, 2))
    obb = np.column_stack([c, wh, rng.uniform(0, 3, n)])
    polys = geo.obb_to_polygons(obb)
    envelopes = geo.polygon_envelopes(polys)
    names = [("small_vehicle", "ship", "plane")[k] for k in rng.integers(0, 3, n)]
    text = build_facts(names, rng.uniform(0.1, 1, n), envelopes, polys, (3000, 3000), 0.25)
    g = pair_geometry(envelopes, polys, 3.0)
    assert len(g.near_i) > n  # a crowded scene: the pairs are a real part of the work
    assert text.count("det(") == n
    assert all(f"det({k},'{names[k]}'," in text for k in range(n))
    assert text.count("near(") == 2 * len(g.near_i)  # each pair both ways
    assert text.count("overlap(") == 2 * len(g.overlap_i)
