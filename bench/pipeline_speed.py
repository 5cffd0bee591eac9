"""Speed of the pipeline's CPU-side steps, each beside a baseline timed in the same run.

The tests check what these steps give; this checks how fast. Prints, for each step, the median
seconds, a baseline on the same input on this machine, their ratio, and the target:

(a) facts for 1,000 oriented detections (``build_facts``) vs a dense all-pairs distance matrix
    of the same centres in numpy (what the sparse pair search avoids); target < 0.25 s;
(b) cross-slice NMS of 6,000 oriented boxes (3,000 objects, each seen twice) vs torchvision's
    axis-aligned ``batched_nms`` on their envelopes; target < 1.0 s;
(c) Prolog reasoning over 1,000 detections with ``rules/dota.pl`` vs a rules file that keeps
    every detection unchanged (the cost of passing facts in and decisions out); target < 0.25 s;
(d) hostile rules files (those of tests/integration/test_pipeline_rules.py) under a 1 s time
    limit: the seconds until each gives its RulesError, against that limit; target: within
    the limit + 3 s.

    .venv/bin/python -m bench.pipeline_speed [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tests.integration.test_pipeline_rules import CLASSES, HOSTILE
from tests.pipeline_fixtures import doubled_obbs, random_detections

from nesydet.pipeline import RulesError
from nesydet.pipeline import geometry as geo
from nesydet.pipeline.nms import merge_slices
from nesydet.pipeline.reasoning.engine import PrologReasoner
from nesydet.pipeline.reasoning.facts import build_facts
from nesydet.pipeline.types import RawDetections

REPO = Path(__file__).resolve().parents[1]
FACTS_TARGET_S = 0.25
NMS_TARGET_S = 1.0
REASONING_TARGET_S = 0.25
RULES_LIMIT_S = 1.0
RULES_OVERRUN_S = 3.0
KEEP_ALL = "decide(Id, keep, C, K, []) :- det(Id, K, C, _, _).\n"


def median_s(fn: Callable[[], object], repeats: int) -> float:
    """Return the median seconds of ``repeats`` calls of ``fn`` (after one untimed call)."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def facts_case(repeats: int) -> tuple[float, float]:
    """Return (build_facts seconds, dense distance matrix seconds) for 1,000 detections."""
    rng = np.random.default_rng(0)
    n = 1000
    c = rng.uniform(0, 3000, (n, 2))
    wh = rng.uniform(8, 40, (n, 2))
    polys = geo.obb_to_polygons(np.column_stack([c, wh, rng.uniform(0, 3, n)]))
    envelopes = geo.polygon_envelopes(polys)
    names = [("small_vehicle", "ship", "plane")[k] for k in rng.integers(0, 3, n)]
    scores = rng.uniform(0.1, 1, n)

    def dense() -> npt.NDArray[np.float64]:
        d = c[:, None, :] - c[None, :, :]
        return np.hypot(d[..., 0], d[..., 1])

    ours = median_s(
        lambda: build_facts(names, scores, envelopes, polys, (3000, 3000), 0.25), repeats
    )
    return ours, median_s(dense, repeats)


def nms_case(repeats: int) -> tuple[float, float]:
    """Return (merge_slices seconds, torchvision batched_nms seconds) for 6,000 boxes."""
    import torch
    from torchvision.ops import batched_nms  # type: ignore[import-untyped]

    obb, scores, class_ids = doubled_obbs(3000)
    classes = class_ids.astype(np.int64)
    envelopes = geo.polygon_envelopes(geo.obb_to_polygons(obb))
    dets = RawDetections(envelopes, scores, classes, obb)
    boxes_t = torch.from_numpy(envelopes).float()
    scores_t = torch.from_numpy(scores).float()
    classes_t = torch.from_numpy(classes)
    ours = median_s(lambda: merge_slices(dets, iou_threshold=0.45), repeats)
    base = median_s(lambda: batched_nms(boxes_t, scores_t, classes_t, 0.45), repeats)
    return ours, base


def reasoning_case(rules_dir: Path, repeats: int) -> tuple[float, float]:
    """Return (dota.pl seconds, keep-all rules seconds) for 1,000 detections."""
    n = 1000
    names, scores, boxes = random_detections(n)
    facts = build_facts(names, scores, boxes, None, (3000, 3000), 0.25)
    reasoner = PrologReasoner(rules_dir)
    ours = median_s(lambda: reasoner.decide("dota.pl", facts, n, CLASSES), repeats)
    base = median_s(lambda: reasoner.decide("keep_all.pl", facts, n, CLASSES), repeats)
    return ours, base


def hostile_case(rules_dir: Path) -> list[tuple[str, float, str]]:
    """Return (file, seconds until its RulesError, what it said) for each hostile file."""
    reasoner = PrologReasoner(rules_dir, time_limit_s=RULES_LIMIT_S)
    facts = build_facts(
        ["ship"], np.array([0.5]), np.array([[10.0, 10, 30, 20]]), None, (100, 100), 0.25
    )
    reasoner.decide("dota.pl", facts, 1, CLASSES)  # Prolog started, the driver loaded
    rows = []
    for name in sorted(HOSTILE):
        started = time.perf_counter()
        try:
            reasoner.decide(name, facts, 1, CLASSES)
            said = "NO ERROR"
        except RulesError as exc:
            said = exc.details.splitlines()[0][:60] if exc.details else exc.message
        rows.append((name, time.perf_counter() - started, said))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the cases, print the table; return 1 when a target is missed."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per case (median)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nesydet-bench-") as tmp:
        rules_dir = Path(tmp)
        (rules_dir / "dota.pl").write_text((REPO / "rules" / "dota.pl").read_text())
        (rules_dir / "keep_all.pl").write_text(KEEP_ALL)
        for name, (text, _) in HOSTILE.items():
            (rules_dir / name).write_text(text)
        cases = [
            ("(a) facts, 1000 OBB", "dense numpy distances", *facts_case(args.repeats)),
            ("(b) NMS, 6000 OBB", "torchvision batched_nms", *nms_case(args.repeats)),
            ("(c) Prolog, 1000 dets", "keep-all rules", *reasoning_case(rules_dir, args.repeats)),
        ]
        hostile = hostile_case(rules_dir)
    targets = [FACTS_TARGET_S, NMS_TARGET_S, REASONING_TARGET_S]
    print(f"{'case':<24} {'s':>8} {'baseline':<24} {'s':>8} {'ratio':>7} {'target':>9} {'':>5}")
    ok = True
    for (case, baseline, ours, base), target in zip(cases, targets, strict=True):
        passed = ours < target
        ok &= passed
        print(
            f"{case:<24} {ours:8.4f} {baseline:<24} {base:8.4f} {ours / base:7.2f} "
            f"{f'< {target:g} s':>9} {'ok' if passed else 'MISS':>5}"
        )
    print(f"\n(d) hostile rules files, time limit {RULES_LIMIT_S:g} s")
    print(f"{'file':<20} {'s':>7} {'s / limit':>10} {'':>5}  error")
    for name, seconds, said in hostile:
        passed = seconds < RULES_LIMIT_S + RULES_OVERRUN_S and said != "NO ERROR"
        ok &= passed
        print(
            f"{name:<20} {seconds:7.3f} {seconds / RULES_LIMIT_S:10.2f} "
            f"{'ok' if passed else 'MISS':>5}  {said}"
        )
    print(f"target: each RulesError within the limit + {RULES_OVERRUN_S:g} s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
