"""What int8 quantization of the default model's ONNX export would buy on the CPU, and cost.

The default path runs the float32 ONNX export on onnxruntime, which gives torch's detections
(the probe's largest score difference is about 1e-6) and is the only part of the pipeline
left that could make it 2x faster than stock SAHI: the forward pass is three quarters of
nesydet's time per image (``bench.sahi_compare``). This bench quantizes the export with
onnxruntime's static quantization (QDQ, int8 weights per channel, uint8 activations,
calibrated on 32 slices of held-out seed 1) in two ways:

* ``int8, head convs``: every layer int8 except the detect head's decoding (its reshapes,
  concatenations and box arithmetic, which would share one scale between pixel coordinates
  and scores and lose every score);
* ``int8, float head``: the whole detect head left in float32.

For each model it prints the forward time per 640 px slice through nesydet's own adapter
(batches of 4, split over the cores as the pipeline does; the models take turns, median of
the rounds) and the detections of one sliced pass over held-out seed 0, merged as the
pipeline merges them: precision, recall, mAP50 (rotated IoU >= 0.5) and border duplicates.

    .venv/bin/python -m bench.int8                 # 6 scenes, 5 timing rounds
    .venv/bin/python -m bench.int8 --limit 2 --rounds 3
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench._reasoning import seed_set
from bench.quality import (
    HELDOUT,
    MODEL,
    ROOT,
    SLICE,
    border_duplicates,
    ensure_heldout,
    gt_boxes,
    raw_boxes,
    sliced_pass,
    table,
)
from nesydet.pipeline.evaluate import ImageBoxes, evaluate
from nesydet.pipeline.image_io import load_image
from nesydet.pipeline.onnx_detector import OnnxRuntimeDetector
from nesydet.pipeline.onnx_export import ensure_export

CALIBRATION_SEED = 1
CALIBRATION_SLICES = 32
BATCH = 4


def calibration_slices(count: int = CALIBRATION_SLICES) -> list[npt.NDArray[np.float32]]:
    """Returns `count` slices of held-out seed 1 as the network takes them (1x3xSxS, [0, 1])."""
    folder = seed_set(CALIBRATION_SEED)
    out: list[npt.NDArray[np.float32]] = []
    for path in sorted((folder / "images").glob("*.png")):
        arr = np.asarray(load_image(path))
        h, w = arr.shape[:2]
        for y in range(0, h - SLICE + 1, 700):
            for x in range(0, w - SLICE + 1, 900):
                tile = arr[y : y + SLICE, x : x + SLICE].transpose(2, 0, 1)[None]
                out.append(np.ascontiguousarray(tile, dtype=np.float32) / 255)
                if len(out) == count:
                    return out
    return out


def head_nodes(model: Path) -> tuple[list[str], list[str]]:
    """Returns the names of the detect head's nodes (the last ``/model.N/`` module): those
    that are not convolutions, and all of them."""
    import onnx

    nodes = onnx.load(str(model)).graph.node
    index = max(int(m.group(1)) for n in nodes if (m := re.match(r"/model\.(\d+)/", n.name)))
    head = [n for n in nodes if n.name.startswith(f"/model.{index}/")]
    return [n.name for n in head if n.op_type != "Conv"], [n.name for n in head]


def quantize(export: Path, out_dir: Path) -> dict[str, Path]:
    """Returns the two int8 models made from `export`, by name."""
    from onnxruntime.quantization import (  # type: ignore[import-untyped]
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import (  # type: ignore[import-untyped]
        quant_pre_process,
    )

    prepared = out_dir / "prepared.onnx"
    quant_pre_process(str(export), str(prepared), skip_symbolic_shape=True)
    slices = calibration_slices()

    class Slices(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it: Iterator[npt.NDArray[np.float32]] = iter(slices)

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            x = next(self._it, None)
            return None if x is None else {"images": x}

    decode, whole = head_nodes(prepared)
    models = {}
    for name, skip in (("int8, head convs", decode), ("int8, float head", whole)):
        path = out_dir / f"{len(models)}.onnx"
        quantize_static(
            str(prepared),
            str(path),
            Slices(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=skip,
        )
        models[name] = path
    return models


def forward_ms(dets: dict[str, OnnxRuntimeDetector], rounds: int) -> dict[str, float]:
    """Returns each detector's median ms per slice over `rounds`, the detectors taking turns."""
    arr = np.asarray(load_image(ensure_heldout()[0]))
    corners = ((0, 0), (0, 600), (600, 0), (600, 600))[:BATCH]
    batch = [arr[y : y + SLICE, x : x + SLICE] for y, x in corners]
    times: dict[str, list[float]] = {name: [] for name in dets}
    for det in dets.values():
        det.predict_batch(batch, 0.25, iou=0.45, imgsz=SLICE)  # warm-up
    for _ in range(rounds):
        for name, det in dets.items():
            started = time.perf_counter()
            det.predict_batch(batch, 0.25, iou=0.45, imgsz=SLICE)
            times[name].append((time.perf_counter() - started) / BATCH * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def quality(det: OnnxRuntimeDetector, images: list[Path]) -> list[object]:
    """Returns P, R, mAP50 and border duplicates of one merged sliced pass over `images`."""
    preds: list[ImageBoxes] = []
    gts: list[ImageBoxes] = []
    dups = np.zeros(7, dtype=np.int64)
    for path in images:
        img = load_image(path)
        w, h = img.size
        windows, variants = sliced_pass(det, img)
        raw, src = variants["nms_border"]
        boxes, gt = raw_boxes(raw, w, h), gt_boxes(path)
        preds.append(boxes)
        gts.append(gt)
        dups += border_duplicates(boxes, gt, windows, w, h, src)
    ev = evaluate(preds, gts)
    return [ev.precision, ev.recall, ev.map50, f"{dups[2]}/{dups[0]}"]


def main(argv: list[str] | None = None) -> int:
    """Runs the bench and prints its table; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="first N held-out scenes (0: all)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds")
    args = parser.parse_args(argv)
    images = ensure_heldout()[: args.limit or None]
    export = ensure_export(ROOT / "models" / MODEL, ROOT / "var" / "onnx")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"float32 (default)": export, **quantize(export, Path(tmp))}
        dets = {name: OnnxRuntimeDetector(path, "cpu") for name, path in paths.items()}
        ms = forward_ms(dets, args.rounds)
        print(
            f"held-out scenes: {len(images)} of {HELDOUT.name}; calibration: "
            f"{CALIBRATION_SLICES} slices of held-out seed {CALIBRATION_SEED}"
        )
        rows = []
        base = ms["float32 (default)"]
        for name, det in dets.items():
            rows.append([name, ms[name], base / ms[name], *quality(det, images)])
    headers = ["model", "ms/slice", "speed-up", "P", "R", "mAP50", "border dups"]
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
