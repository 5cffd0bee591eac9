"""Prolog reasoning: every default rule on hand-built facts, hostile rules files, isolation."""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from nesydet.pipeline import RulesError
from nesydet.pipeline.reasoning.engine import Decision, PrologReasoner
from nesydet.pipeline.reasoning.facts import build_facts
from tests.pipeline_fixtures import RULES_DIR, random_detections

CLASSES = {
    "plane", "ship", "storage_tank", "baseball_diamond", "tennis_court", "basketball_court",
    "ground_track_field", "harbor", "bridge", "large_vehicle", "small_vehicle", "helicopter",
    "roundabout", "soccer_ball_field", "swimming_pool",
}  # fmt: skip


@pytest.fixture(scope="module")
def dota() -> PrologReasoner:
    return PrologReasoner(RULES_DIR)


def run(
    reasoner: PrologReasoner,
    dets: list[tuple[str, float, float, float]],
    pairs: list[str],
    rules: str = "dota.pl",
) -> list[Decision]:
    """dets: (class, conf, area_frac, rel_size); pairs: extra near/overlap fact texts."""
    facts = ["image_size(1000,1000)", "threshold(0.25)"]
    facts += [f"det({k},{c},{p},{a},{r})" for k, (c, p, a, r) in enumerate(dets)]
    return reasoner.decide(rules, "[" + ",".join(facts + pairs) + "]", len(dets), CLASSES)


def both(kind: str, a: int, b: int, v: float) -> list[str]:
    return [f"{kind}({a},{b},{v})", f"{kind}({b},{a},{v})"]


BOOSTS = [
    ("ship_near_harbor", "ship", "harbor", 0.10),
    ("harbor_with_ships", "harbor", "ship", 0.10),
    ("ships_in_group", "ship", "ship", 0.05),
    ("car_near_truck", "small_vehicle", "large_vehicle", 0.05),
    ("truck_near_car", "large_vehicle", "small_vehicle", 0.05),
    ("cars_in_group", "small_vehicle", "small_vehicle", 0.05),
    ("trucks_in_group", "large_vehicle", "large_vehicle", 0.05),
    ("planes_in_group", "plane", "plane", 0.10),
    ("helicopters_in_group", "helicopter", "helicopter", 0.05),
    ("helicopter_at_airfield", "helicopter", "plane", 0.05),
    ("tank_farm", "storage_tank", "storage_tank", 0.10),
    ("court_complex", "tennis_court", "tennis_court", 0.10),
    ("court_complex", "basketball_court", "tennis_court", 0.05),
    ("roundabout_with_traffic", "roundabout", "small_vehicle", 0.05),
    ("bridge_with_traffic", "bridge", "small_vehicle", 0.05),
]


@pytest.mark.parametrize(("rule", "cls", "other", "boost"), BOOSTS)
def test_cooccurrence_boosts(
    dota: PrologReasoner, rule: str, cls: str, other: str, boost: float
) -> None:
    out = run(dota, [(cls, 0.6, 0.001, 1.0), (other, 0.9, 0.001, 1.0)], both("near", 0, 1, 0.9))
    assert rule in out[0].rules
    assert out[0].action == "keep"
    assert out[0].confidence == pytest.approx(0.6 + boost)
    far = run(dota, [(cls, 0.6, 0.001, 1.0), (other, 0.9, 0.001, 1.0)], [])
    assert rule not in far[0].rules


def test_boost_lifts_weak_candidate_above_threshold(dota: PrologReasoner) -> None:
    out = run(
        dota, [("ship", 0.2, 0.001, 1.0), ("harbor", 0.8, 0.01, 1.0)], both("near", 0, 1, 1.0)
    )
    assert out[0].action == "keep"
    assert out[0].confidence == pytest.approx(0.3)


