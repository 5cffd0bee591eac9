"""Use case: what the rules did in a completed job, per class (GET /jobs/{job_id}/reasoning)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from nesydet.db.models import Detection as DetectionRow
from nesydet.db.repositories import jobs as job_repo
from nesydet.services.results import completed_job

# An adjusted confidence this close to the original counts as unchanged (rounding).
EPS = 1e-6


def summarise(
    rows: Iterable[DetectionRow],
    dropped: int,
    dropped_by: Iterable[Mapping[str, Mapping[str, int]]] = (),
) -> dict[str, Any]:
    """Returns the reasoning summary of stored detections: per class and per rule.

    Args:
        rows: The job's stored (kept) detections, each with its reasoning trace.
        dropped: How many detections the rules dropped (stored as a count per image).
        dropped_by: Per image, ``{class: {rule: count}}`` of the dropped ones, by the rule
            that dropped each (images processed before it was recorded have none).
    """
    classes: dict[str, dict[str, Any]] = {}
    rules: Counter[str] = Counter()
    kept = 0
    for row in rows:
        kept += 1
        entry = classes.setdefault(row.class_name, _empty())
        entry["detections"] += 1
        trace: Mapping[str, Any] | None = row.reasoning
        if trace is None:
            entry["unchanged"] += 1
            continue
        delta = float(trace["adjusted_confidence"]) - float(trace["original_confidence"])
        key = "boosted" if delta > EPS else "penalised" if delta < -EPS else "unchanged"
        entry[key] += 1
        original = trace.get("original_class")
        if original:
            entry["relabelled_to"] += 1
            source = classes.setdefault(original, _empty())
            source["relabelled_from"] += 1
        fired = list(dict.fromkeys(trace.get("rules_fired", [])))
        entry["rules_fired"].update(fired)
        rules.update(fired)
    dropping: Counter[str] = Counter()
    for image in dropped_by:
        for cls, by_rule in image.items():
            entry = classes.setdefault(cls, _empty())
            for rule, count in by_rule.items():
                entry["dropped"] += count
                entry["dropped_by_rule"][rule] += count
                dropping[rule] += count
    for entry in classes.values():
        entry["rules_fired"] = dict(entry["rules_fired"].most_common())
        entry["dropped_by_rule"] = dict(entry["dropped_by_rule"].most_common())
    return {
        "detections": kept,
        "dropped": dropped,
        "rules_fired": dict(rules.most_common()),
        "dropped_by_rule": dict(dropping.most_common()),
        "classes": dict(sorted(classes.items())),
    }


def _empty() -> dict[str, Any]:
    return {
        "detections": 0,
        "boosted": 0,
        "penalised": 0,
        "unchanged": 0,
        "relabelled_to": 0,
        "relabelled_from": 0,
        "dropped": 0,
        "rules_fired": Counter(),
        "dropped_by_rule": Counter(),
    }


async def reasoning_summary(
    *, session: AsyncSession, job_id: str, owner: str | None
) -> dict[str, Any]:
    """Returns, for a completed job, the rules fired and the detections changed per class.

    Raises:
        JobNotFound: No such job (or not the caller's).
        ResultsNotReady: The job has not completed.
    """
    job = await completed_job(session=session, job_id=job_id, owner=owner)
    rows = await job_repo.detections(session=session, job_id=job.id)
    files = await job_repo.job_files(session=session, job_id=job.id)
    reasoning = (job.config or {}).get("symbolic_reasoning") or {}
    summary = summarise(
        rows,
        sum(f.dropped_count or 0 for f in files),
        [f.dropped_by for f in files if f.dropped_by],
    )
    return {
        "job_id": job.id,
        "reasoning_enabled": bool(reasoning.get("enabled", True)),
        "rules_file": reasoning.get("rules_file"),
        **summary,
    }
