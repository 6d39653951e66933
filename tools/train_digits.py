"""Train the comb-cell digit recogniser: `python tools/train_digits.py [--out PATH]`.

Gives the same model again (fixed seeds) from `data/handwriting/` (MNIST test images 0-3999; the
writer-disjoint test split 4000-4999 is never used here). Each training digit is written into a
printed comb cell several times (shift, size, pen width, outline, office/phone damage) and cut and
normalised exactly as a scan is; the "other" class is letters, two digits, crossed-out digits and
scribbles. A NumPy MLP (520 -> 256 ReLU -> 11) is trained with Adam; the temperature of its softmax
is fitted on the calibration images 3500-3999 so that its probabilities mean what they say.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fallbackkit.scan import digits, digits_synth  # noqa: E402

SEED = 20261201
COPIES = 6          # training cells per real digit
OTHER_SHARE = 0.25  # of the training cells, "other"
HIDDEN = 384
EPOCHS = 30


def make_set(images: np.ndarray, labels: np.ndarray, copies: int, n_other: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for c in range(copies):
        for img, lab in zip(images, labels):
            norm = digits_synth.training_cell(img, rng)
            if norm is not None:
                xs.append(norm)
                ys.append(int(lab))
    for _ in range(n_other):
        norm = digits_synth.training_cell(digits_synth.other_image(images, rng), rng)
        if norm is not None:
            xs.append(norm)
            ys.append(digits.OTHER)
    return digits.features(np.stack(xs)), np.array(ys, np.int64)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, epochs: int = EPOCHS) -> dict:
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-3
    xs = ((x - mean) / std).astype(np.float32)
    n, d = xs.shape
    k = 11
    params = {"w1": (rng.normal(0, np.sqrt(2 / d), (d, HIDDEN))).astype(np.float32),
              "b1": np.zeros(HIDDEN, np.float32),
              "w2": (rng.normal(0, np.sqrt(2 / HIDDEN), (HIDDEN, k))).astype(np.float32),
              "b2": np.zeros(k, np.float32)}
    m = {p: np.zeros_like(v) for p, v in params.items()}
    v2 = {p: np.zeros_like(v) for p, v in params.items()}
    lr, b1, b2, eps, wd, batch = 1e-3, 0.9, 0.999, 1e-8, 1e-4, 128
    step = 0
    onehot = np.eye(k, dtype=np.float32)
    for epoch in range(epochs):
        order = rng.permutation(n)
        rate = lr * (0.5 * (1 + np.cos(np.pi * epoch / epochs)))
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            xb, yb = xs[idx], onehot[y[idx]]
            # dropout on the input features and hidden layer keeps the small net from memorising
            h_pre = xb @ params["w1"] + params["b1"]
            h = np.maximum(h_pre, 0)
            drop = (rng.random(h.shape) > 0.3).astype(np.float32) / 0.7
            hd = h * drop
            p = _softmax(hd @ params["w2"] + params["b2"])
            g = (p - yb) / len(idx)
            grads = {"w2": hd.T @ g + wd * params["w2"], "b2": g.sum(axis=0)}
            gh = (g @ params["w2"].T) * drop * (h_pre > 0)
            grads["w1"] = xb.T @ gh + wd * params["w1"]
            grads["b1"] = gh.sum(axis=0)
            step += 1
            for name in params:
                m[name] = b1 * m[name] + (1 - b1) * grads[name]
                v2[name] = b2 * v2[name] + (1 - b2) * grads[name] ** 2
                mh = m[name] / (1 - b1 ** step)
                vh = v2[name] / (1 - b2 ** step)
                params[name] -= (rate * mh / (np.sqrt(vh) + eps)).astype(np.float32)
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32), **params,
            "temperature": np.float32(1.0)}


def fit_temperature(model: digits.Model, x: np.ndarray, y: np.ndarray) -> float:
    z = model.logits(x)
    best, best_t = None, 1.0
    for t in np.arange(0.5, 4.01, 0.05):
        p = _softmax(z / t)
        nll = -np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean()
        if best is None or nll < best:
            best, best_t = nll, float(t)
    return best_t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(digits.MODEL_PATH))
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    args = ap.parse_args()
    t0 = time.time()
    images, labels = digits_synth.load_mnist()
    rng = np.random.default_rng(SEED)
    tr = slice(0, digits_synth.TRAIN_END)
    va = slice(digits_synth.TRAIN_END, digits_synth.VALID_END)
    n_train = digits_synth.TRAIN_END * COPIES
    x, y = make_set(images[tr], labels[tr], COPIES, int(n_train * OTHER_SHARE / (1 - OTHER_SHARE)), rng)
    xv, yv = make_set(images[va], labels[va], 2, 300, rng)
    print(f"training cells {len(y)}, calibration cells {len(yv)} ({time.time() - t0:.0f} s)", flush=True)
    params = train(x, y, rng, args.epochs)
    model = digits.Model(params)
    model.temperature = fit_temperature(model, xv, yv)
    pv = model.probabilities(xv)
    acc = float((pv.argmax(axis=1) == yv).mean())
    print(f"calibration set: top-1 {acc:.4f}, temperature {model.temperature:.2f} "
          f"({time.time() - t0:.0f} s)", flush=True)
    model.save(args.out)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