def test_boosts_are_capped(dota: PrologReasoner) -> None:
    dets = [("ship", 0.5, 0.001, 1.0), ("harbor", 0.8, 0.01, 1.0), ("ship", 0.8, 0.001, 1.0)]
    out = run(dota, dets, both("near", 0, 1, 1.0) + both("near", 0, 2, 1.0))
    assert set(out[0].rules) == {"ship_near_harbor", "ships_in_group"}
    assert out[0].confidence == pytest.approx(0.65)  # 0.10 + 0.05 = 0.15 = the cap


def test_a_rule_firing_twice_counts_once_with_its_first_effect(dota: PrologReasoner) -> None:
    # court_complex supports a tennis court from another tennis court (+0.10, listed first)
    # and from a basketball court (+0.05): the rule is named once and adds 0.10, not 0.15.
    dets = [("tennis_court", 0.6, 0.001, 1.0), ("tennis_court", 0.9, 0.001, 1.0)]
    dets.append(("basketball_court", 0.9, 0.001, 1.0))
    out = run(dota, dets, both("near", 0, 1, 1.0) + both("near", 0, 2, 1.0))
    assert out[0].rules == ["court_complex"]
    assert out[0].confidence == pytest.approx(0.7)


def test_a_hard_rule_drops_whatever_the_boosts(dota: PrologReasoner) -> None:
    # A car covering 5 % of the image (implausible_size) in a group of cars: boosted, dropped.
    dets = [("small_vehicle", 0.9, 0.05, 1.0), ("small_vehicle", 0.9, 0.0001, 1.0)]
    out = run(dota, dets, both("near", 0, 1, 1.0))
    assert out[0].action == "drop"
    assert out[0].rules == ["cars_in_group", "implausible_size"]
    assert out[0].confidence == pytest.approx(0.95)


PENALTIES = [
    ("plane_on_harbor", "plane", "harbor", 0.5, 0.30),
    ("ship_on_land", "ship", "roundabout", 0.5, 0.30),
    ("ship_on_land", "ship", "tennis_court", 0.9, 0.30),
    ("vehicle_in_pool", "small_vehicle", "swimming_pool", 0.8, 0.20),
    ("tank_on_vehicle", "storage_tank", "large_vehicle", 0.8, 0.20),
]


@pytest.mark.parametrize(("rule", "cls", "other", "ios", "penalty"), PENALTIES)
def test_implausible_overlaps(
    dota: PrologReasoner, rule: str, cls: str, other: str, ios: float, penalty: float
) -> None:
    out = run(
        dota,
        [(cls, 0.9, 0.001, 1.0), (other, 0.9, 0.003, 1.0)],
        both("overlap", 0, 1, ios) + both("near", 0, 1, 0.2),
    )
    assert rule in out[0].rules
    assert out[0].confidence == pytest.approx(0.9 - penalty)


def test_penalty_can_drop(dota: PrologReasoner) -> None:
    out = run(
        dota, [("plane", 0.4, 0.002, 1.0), ("harbor", 0.9, 0.01, 1.0)], both("overlap", 0, 1, 0.6)
    )
    assert out[0].action == "drop"
    assert "plane_on_harbor" in out[0].rules


def test_competing_label(dota: PrologReasoner) -> None:
    dets = [("small_vehicle", 0.5, 0.0010, 1.0), ("large_vehicle", 0.8, 0.0012, 1.0)]
    out = run(dota, dets, both("overlap", 0, 1, 0.8) + both("near", 0, 1, 0.1))
    assert "competing_label" in out[0].rules
    assert "competing_label" not in out[1].rules  # the stronger label is not penalised


def test_isolated_weak_vehicle(dota: PrologReasoner) -> None:
    out = run(dota, [("small_vehicle", 0.4, 0.0001, 1.0)], [])
    assert out[0].rules == ["isolated"]
    assert out[0].confidence == pytest.approx(0.35)
    strong = run(dota, [("small_vehicle", 0.7, 0.0001, 1.0)], [])
    assert strong[0].rules == []


