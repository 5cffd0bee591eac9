"""Train the nesydet demo YOLO11n-OBB model from scratch on the synthetic dataset, offline, on CPU.

Builds the network from ultralytics' ``yolo11n-obb.yaml`` (no pretrained weights), trains on
the tiles written by ``scripts/make_demo_dataset.py``, then strips the optimizer (FP16) and
copies the best checkpoint to ``models/nesydet-demo-obb.pt``. The exact command used for the
committed model is in ``models/nesydet-demo-obb.md``.

Usage::

    python scripts/make_demo_dataset.py --out var/demo_dataset
    python scripts/train_demo_model.py --data var/demo_dataset/data.yaml --hours 0.4

``--init PATH`` trains on from the weights of an earlier run (fine-tuning) instead of a random
network; with ``--hours 0`` the run lasts exactly ``--epochs`` epochs whatever the machine's
speed, which a reproducible run needs (a time cap fits as many epochs as the CPU allows)::

    python scripts/train_demo_model.py --init models/nesydet-demo-obb.pt --hours 0 \
        --epochs 10 --lr0 0.001 --warmup 0.1 --out var/train/finetune.pt --name finetune
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def offline_env(cfg_dir: Path) -> None:
    """Points ultralytics at a local config dir with a local font and disables all downloads."""
    os.environ["YOLO_CONFIG_DIR"] = str(cfg_dir)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    font_dir = cfg_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    import matplotlib  # its bundled DejaVu font stands in for the Arial ultralytics would download

    src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (font_dir / name).exists():
            shutil.copy(src, font_dir / name)


def enable_cpu_bf16() -> None:
    """Lets ultralytics train with bfloat16 autocast on CPU (it only allows CUDA).

    CPUs with AMX/AVX512-BF16 run the convolutions of YOLO11n about 1.5x faster in bf16;
    weights, optimizer and loss stay float32.
    """
    import torch
    import ultralytics.engine.trainer as trainer_mod
    import ultralytics.engine.validator as validator_mod
    import ultralytics.utils.torch_utils as tu

    original = tu.autocast

    def autocast(enabled: Any, device: str = "cuda") -> Any:
        if enabled is torch.bfloat16 and device == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return original(enabled, device)

    for mod in (tu, trainer_mod, validator_mod):
        if hasattr(mod, "autocast"):
            setattr(mod, "autocast", autocast)  # noqa: B010 - the modules declare no such attribute for mypy


def main(argv: list[str] | None = None) -> int:
    """Trains, strips and installs the demo model; returns the exit code."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=ROOT / "var" / "demo_dataset" / "data.yaml")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--hours", type=float, default=0.4, help="wall-clock cap; overrides --epochs")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr0", type=float, default=0.002)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--project", type=Path, default=ROOT / "var" / "train")
    ap.add_argument("--name", default="demo-obb")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast on CPU (AMX)")
    ap.add_argument("--no-val", action="store_true", help="skip per-epoch validation (timing runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "nesydet-demo-obb.pt")
    ap.add_argument(
        "--init",
        type=Path,
        help="start from these weights (a .pt this script made) instead of a random network",
    )
    ap.add_argument("--warmup", type=float, default=0.3, help="warm-up epochs")
    args = ap.parse_args(argv)
    args.project = args.project.resolve()  # ultralytics nests relative projects under runs/

    offline_env(ROOT / "var" / "yolo_cfg")
    from ultralytics import YOLO  # type: ignore[attr-defined]
    from ultralytics.utils.torch_utils import strip_optimizer

    if args.bf16:
        enable_cpu_bf16()
    # The architecture from YAML (random init, no download), or weights of an earlier run.
    model = YOLO(str(args.init) if args.init else "yolo11n-obb.yaml", task="obb")
    t0 = time.time()
    train_kwargs: dict[str, Any] = {
        "data": str(args.data),
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "workers": args.workers,
        "device": "cpu",
        # True keeps the weights of the --init model loaded above (a path would read the
        # file again); False trains the YAML's random network.
        "pretrained": args.init is not None,
        # The CPU budget allows only a few hundred steps: step the optimizer every batch
        # (nbs=batch, no gradient accumulation), fixed AdamW lr, short warm-up.
        "nbs": args.batch,
        "optimizer": "AdamW",
        "lr0": args.lr0,
        "lrf": 0.05,
        "warmup_epochs": args.warmup,
        "amp": "bf16" if args.bf16 else False,
        "val": not args.no_val,
        "cache": "ram",
        "fraction": args.fraction,
        "project": str(args.project),
        "name": args.name,
        "exist_ok": True,
        "plots": False,
        "seed": 0,
        "deterministic": True,
        # Aerial views have no up/down: vertical flips are as valid as horizontal ones.
        "flipud": 0.5,
        "fliplr": 0.5,
        # Small vehicles are ~12 px; +-50 % scale jitter would shrink them below the stride.
        "scale": 0.25,
        "close_mosaic": 1,
        "patience": 100,
        "verbose": False,
    }
    if args.hours > 0:
        train_kwargs["time"] = args.hours
    model.train(**train_kwargs)
    train_s = time.time() - t0
    trainer = model.trainer
    assert trainer is not None
    best = Path(trainer.best)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip_optimizer(best, s=str(args.out))
    size_mb = args.out.stat().st_size / 1e6

    final = YOLO(str(args.out), task="obb")
    m = final.val(
        data=str(args.data),
        imgsz=args.imgsz,
        batch=16,
        device="cpu",
        workers=0,
        plots=False,
        project=str(args.project),
        name=f"{args.name}-val",
        exist_ok=True,
        verbose=True,
    )
    per_class = {
        final.names[int(c)]: round(float(m.box.ap50[i]), 4)
        for i, c in enumerate(m.box.ap_class_index)
    }
    report = {
        "train_seconds": round(train_s, 1),
        "epochs_run": int(trainer.epoch) + 1,
        "imgsz": args.imgsz,
        "size_mb": round(size_mb, 2),
        "val_mAP50": round(float(m.box.map50), 4),
        "val_mAP50_95": round(float(m.box.map), 4),
        "val_precision": round(float(m.box.mp), 4),
        "val_recall": round(float(m.box.mr), 4),
        "val_ap50_per_class": per_class,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    (args.project / f"{args.name}-report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
