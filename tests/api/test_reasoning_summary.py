"""GET /api/v1/jobs/{job_id}/reasoning: what the rules did, per class. Jobs run through the
real runner with the fake detector (the model boundary) and the real default rules."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx

from nesydet.services.reasoning import summarise
from tests.api import test_job_runner
from tests.api.test_download import completed_job
from tests.api.test_job_runner import Worker, new_job, upload_scenes

Workers = Callable[..., Worker]
run_settings = test_job_runner.run_settings
workers = test_job_runner.workers


def row(cls: str, before: float, after: float, rules: list[str], was: str | None = None) -> Any:
    trace = {
        "original_confidence": before,
        "adjusted_confidence": after,
        "action": "relabel" if was else "keep",
        "rules_fired": rules,
        "original_class": was,
    }
    return SimpleNamespace(class_name=cls, reasoning=trace)


def test_summary_counts_changes_and_rules_per_class() -> None:
    rows = [
        row("ship", 0.6, 0.65, ["vessel_on_water"]),
        row("ship", 0.9, 0.5, ["vessel_on_dry_land", "vessel_on_water"]),
        row("ship", 0.7, 0.7, []),
        row("large_vehicle", 0.8, 0.8, ["oversized_car_near_trucks"], was="small_vehicle"),
        SimpleNamespace(class_name="plane", reasoning=None),
    ]
    out = summarise(rows, dropped=4)
    assert out["detections"] == 5
    assert out["dropped"] == 4
    assert out["rules_fired"] == {
        "vessel_on_water": 2,
        "vessel_on_dry_land": 1,
        "oversized_car_near_trucks": 1,
    }
    ship = out["classes"]["ship"]
    assert (ship["detections"], ship["boosted"], ship["penalised"], ship["unchanged"]) == (
        3,
        1,
        1,
        1,
    )
    assert ship["rules_fired"] == {"vessel_on_water": 2, "vessel_on_dry_land": 1}
    assert out["classes"]["large_vehicle"]["relabelled_to"] == 1
    assert out["classes"]["small_vehicle"]["relabelled_from"] == 1
    assert out["classes"]["small_vehicle"]["detections"] == 0
    assert out["classes"]["plane"]["unchanged"] == 1


async def test_endpoint_summarises_a_completed_job(
    client: httpx.AsyncClient, workers: Workers
) -> None:
    job_id = await completed_job(client, workers)
    response = await client.get(f"/api/v1/jobs/{job_id}/reasoning")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["job_id"] == job_id
    assert data["rules_file"] == "dota.pl"
    results = (await client.get(f"/api/v1/jobs/{job_id}/results")).json()["data"]
    kept = sum(r["detection_count"] for r in results["results"])
    assert data["detections"] == kept
    assert sum(c["detections"] for c in data["classes"].values()) == kept
    for entry in data["classes"].values():
        changed = entry["boosted"] + entry["penalised"] + entry["unchanged"]
        assert changed == entry["detections"]
    # every dropped detection is counted once, under the rule that dropped it
    assert sum(data["dropped_by_rule"].values()) == data["dropped"]
    assert sum(c["dropped"] for c in data["classes"].values()) == data["dropped"]


async def test_endpoint_answers_404_before_completion(client: httpx.AsyncClient) -> None:
    up = await upload_scenes(client, 1)
    job_id = await new_job(client, up["upload_id"])
    response = await client.get(f"/api/v1/jobs/{job_id}/reasoning")
    assert response.status_code == 404
    assert response.json()["error_code"] == "RESULTS_NOT_READY"
    missing = await client.get("/api/v1/jobs/job_000000000000/reasoning")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "JOB_NOT_FOUND"


def test_stored_facts_come_back_with_the_detection() -> None:
    from nesydet.services.results import to_detection

    stored = row("ship", 0.9, 0.2, ["vessel_on_dry_land"])
    stored.reasoning["facts"] = ["on(d3, land, 0.92)", "shore_distance(d3, 4.1)"]
    fields = {
        "class_id": 1,
        "confidence": 0.2,
        "x_min": 1.0,
        "y_min": 2.0,
        "x_max": 3.0,
        "y_max": 4.0,
        "obb": None,
        "polygon": None,
    }
    detection = to_detection(SimpleNamespace(**fields, **vars(stored)))
    assert detection.reasoning is not None
    assert detection.reasoning.facts == ["on(d3, land, 0.92)", "shore_distance(d3, 4.1)"]
    assert detection.to_dict(10, 10)["reasoning"]["facts"] == detection.reasoning.facts


def test_drops_are_counted_by_the_rule_that_dropped_them() -> None:
    from nesydet.pipeline.types import Detection, ReasoningTrace
    from nesydet.services.results import dropped_by_rule

    def gone(cls: str, rules: list[str] | None) -> Detection:
        trace = ReasoningTrace(0.9, 0.1, "drop", rules) if rules is not None else None
        return Detection(1, cls, 0.1, (0.0, 0.0, 4.0, 4.0), None, None, trace)

    dropped = [
        gone("ship", ["vessel_on_water", "vessel_on_dry_land", "below_threshold"]),
        gone("ship", ["vessel_on_dry_land"]),
        gone("storage_tank", ["lone_tank_in_field"]),
        gone("plane", ["below_threshold"]),
        gone("plane", None),
    ]
    by_image = dropped_by_rule(dropped)
    assert by_image == {
        "plane": {"below_threshold": 1, "(none)": 1},
        "ship": {"vessel_on_dry_land": 2},
        "storage_tank": {"lone_tank_in_field": 1},
    }
    out = summarise([row("ship", 0.6, 0.65, ["vessel_on_water"])], 5, [by_image, by_image])
    assert out["dropped_by_rule"] == {
        "vessel_on_dry_land": 4,
        "below_threshold": 2,
        "(none)": 2,
        "lone_tank_in_field": 2,
    }
    assert out["classes"]["ship"]["dropped"] == 4
    assert out["classes"]["ship"]["detections"] == 1
    assert out["classes"]["storage_tank"]["dropped_by_rule"] == {"lone_tank_in_field": 2}
    assert out["classes"]["storage_tank"]["detections"] == 0
