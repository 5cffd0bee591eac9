"""What an uploaded model or rules file is, read in a process of its own.

``python -m nesydet.pipeline.inspect_asset model|rules FILE`` prints one line, ``MARKER``
followed by JSON: ``{"ok": true, ...}`` with what was read, or ``{"ok": false, "reason": ...}``.
Loading a ``.pt`` unpickles it (it can run code) and a rules file is a program, so the service
never does this in its own process: it runs this module under memory and time limits
(``nesydet.services.registry.inspection``) and reads the line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from nesydet.pipeline.errors import PipelineError

MARKER = "NESYDET-INSPECT "


def inspect_model(path: Path) -> dict[str, Any]:
    """Returns a model file's task, class names (by id), input size and runtime, after one
    prediction on a blank image (a file that loads but cannot run is no model).

    Raises:
        ModelLoadError: The file is not a YOLO detect/OBB model or export.
        InferenceError: It loads but fails on an image.
    """
    from nesydet.pipeline.backends import open_detector

    det = open_detector(path, "cpu", False, threads=1, arena=False)
    size = det.imgsz
    det.predict_batch([np.zeros((size, size, 3), dtype=np.uint8)], 0.5, iou=0.45, imgsz=size)
    names = det.names
    return {
        "task": det.task,
        "classes": [names[k] for k in sorted(names)],
        "input_size": int(size),
        "runtime": str(getattr(det, "backend", "torch")),
    }


def inspect_rules(path: Path) -> dict[str, Any]:
    """Returns the fact predicates a rules file reads, after loading it in the sandbox.

    Raises:
        RulesError: It does not load (syntax error with its line, a forbidden directive, no
            decide/3, a load over the time limit).
    """
    from nesydet.pipeline.reasoning.engine import PrologReasoner

    reasoner = PrologReasoner(path.parent)
    return {"facts_used": sorted(reasoner.facts_used(path.name))}


def main(argv: list[str]) -> int:
    """Inspects FILE as KIND and prints the result line; 2 on bad arguments."""
    if len(argv) != 2 or argv[0] not in ("model", "rules"):
        print("usage: python -m nesydet.pipeline.inspect_asset model|rules FILE", file=sys.stderr)
        return 2
    kind, path = argv[0], Path(argv[1])
    try:
        info = inspect_model(path) if kind == "model" else inspect_rules(path)
        result: dict[str, Any] = {"ok": True, **info}
    except PipelineError as exc:
        reason = f"{exc.message}: {exc.details}" if exc.details else exc.message
        # The first line says it; ultralytics adds advice about downloading official models.
        first = reason.replace(str(path.parent) + "/", "").splitlines()[0]
        result = {"ok": False, "reason": first.replace("ERROR \u274c\ufe0f ", "")[:1000]}
    sys.stdout.flush()
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
