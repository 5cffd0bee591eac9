"""The pipeline on a GPU: raw batched forward throughput against the pipeline's slices per
second, and images per hour through one worker process. Exits 0 with a line saying so when
there is no CUDA device.

Self-contained: the scenes are rendered by scripts/demo_scenes (nothing read from var/), the
model is models/nesydet-demo-obb.pt, its export is made in a temporary cache.

(a) raw forward: the model alone on a batch of 640 px slices already on the device (torch
    fp16 and fp32; onnxruntime's CUDA provider when installed), slices per second;
(b) the pipeline's inference stage on 3072 x 3072 scenes with backend ``auto`` (which
    measures onnxruntime CUDA against torch half precision at load time and keeps the
    faster): slices per second, and its share of the raw throughput of the same runtime
    (target >= 80 %);
(c) whole images (default job config: reasoning, annotated image) through one pipeline, as
    a worker process runs them, in images per hour.

    .venv/bin/python -m bench.gpu [--scenes 4] [--batch 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "nesydet-demo-obb.pt"
SLICE = 640
TARGET_SHARE = 0.8


def offline() -> None:
    """Points ultralytics at a local config dir and font, downloads off (as the Makefile)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from train_demo_model import offline_env  # type: ignore[import-not-found,unused-ignore]

    offline_env(ROOT / "var" / "yolo_cfg")


def per_second(
    call: Callable[[], object], items: int, sync: Callable[[], None], repeats: int
) -> float:
    """Returns items per second over the best of `repeats` timed calls (after two warm-ups)."""
    call(), call()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        sync()
        best = min(best, time.perf_counter() - t0)
    return items / best


def raw_throughput(onnx: Path, batch: int, repeats: int) -> dict[str, float]:
    """Returns slices per second of the bare model per runtime, batch of `batch` slices."""
    import numpy as np
    import torch
    from ultralytics import YOLO  # type: ignore[attr-defined]

    from nesydet.pipeline.backends import onnx_cuda_available

    out: dict[str, float] = {}
    x = torch.rand(batch, 3, SLICE, SLICE, device="cuda")
    module: Any = YOLO(str(MODEL)).model  # the nn.Module (typed loosely by ultralytics)
    net = module.to("cuda").eval()
    with torch.inference_mode():
        out["torch"] = per_second(lambda: net(x), batch, torch.cuda.synchronize, repeats)
        half = net.half()
        xh = x.half()
        out["torch-half"] = per_second(lambda: half(xh), batch, torch.cuda.synchronize, repeats)
    if onnx_cuda_available():
        import onnxruntime  # type: ignore[import-untyped,unused-ignore]

        session = onnxruntime.InferenceSession(
            str(onnx), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        host = x.float().cpu().numpy().astype(np.float32)
        # host arrays in and out, as the pipeline's adapter does
        out["onnxruntime-cuda"] = per_second(
            lambda: session.run(None, {name: host}), batch, lambda: None, repeats
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Runs the measurements and prints them; returns the exit code."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scenes", type=int, default=4, help="3072 x 3072 scenes for (b) and (c)")
    ap.add_argument("--batch", type=int, default=16, help="slices per model call")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument(
        "--no-reasoning",
        action="store_true",
        help="(c) without the Prolog stage, for a machine without SWI-Prolog",
    )
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench.gpu: no CUDA device here (no accelerator lent to this run); nothing measured")
        return 0
    offline()
    sys.path.insert(0, str(ROOT / "scripts"))
    from demo_scenes import generate_scene  # type: ignore[import-not-found,unused-ignore]

    from nesydet.pipeline import Pipeline, PipelineConfig
    from nesydet.pipeline.config import ReasoningConfig
    from nesydet.pipeline.onnx_export import ensure_export

    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        onnx = ensure_export(MODEL, cache)
        raw = raw_throughput(onnx, args.batch, args.repeats)
        print(f"(a) raw forward, batch {args.batch} x {SLICE} px, slices/s:")
        for name, rate in raw.items():
            print(f"    {name:18s} {rate:9.1f}")
        pipe = Pipeline(
            MODEL.parent,
            ROOT / "rules",
            default_model=MODEL.name,
            device="cuda:0",
            backend="auto",
            onnx_cache_dir=cache,
            batch_size=args.batch,
            cpu_threads=os.cpu_count(),
        )
        pipe.warmup()
        assert pipe.backends is not None
        choice = pipe.backends.choices[MODEL.resolve()]
        print(f"backend chosen by auto: {choice.backend} ({choice.reason})")
        scenes = [generate_scene(3072, 3072, (7, k)).image for k in range(args.scenes)]
        config = PipelineConfig(symbolic_reasoning=ReasoningConfig(enabled=not args.no_reasoning))
        pipe.run(scenes[0], config)  # untimed: first-call allocations
        rates, totals = [], []
        stages: dict[str, list[float]] = {}
        for img in scenes:
            t0 = time.perf_counter()
            res = pipe.run(img, config)
            totals.append(time.perf_counter() - t0)
            rates.append(res.stats["slices"] / res.timings["inference"])
            for stage, seconds in res.timings.items():
                stages.setdefault(stage, []).append(seconds)
        rate = statistics.median(rates)
        # The batched adapter runs the same network: its raw rate is torch's at its precision.
        raw_name = choice.backend.replace("torch-batch", "torch")
        ref = raw.get(raw_name, raw["torch"])
        share = rate / ref
        print(
            f"(b) pipeline inference stage: {rate:.1f} slices/s = {share:.0%} of the raw "
            f"{raw_name if raw_name in raw else 'torch'} forward "
            f"(target >= {TARGET_SHARE:.0%}: {'met' if share >= TARGET_SHARE else 'NOT met'})"
        )
        per_image = statistics.median(totals)
        print(
            f"(c) one worker, default job config, 3072 x 3072 scenes: {per_image:.2f} s/image = "
            f"{3600 / per_image:.0f} images/hour (pipeline only: no storage or database"
            + ("; reasoning off: no SWI-Prolog here)" if args.no_reasoning else ")")
        )
        print("    per stage, median s/image: " + ", ".join(
            f"{stage} {statistics.median(v):.3f}" for stage, v in stages.items()
        ))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
