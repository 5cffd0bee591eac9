"""Export a YOLO .pt model to ONNX (dynamic axes) for onnxruntime, offline.

The worker does the same at its first start with ``NESYDET_INFERENCE_BACKEND=auto`` (the
default) and caches the file by the .pt's sha256: by default in ``.onnx/`` next to the .pt,
or in ``NESYDET_ONNX_CACHE_DIR``. Run this to make that cache ahead of time (an image build,
a read-only models directory), or to write an export anywhere with ``--out``. The export
keeps the training image size in its metadata (full-image inference runs at that size) and
has dynamic batch, height and width axes (SAHI slices of any size, in batches). The demo
model's export is 11 MB, over the 10 MB the repository takes, so it is made, not committed.

Usage::

    python scripts/export_onnx.py models/nesydet-demo-obb.pt             # into the cache
    python scripts/export_onnx.py models/nesydet-demo-obb.pt --cache-dir var/onnx
    python scripts/export_onnx.py models/nesydet-demo-obb.pt --out /tmp/demo.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_demo_model import ROOT, offline_env

from nesydet.pipeline.onnx_export import ensure_export
from nesydet.pipeline.onnx_export import export_onnx as pipeline_export


def export_onnx(model: Path, out: Path) -> Path:
    """Returns the path of the ONNX export of `model` written to `out`."""
    offline_env(ROOT / "var" / "yolo_cfg")
    return pipeline_export(model, out)


def main(argv: list[str] | None = None) -> int:
    """Parses arguments and exports; returns the exit code."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model", type=Path)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="write the export to this file")
    where.add_argument(
        "--cache-dir", type=Path, help="the cache folder (default: .onnx next to the model)"
    )
    args = ap.parse_args(argv)
    if args.out is not None:
        print(export_onnx(args.model, args.out))
        return 0
    offline_env(ROOT / "var" / "yolo_cfg")
    print(ensure_export(args.model, args.cache_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