def test_implausible_size_drops(dota: PrologReasoner) -> None:
    out = run(dota, [("storage_tank", 0.95, 0.5, 1.0), ("storage_tank", 0.95, 0.001, 1.0)], [])
    assert out[0].action == "drop"
    assert "implausible_size" in out[0].rules
    assert out[1].action == "keep"


def test_relabel_oversized_car_near_trucks(dota: PrologReasoner) -> None:
    dets = [("small_vehicle", 0.8, 0.0005, 3.0), ("large_vehicle", 0.8, 0.0006, 1.0)]
    out = run(dota, dets, both("near", 0, 1, 1.5))
    assert out[0].action == "relabel"
    assert out[0].class_name == "large_vehicle"
    assert out[0].rules[-1] == "oversized_car_near_trucks"


def test_below_threshold_without_support_is_dropped(dota: PrologReasoner) -> None:
    out = run(dota, [("ship", 0.15, 0.001, 1.0)], [])
    assert out[0].action == "drop"


def test_reasoning_decides_each_of_1000_detections(dota: PrologReasoner) -> None:
    # How long this takes is measured by bench/pipeline_speed.py (and bench/quality.py).
    n = 1000
    names, scores, boxes = random_detections(n)
    facts = build_facts(names, scores, boxes, None, (3000, 3000), 0.25)
    out = dota.decide("dota.pl", facts, n, CLASSES)
    assert len(out) == n
    assert {d.action for d in out} <= {"keep", "drop", "relabel"}
    assert {d.action for d in out} >= {"keep", "drop"}
    assert sum(bool(d.rules) for d in out) > n // 10  # a crowded scene: many rules fire
    assert dota.decide("dota.pl", facts, n, CLASSES) == out  # nothing carried between calls


DECIDE = "decide(Id, keep, C, K, []) :- det(Id, K, C, _, _)"
TIME_LIMIT = "time limit exceeded"
NOT_ALLOWED = "directive not allowed in rules files"
SANDBOXED = "No permission to call sandboxed"
# Each hostile file, and what its RulesError says (a regular expression).
HOSTILE = {
    "syntax.pl": (
        "decide(Id, keep, C, K, []) :- det(Id, K, C, _, _)\nfoo(.\n",
        "Syntax error",
    ),
    "halt_init.pl": (f":- initialization(halt).\n{DECIDE}.\n", NOT_ALLOWED),
    "halt.pl": (f":- halt.\n{DECIDE}.\n", NOT_ALLOWED),
    "shell.pl": (f"{DECIDE}, shell('touch /tmp/nesydet_pwned').\n", SANDBOXED),
    "shell_hidden.pl": (f":- dynamic x/0.\nx :- shell(ls).\n{DECIDE}, x.\n", SANDBOXED),
    "loop.pl": (f"{DECIDE}, repeat, fail.\n", TIME_LIMIT),
    "loop_directive.pl": (":- repeat, fail.\n", NOT_ALLOWED),
    # Runs out of the time limit or of the stack limit first, depending on the machine.
    "memory.pl": (
        f"{DECIDE}, numlist(1, 500000000, L), sum_list(L, _).\n",
        f"{TIME_LIMIT}|Stack limit .* exceeded",
    ),
    "hook.pl": (f"user:message_hook(_, _, _).\n{DECIDE}.\n", "module-qualified clause head"),
    "consult.pl": (":- consult('/etc/passwd').\n", NOT_ALLOWED),
    "no_decide.pl": ("foo(1).\n", "does not define decide/5"),
    "fake_facts.pl": (
        "det(0, plane, 1.0, 0, 1).\ndecide(_, keep, 1.0, plane, []).\n",
        "det/5 holds facts asserted by nesydet",
    ),
    "bad_action.pl": (
        "decide(Id, explode, C, K, []) :- det(Id, K, C, _, _).\n",
        "malformed decision",
    ),
    "bad_conf.pl": (
        "decide(Id, keep, 2.0, K, []) :- det(Id, K, _, _, _).\n",
        "confidence outside",
    ),
    "bad_class.pl": (
        "decide(Id, relabel, C, tractor, []) :- det(Id, _, C, _, _).\n",
        "class the model does not know: tractor",
    ),
    "fails.pl": ("decide(_, _, _, _, _) :- fail.\n", "decide/5 failed"),
    "throws.pl": ("decide(_, _, _, _, _) :- X is 1/0, X > 0.\n", "zero_divisor"),
}


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("rules")
    for name, (text, _) in HOSTILE.items():
        (d / name).write_text(text)
    shutil.copy(RULES_DIR / "dota.pl", d / "dota.pl")
    return d


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_rules_give_rules_error(hostile_dir: Path, name: str) -> None:
    # How soon a runaway rule is stopped after its time limit: bench/pipeline_speed.py.
    reasoner = PrologReasoner(hostile_dir, time_limit_s=1.0)
    facts = build_facts(
        ["ship"], np.array([0.5]), np.array([[10.0, 10, 30, 20]]), None, (100, 100), 0.25
    )
    with pytest.raises(RulesError) as err:
        reasoner.decide(name, facts, 1, CLASSES)
    assert err.value.code == "RULES_ERROR"
    assert err.value.details
    said = f"{err.value.message}: {err.value.details}"
    assert re.search(HOSTILE[name][1], said), said
    assert not Path("/tmp/nesydet_pwned").exists()
    # the process is fine and the next good job works
    good = reasoner.decide("dota.pl", facts, 1, CLASSES)
    assert good[0].action == "keep"


