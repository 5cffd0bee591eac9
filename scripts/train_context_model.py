"""Train the context map's surface classifier (models/nesydet-context.npz) on synthetic scenes.

The model is a two-layer perceptron over the per-cell features of
``nesydet.pipeline.context.features``; the labels are the surface layer the scene renderer
paints next to each image (land, water, road, runway, paved, roof). It trains on the scenes
of the demo detector's training split (seeds (seed, 0, i)) and reports on its validation
split ((seed, 1, i)); held-out scenes ((seed, 7, i)) are never used. Deterministic for a
given --seed; one to three minutes on two CPU cores. The file is about 9 KB (the issue's
bound is 10 MB). The committed model: the defaults below (seed 0, 48 training scenes, 64
hidden units, 16 epochs); validation cell accuracy 0.965 (roofs are the weak class: 0.48).

Usage::

    python scripts/train_context_model.py --out models/nesydet-context.npz
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "src"))

from demo_scenes import generate_scene  # noqa: E402

from nesydet.pipeline.context import (  # noqa: E402
    FACTOR,
    FEATURE_VERSION,
    SURFACES,
    SurfaceModel,
    downscale,
    features,
)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def scene_cells(seed: tuple[int, ...], size: int) -> tuple[F32, I64]:
    """Returns one scene's per-cell features (n, F) and surface labels (n,)."""
    scene = generate_scene(size, size, seed)
    small = downscale(np.asarray(scene.image))
    feats = features(small)
    hs, ws = small.shape[:2]
    ys = ((np.arange(hs) + 0.5) * size / hs).astype(int)
    xs = ((np.arange(ws) + 0.5) * size / ws).astype(int)
    labels = scene.surface[np.ix_(ys, xs)].astype(np.int64)
    return feats.reshape(-1, feats.shape[-1]), labels.reshape(-1)


def balanced(feats: F32, labels: I64, per_class: int, rng: np.random.Generator) -> tuple[F32, I64]:
    """Returns up to `per_class` random cells of each surface."""
    keep = []
    for k in range(len(SURFACES)):
        idx = np.nonzero(labels == k)[0]
        keep.append(rng.choice(idx, min(per_class, len(idx)), replace=False))
    sel = np.concatenate(keep)
    return feats[sel], labels[sel]


def collect(
    seeds: list[tuple[int, ...]], size: int, per_class: int | None, rng: np.random.Generator
) -> tuple[F32, I64]:
    """Returns the cells of several scenes (balanced per scene when per_class is set)."""
    xs, ys = [], []
    for k, seed in enumerate(seeds):
        f, y = scene_cells(seed, size)
        if per_class is not None:
            f, y = balanced(f, y, per_class, rng)
        xs.append(f)
        ys.append(y)
        print(f"scene {k + 1}/{len(seeds)}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return np.concatenate(xs), np.concatenate(ys)


def train(x: F32, y: I64, hidden: int, epochs: int, rng: np.random.Generator) -> SurfaceModel:
    """Returns a perceptron trained with Adam on softmax cross-entropy."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xn = ((x - mean) / std).astype(np.float32)
    n_in, n_out = x.shape[1], len(SURFACES)
    params = {
        "w1": (rng.normal(0, np.sqrt(2 / n_in), (n_in, hidden))).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": (rng.normal(0, np.sqrt(1 / hidden), (hidden, n_out))).astype(np.float32),
        "b2": np.zeros(n_out, np.float32),
    }
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    step, batch = 0, 2048
    for epoch in range(epochs):
        lr = 3e-3 * (0.5 ** (epoch // max(1, epochs // 3)))
        order = rng.permutation(len(xn))
        loss_sum = 0.0
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            grads, loss = _grads(params, xn[idx], y[idx])
            loss_sum += loss * len(idx)
            step += 1
            for k, g in grads.items():
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                mh, vh = m[k] / (1 - 0.9**step), v[k] / (1 - 0.999**step)
                params[k] -= (lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
        print(f"epoch {epoch + 1}/{epochs}: loss {loss_sum / len(order):.4f}", file=sys.stderr)
    return SurfaceModel(mean.astype(np.float32), std.astype(np.float32), **params, meta={})


def _grads(p: dict[str, F32], x: F32, y: I64) -> tuple[dict[str, F32], float]:
    h_pre = x @ p["w1"] + p["b1"]
    h = np.maximum(h_pre, 0)
    z = h @ p["w2"] + p["b2"]
    z = z - z.max(axis=1, keepdims=True)
    prob = np.exp(z)
    prob /= prob.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.log(prob[np.arange(n), y] + 1e-9).mean())
    dz = prob
    dz[np.arange(n), y] -= 1
    dz /= n
    dh = (dz @ p["w2"].T) * (h_pre > 0)
    grads = {"w2": h.T @ dz, "b2": dz.sum(0), "w1": x.T @ dh, "b1": dh.sum(0)}
    return {k: g.astype(np.float32) for k, g in grads.items()}, loss


def report(model: SurfaceModel, x: F32, y: I64) -> dict[str, float]:
    """Prints the confusion matrix on all cells of the validation scenes; returns recalls."""
    pred = model.logits(x).argmax(axis=1)
    k = len(SURFACES)
    conf = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    print("rows: truth, columns: predicted (share of the row)")
    print(" " * 8 + "".join(f"{s:>8}" for s in SURFACES))
    for i, s in enumerate(SURFACES):
        row = conf[i] / max(conf[i].sum(), 1)
        print(f"{s:>8}" + "".join(f"{v:8.3f}" for v in row))
    acc = float(np.trace(conf) / conf.sum())
    print(f"cell accuracy {acc:.3f}")
    recalls = {s: float(conf[i, i] / max(conf[i].sum(), 1)) for i, s in enumerate(SURFACES)}
    return {"accuracy": acc, **recalls}


def main(argv: list[str] | None = None) -> int:
    """Trains, reports and saves the model; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "nesydet-context.npz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-scenes", type=int, default=48)
    ap.add_argument("--val-scenes", type=int, default=6)
    ap.add_argument("--scene-size", type=int, default=960)
    ap.add_argument("--per-class", type=int, default=2500, help="cells per surface per scene")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=16)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    train_seeds = [(args.seed, 0, i) for i in range(args.train_scenes)]
    val_seeds = [(args.seed, 1, i) for i in range(args.val_scenes)]
    x, y = collect(train_seeds, args.scene_size, args.per_class, rng)
    print(f"training cells: {len(y)} ({np.bincount(y, minlength=len(SURFACES)).tolist()})")
    model = train(x, y, args.hidden, args.epochs, rng)
    xv, yv = collect(val_seeds, args.scene_size, None, rng)
    scores = report(model, xv, yv)
    meta = {
        "surfaces": list(SURFACES),
        "features": FEATURE_VERSION,
        "factor": FACTOR,
        "train_seeds": f"({args.seed}, 0, 0..{args.train_scenes - 1})",
        "val_seeds": f"({args.seed}, 1, 0..{args.val_scenes - 1})",
        "val": {k: round(v, 4) for k, v in scores.items()},
    }
    model = SurfaceModel(model.mean, model.std, model.w1, model.b1, model.w2, model.b2, meta=meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size} bytes) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
