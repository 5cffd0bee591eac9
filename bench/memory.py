"""A worker process's resident memory (RSS) with one and with three models loaded.

Each measurement runs in a fresh child process built like a worker's pool process: the
pipeline (``Pipeline``, Prolog started), then models warmed up and run on a 2048 x 2048
held-out scene with the default job config. The three models are three copies of the demo
``.pt`` under other names; with backend ``auto`` each runs on its own onnxruntime session
(the copies share one cached export, since the cache is keyed by content). Printed for the
backends ``auto`` (the default: onnxruntime here, with its memory arena), ``auto`` with the
arena off (``BackendLoader(onnx_arena=False)``) and ``torch``.

    .venv/bin/python -m bench.memory
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.quality import MODEL, ROOT, ensure_heldout, table

MIB = 1024 * 1024
COPIES = ("demo-a.pt", "demo-b.pt", "demo-c.pt")


def child(models: Path, backend: str, scene: Path) -> dict[str, float]:
    """Returns RSS in MiB at each step of loading a worker's pipeline and three models."""
    import psutil

    proc = psutil.Process()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")

    def resident() -> float:
        # Freed memory (the probe's torch model, the last image's buffers) back to the system
        # first: the figure is what stays resident, not what malloc keeps at hand.
        gc.collect()
        libc.malloc_trim(0)
        return float(proc.memory_info().rss / MIB)

    rss: dict[str, float] = {"python": resident()}
    from nesydet.pipeline import Pipeline, PipelineConfig, load_image

    rss["imports"] = resident()
    from nesydet.pipeline.backends import BackendLoader

    name, _, arena = backend.partition("+")
    loader = BackendLoader(
        name,
        cache_dir=ROOT / "models" / ".onnx",
        threads=os.cpu_count() or 0,
        onnx_arena=arena != "no-arena",
    )
    pipe = Pipeline(
        models,
        ROOT / "rules",
        default_model=COPIES[0],
        device="cpu",
        detector_factory=loader,
        cpu_threads=os.cpu_count(),
    )
    image = load_image(scene)
    for k, name in enumerate(COPIES, start=1):
        pipe.warmup(name)
        pipe.run(image, PipelineConfig(model_path=name))
        rss[f"{k} model{'s' if k > 1 else ''}"] = resident()
    rss["backend"] = loader.choices[(models / COPIES[0]).resolve()].backend  # type: ignore[assignment]
    return rss


def main(argv: list[str] | None = None) -> int:
    """Measures each backend in a child process and prints the table; returns the exit code."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--child", nargs=3, metavar=("MODELS", "BACKEND", "SCENE"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    if args.child:
        models, backend, scene = args.child
        print(json.dumps(child(Path(models), backend, Path(scene))))
        return 0
    scene = ensure_heldout()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        for name in COPIES:
            shutil.copy(ROOT / "models" / MODEL, models / name)
        for backend in ("auto", "auto+no-arena", "torch"):
            out = subprocess.run(
                [sys.executable, "-m", "bench.memory", "--child", str(models), backend, str(scene)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            rss = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(
                [
                    f"{backend} ({rss['backend']})",
                    rss["imports"],
                    rss["1 model"],
                    rss["2 models"],
                    rss["3 models"],
                    rss["3 models"] - rss["1 model"],
                ]
            )
    print(f"worker-like process RSS, MiB (pipeline + Prolog; models: copies of {MODEL})")
    print(
        table(
            ["backend", "after imports", "1 model", "2 models", "3 models", "+2 models"],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
