"""The default rules' scene-context rules, on hand-built context facts (real SWI-Prolog)."""

from __future__ import annotations

import pytest

from nesydet.pipeline.reasoning.engine import Decision, PrologReasoner
from tests.integration.test_pipeline_rules import CLASSES
from tests.pipeline_fixtures import RULES_DIR

SCENE = ["scene(land,0.6)", "scene(water,0.3)", "scene(road,0.1)"]


@pytest.fixture(scope="module")
def dota() -> PrologReasoner:
    return PrologReasoner(RULES_DIR)


def decide(
    reasoner: PrologReasoner, dets: list[tuple[str, float]], facts: list[str]
) -> list[Decision]:
    """dets: (class, conf); facts: context facts about them (ids are list positions)."""
    base = ["image_size(1000,1000)", "threshold(0.25)"]
    base += [f"det({k},{c},{p},0.001,1.0)" for k, (c, p) in enumerate(dets)]
    return reasoner.decide("dota.pl", "[" + ",".join(base + facts) + "]", len(dets), CLASSES)


def test_the_default_rules_read_aggregates_not_pairs(dota: PrologReasoner) -> None:
    used = dota.facts_used("dota.pl")
    assert {"det", "on", "shore_distance", "scene", "nearest", "cluster", "aligned"} <= used
    assert "elongation" in used
    assert "near" not in used  # tens of thousands of facts in a car park, never sent


def test_boat_on_dry_land_loses_and_a_moored_one_keeps(dota: PrologReasoner) -> None:
    inland = decide(dota, [("ship", 0.9)], [*SCENE, "on(0,land,0.95)", "shore_distance(0,6.0)"])
    assert "vessel_on_dry_land" in inland[0].rules
    assert inland[0].confidence == pytest.approx(0.3)
    quay = decide(dota, [("ship", 0.9)], [*SCENE, "on(0,land,0.95)", "shore_distance(0,0.8)"])
    assert "vessel_on_dry_land" not in quay[0].rules
    afloat = decide(dota, [("ship", 0.6)], [*SCENE, "on(0,water,1.0)", "shore_distance(0,4.0)"])
    assert "vessel_on_water" in afloat[0].rules
    assert afloat[0].action == "keep"


def test_plane_on_water_is_dropped_and_on_apron_boosted(dota: PrologReasoner) -> None:
    wet = decide(dota, [("plane", 0.95)], [*SCENE, "on(0,water,0.9)"])
    assert wet[0].action == "drop"
    assert "aircraft_on_water" in wet[0].rules
    apron = decide(dota, [("plane", 0.6)], [*SCENE, "on(0,runway,0.7)", "on(0,land,0.3)"])
    assert apron[0].rules == ["aircraft_on_apron"]
    assert apron[0].confidence == pytest.approx(0.65)


def test_lone_tank_in_a_field_is_dropped_but_not_a_farm(dota: PrologReasoner) -> None:
    lone = decide(dota, [("storage_tank", 0.95)], [*SCENE, "on(0,land,0.9)"])
    assert lone[0].action == "drop"
    assert "lone_tank_in_field" in lone[0].rules
    farm = decide(
        dota,
        [("storage_tank", 0.95)],
        [*SCENE, "on(0,land,0.9)", "cluster(0,3)", "nearest(0,storage_tank,1.2)"],
    )
    assert farm[0].action == "keep"
    assert "tank_farm" in farm[0].rules


def test_vehicles_fit_roads_not_fields(dota: PrologReasoner) -> None:
    road = decide(dota, [("small_vehicle", 0.6)], [*SCENE, "on(0,road,0.6)", "on(0,land,0.4)"])
    assert road[0].rules == ["vehicle_on_road"]
    truck = decide(dota, [("large_vehicle", 0.7)], [*SCENE, "on(0,land,0.95)"])
    assert "truck_in_open_field" in truck[0].rules
    assert truck[0].action == "drop"
    rows = decide(dota, [("small_vehicle", 0.6)], [*SCENE, "aligned(0,3)", "on(0,road,0.9)"])
    assert set(rows[0].rules) == {"vehicle_on_road", "vehicles_in_rows"}


def test_a_stubby_ship_loses_unless_moored(dota: PrologReasoner) -> None:
    water = [*SCENE, "on(0,water,1.0)", "shore_distance(0,9.0)"]
    stubby = decide(dota, [("ship", 0.6)], [*water, "elongation(0,1.6)"])
    assert "stubby_vessel" in stubby[0].rules
    assert stubby[0].confidence == pytest.approx(0.6 + 0.05 - 0.45)  # vessel_on_water too
    hull = decide(dota, [("ship", 0.6)], [*water, "elongation(0,4.2)"])
    assert "stubby_vessel" not in hull[0].rules
    moored = decide(dota, [("ship", 0.6)], [*water, "elongation(0,1.6)", "nearest(0,harbor,0.4)"])
    assert "stubby_vessel" not in moored[0].rules
    pier = decide(dota, [("harbor", 0.6)], [*water, "elongation(0,2.5)"])
    assert "stubby_harbor" in pier[0].rules
    assert "stubby_harbor" not in decide(dota, [("harbor", 0.6)], ["elongation(0,9.0)"])[0].rules


def test_a_car_in_a_field_is_penalised_once(dota: PrologReasoner) -> None:
    # In an open field the field rule speaks; off-road-alone adds nothing to it.
    field = decide(dota, [("small_vehicle", 0.85)], [*SCENE, "on(0,land,0.95)"])
    assert field[0].rules == ["car_in_open_field"]
    assert field[0].action == "keep"
    yard = decide(dota, [("small_vehicle", 0.6)], [*SCENE, "on(0,land,0.5)", "on(0,roof,0.5)"])
    assert "car_off_road_alone" in yard[0].rules


def test_harbour_needs_water(dota: PrologReasoner) -> None:
    dry = decide(dota, [("harbor", 0.5)], [*SCENE, "on(0,paved,0.9)"])
    assert "harbor_off_shore" in dry[0].rules
    assert dry[0].action == "drop"
    shore = decide(dota, [("harbor", 0.5)], [*SCENE, "on(0,water,0.5)", "shore_distance(0,0.3)"])
    assert shore[0].rules == ["harbor_on_shore"]


def test_no_context_no_context_rule(dota: PrologReasoner) -> None:
    # Without a surface map (no context model) nothing is inferred from missing facts.
    for cls in ("ship", "storage_tank", "large_vehicle", "small_vehicle", "harbor"):
        out = decide(dota, [(cls, 0.9)], [])
        assert out[0].action == "keep", cls
        assert out[0].confidence == pytest.approx(0.9)
