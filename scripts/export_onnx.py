"""Export a YOLO .pt model to ONNX (dynamic input size) for faster CPU inference, offline.

onnxruntime ran the demo YOLO11n-OBB about 2x faster than torch on the 2-core CPU used for
development (bench/quality.py section (e)). The export keeps the training image size in
the ONNX metadata, so full-image inference still runs at the training size, and uses
dynamic axes, so SAHI slices of any size work. The pipeline loads ``.onnx`` files through
the same ultralytics adapter as ``.pt`` files.

Usage::

    python scripts/export_onnx.py models/nesydet-demo-obb.pt --out models/nesydet-demo-obb.onnx
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_demo_model import ROOT, offline_env


def export_onnx(model: Path, out: Path) -> Path:
    """Returns the path of the exported ONNX file written to `out`."""
    offline_env(ROOT / "var" / "yolo_cfg")
    from ultralytics import YOLO  # type: ignore[attr-defined]

    with tempfile.TemporaryDirectory() as tmp:
        # ultralytics writes next to the source file; work on a copy to keep models/ clean
        src = Path(tmp) / model.name
        shutil.copy(model, src)
        yolo = YOLO(str(src))
        imgsz = int(yolo.overrides.get("imgsz") or 640)
        exported = Path(yolo.export(format="onnx", dynamic=True, simplify=True, imgsz=imgsz))
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(exported, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Parses arguments and exports; returns the exit code."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    print(export_onnx(args.model, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
