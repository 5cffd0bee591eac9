"""From merged candidates and the rules' decisions to the detections a job reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nesydet.pipeline.reasoning.engine import Decision
from nesydet.pipeline.types import Detection, FloatArray, RawDetections, ReasoningTrace


@dataclass(frozen=True, slots=True)
class Candidates:
    """Merged detections of one image, before reasoning."""

    raw: RawDetections
    polys: FloatArray | None
    boxes: FloatArray


def detection(
    c: Candidates,
    k: int,
    class_id: int,
    class_name: str,
    conf: float,
    trace: ReasoningTrace | None,
) -> Detection:
    """Returns candidate `k` as a detection with the given class, confidence and trace."""
    x0, y0, x1, y1 = (float(v) for v in c.boxes[k])
    obb = poly = None
    if c.raw.obb is not None and c.polys is not None:
        cx, cy, bw, bh, a = (float(v) for v in c.raw.obb[k])
        obb = (cx, cy, bw, bh, a)
        poly = [(float(x), float(y)) for x, y in c.polys[k]]
    return Detection(class_id, class_name, conf, (x0, y0, x1, y1), obb, poly, trace)


def unreasoned(c: Candidates, class_names: Sequence[str], threshold: float) -> list[Detection]:
    """Returns the candidates at or above the threshold, untouched (reasoning off)."""
    return [
        detection(c, k, int(c.raw.classes[k]), class_names[k], float(c.raw.scores[k]), None)
        for k in range(len(c.raw))
        if c.raw.scores[k] >= threshold
    ]


def apply_decisions(
    c: Candidates,
    decisions: Sequence[Decision],
    class_names: Sequence[str],
    ids: Mapping[str, int],
    threshold: float,
    facts: Mapping[int, list[str]],
) -> tuple[list[Detection], list[Detection]]:
    """Returns (kept, dropped): kept highest confidence first; dropped only those that
    would have been shown without the rules.

    Args:
        c: The candidates the rules decided on.
        decisions: One decision per candidate.
        class_names: Each candidate's class before the rules.
        ids: Class id of each class name.
        threshold: The job's confidence threshold.
        facts: Each candidate's own context facts, by index, for its trace.
    """
    kept: list[Detection] = []
    dropped: list[Detection] = []
    for k, d in enumerate(decisions):
        orig = float(c.raw.scores[k])
        trace, is_kept = trace_for(d, orig, class_names[k], threshold, facts.get(k, []))
        item = detection(c, k, ids[d.class_name], d.class_name, d.confidence, trace)
        if is_kept:
            kept.append(item)
        elif orig >= threshold:
            dropped.append(item)
    kept.sort(key=lambda x: -x.confidence)
    return kept, dropped


def trace_for(
    d: Decision,
    original: float,
    original_class: str,
    threshold: float,
    facts: list[str] | None = None,
) -> tuple[ReasoningTrace, bool]:
    """Returns the trace for a decision and whether the detection is kept.

    The job's threshold applies to the adjusted confidence whatever the rules say, so a
    rules file that "keeps" a weak candidate cannot lower the job's threshold.
    """
    action = d.action
    rules = list(d.rules)
    kept = action != "drop" and d.confidence >= threshold
    if action != "drop" and not kept:
        action, rules = "drop", [*rules, "below_threshold"]
    relabelled = d.class_name != original_class
    if kept and relabelled:
        action = "relabel"
    trace = ReasoningTrace(
        original,
        d.confidence,
        action,
        rules,
        original_class if relabelled else None,
        list(facts) if facts and d.rules else [],
    )
    return trace, kept