def test_jobs_do_not_leak_facts(tmp_path: Path) -> None:
    (tmp_path / "leak.pl").write_text(
        ":- dynamic seen/1.\n"
        "decide(Id, keep, C, K, Rs) :- det(Id, K, C, _, _),\n"
        "    ( seen(_) -> Rs = [leak] ; Rs = [] ), assertz(seen(Id)).\n"
    )
    reasoner = PrologReasoner(tmp_path)
    facts = build_facts(
        ["ship"], np.array([0.5]), np.array([[10.0, 10, 30, 20]]), None, (100, 100), 0.25
    )
    for _ in range(3):
        assert reasoner.decide("leak.pl", facts, 1, CLASSES)[0].rules == []


def test_changed_rules_file_is_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "r.pl"
    path.write_text("decide(Id, keep, C, K, [first]) :- det(Id, K, C, _, _).\n")
    reasoner = PrologReasoner(tmp_path)
    facts = build_facts(
        ["ship"], np.array([0.5]), np.array([[10.0, 10, 30, 20]]), None, (100, 100), 0.25
    )
    assert reasoner.decide("r.pl", facts, 1, CLASSES)[0].rules == ["first"]
    module = reasoner.load("r.pl")
    assert reasoner.load("r.pl") == module  # cached while unchanged
    path.write_text("decide(Id, keep, C, K, [second]) :- det(Id, K, C, _, _).\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert reasoner.decide("r.pl", facts, 1, CLASSES)[0].rules == ["second"]


def test_concurrent_calls_are_serialised(dota: PrologReasoner) -> None:
    facts = build_facts(
        ["ship", "harbor"],
        np.array([0.5, 0.7]),
        np.array([[0.0, 0, 20, 8], [0.0, 10, 60, 20]]),
        None,
        (100, 100),
        0.25,
    )
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                assert dota.decide("dota.pl", facts, 2, CLASSES)[0].rules
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_rule_names_with_commas_and_arguments_come_back_whole(tmp_path: Path) -> None:
    (tmp_path / "r.pl").write_text(
        "decide(Id, keep, C, K, [boost(near, 0.1), 'a,b', plain]) :- det(Id, K, C, _, _).\n"
    )
    facts = build_facts(
        ["ship"], np.array([0.5]), np.array([[10.0, 10, 30, 20]]), None, (100, 100), 0.25
    )
    rules = PrologReasoner(tmp_path).decide("r.pl", facts, 1, CLASSES)[0].rules
    assert rules == ["boost(near,0.1)", "a,b", "plain"]
