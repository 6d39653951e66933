"""Digit recognition in comb cells: per cell, empty / one digit 0-9 / something else.

Each cell is cut upright from the scan through the page transform (with the field's measured
outline shift), its printed outline is masked out, specks are dropped and the ink is normalised
the way MNIST digits are (longer side 20 px, centred by centre of mass in 28 x 28). A small
multilayer perceptron over HOG and pixel features gives 11 probabilities (0-9 and "other": a letter,
a scribble, two digits, a crossed-out digit), calibrated by temperature on held-out digits.

The model is `digits_model.npz` beside this file, made by `tools/train_digits.py` from the data in
`data/handwriting/` (fixed seeds); it needs NumPy and OpenCV only. What a cell reads as is stored as
raw measures (ink, top alternatives) so that the suggestion can be decided again later.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import cv2
import numpy as np

CELL_PPM = 8.0          # px/mm of the upright cell cut
OUTLINE_PAD_MM = 0.45   # half-width of the band masked around the printed cell outline
INK_DARK = 0.35         # darkness of a pixel that counts as ink
SPECK_PX = 6            # connected ink smaller than this (px at CELL_PPM) is dust
EMPTY_INK_PX = 24       # a cell with less ink than this (after specks) is empty
OTHER = 10              # class index of "something else"
LABELS = [str(d) for d in range(10)] + ["other"]
MODEL_PATH = Path(__file__).with_name("digits_model.npz")
TOP_K = 3

HOG_BINS = 9


def cell_patch(image: np.ndarray, hmat: np.ndarray, cell_mm, shift_mm=(0.0, 0.0)) -> np.ndarray:
    """The cell [x, y, w, h] mm (plus 1 mm around) upright at CELL_PPM, grey uint8."""
    from .read import patch
    x, y, w, h = cell_mm
    return patch(image, hmat, x + shift_mm[0] - 1.0, y + shift_mm[1] - 1.0, w + 2.0, h + 2.0, CELL_PPM)


def normalise(p: np.ndarray, black: float) -> tuple[np.ndarray | None, int]:
    """(28 x 28 float32 ink image 0..1, or None when empty; ink pixels) of one cell_patch."""
    flat = p.ravel()
    k = int(len(flat) * 0.92)
    paper = float(np.partition(flat, k)[k])
    span = max(paper - black, 25.0)
    dark = np.clip((paper - p.astype(np.float32)) / span, 0.0, 1.0)
    m = int(round(1.0 * CELL_PPM))
    pad = int(round(OUTLINE_PAD_MM * CELL_PPM))
    h, w = p.shape
    inside = np.zeros(p.shape, bool)
    inside[m + pad:h - m - pad, m + pad:w - m - pad] = True
    dark[~inside] = 0.0
    ink = (dark >= INK_DARK).astype(np.uint8)
    # outline remnants (a scale or shift the transform did not catch): a row or column near the
    # edge that is ink along nearly all the cell is printed line, not a stroke
    r0, r1, c0, c1 = m + pad, h - m - pad, m + pad, w - m - pad
    edge = int(round(0.6 * CELL_PPM))
    for rows in (slice(r0, r0 + edge), slice(r1 - edge, r1)):
        band = ink[rows, c0:c1]
        full = band.mean(axis=1) > 0.9
        band[full] = 0
    for cols in (slice(c0, c0 + edge), slice(c1 - edge, c1)):
        band = ink[r0:r1, cols]
        full = band.mean(axis=0) > 0.9
        band[:, full] = 0
    dark = dark * ink.astype(np.float32) + dark * (dark < INK_DARK)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= SPECK_PX
    total = int(stats[1:, cv2.CC_STAT_AREA][keep[1:]].sum()) if n > 1 else 0
    if total < EMPTY_INK_PX:
        return None, total
    mask = keep[lab]
    dark = np.where(cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0, dark, 0.0)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = dark[y0:y1, x0:x1]
    ch, cw = crop.shape
    s = 20.0 / max(ch, cw)
    nh, nw = max(1, int(round(ch * s))), max(1, int(round(cw * s)))
    small = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.zeros((28, 28), np.float32)
    tot = float(small.sum()) or 1.0
    cy = float((small.sum(axis=1) * np.arange(nh)).sum()) / tot
    cx = float((small.sum(axis=0) * np.arange(nw)).sum()) / tot
    oy = int(round(14 - cy))
    ox = int(round(14 - cx))
    oy = min(max(oy, 0), 28 - nh)
    ox = min(max(ox, 0), 28 - nw)
    out[oy:oy + nh, ox:ox + nw] = small
    out = deskew(out)
    mx = float(out.max())
    if mx > 0:
        out /= mx
    return out, total


def deskew(img: np.ndarray) -> np.ndarray:
    """Shear a 28 x 28 ink image so that its principal axis is upright (second moments), the usual
    MNIST normalisation: slanted handwriting then looks like upright handwriting to the model."""
    m = cv2.moments(img)
    if abs(m["mu02"]) < 1e-2:
        return img
    skew = m["mu11"] / m["mu02"]
    skew = max(-1.0, min(1.0, skew))
    cy = m["m01"] / max(m["m00"], 1e-6)
    mat = np.float32([[1, skew, -skew * cy], [0, 1, 0]])
    mat[0, 2] += m["m10"] / max(m["m00"], 1e-6) - 14
    return cv2.warpAffine(img, mat, (28, 28), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderValue=0.0)


def hog(images: np.ndarray) -> np.ndarray:
    """Histograms of oriented gradients (N, 324): 7 x 7 px cells, 9 unsigned orientation bins
    (linear between bins), 2 x 2-cell blocks at a 1-cell stride, each block L2-normalised."""
    im = images.astype(np.float32)
    gx = np.zeros_like(im)
    gy = np.zeros_like(im)
    gx[:, :, 1:-1] = im[:, :, 2:] - im[:, :, :-2]
    gy[:, 1:-1, :] = im[:, 2:, :] - im[:, :-2, :]
    mag = np.sqrt(gx * gx + gy * gy)
    ang = (np.arctan2(gy, gx) % np.pi) / np.pi * HOG_BINS
    lo = np.floor(ang).astype(np.int64) % HOG_BINS
    hi = (lo + 1) % HOG_BINS
    w_hi = ang - np.floor(ang)
    n = len(im)
    hist = np.zeros((n, 28, 28, HOG_BINS), np.float32)
    idx = np.indices((n, 28, 28))
    np.add.at(hist, (idx[0], idx[1], idx[2], lo), mag * (1 - w_hi))
    np.add.at(hist, (idx[0], idx[1], idx[2], hi), mag * w_hi)
    cells = hist.reshape(n, 4, 7, 4, 7, HOG_BINS).sum(axis=(2, 4))
    blocks = np.concatenate([cells[:, i:i + 2, j:j + 2].reshape(n, -1)
                             for i in range(3) for j in range(3)], axis=1).reshape(n, 9, -1)
    blocks /= np.sqrt((blocks ** 2).sum(axis=2, keepdims=True) + 1e-6)
    return blocks.reshape(n, -1)


def features(images: np.ndarray) -> np.ndarray:
    """HOG (324) and 14 x 14 pixels (196) of 28 x 28 ink images (N, 28, 28) in 0..1."""
    images = np.asarray(images, np.float32)
    pixels = images.reshape(len(images), 14, 2, 14, 2).mean(axis=(2, 4)).reshape(len(images), -1)
    return np.concatenate([hog(images), pixels], axis=1).astype(np.float32)


class Model:
    """The MLP: standardise, hidden ReLU layer, softmax with a calibration temperature."""

    def __init__(self, params: dict[str, np.ndarray]):
        self.mean = params["mean"].astype(np.float32)
        self.std = params["std"].astype(np.float32)
        self.w1, self.b1 = params["w1"].astype(np.float32), params["b1"].astype(np.float32)
        self.w2, self.b2 = params["w2"].astype(np.float32), params["b2"].astype(np.float32)
        self.temperature = float(params["temperature"])

    def hidden(self, feats: np.ndarray) -> np.ndarray:
        return np.maximum(((feats - self.mean) / self.std) @ self.w1 + self.b1, 0.0)

    def logits(self, feats: np.ndarray) -> np.ndarray:
        return self.hidden(feats) @ self.w2 + self.b2

    def probabilities(self, feats: np.ndarray) -> np.ndarray:
        z = self.logits(feats) / self.temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, path: Path | str) -> None:
        np.savez_compressed(path, mean=self.mean, std=self.std, w1=self.w1.astype(np.float16),
                            b1=self.b1, w2=self.w2.astype(np.float16), b2=self.b2,
                            temperature=np.float32(self.temperature))


@functools.lru_cache(maxsize=1)
def model() -> Model:
    with np.load(MODEL_PATH) as z:
        return Model({k: z[k] for k in z.files})


def classify(images: list[np.ndarray]) -> np.ndarray:
    """(N, 11) calibrated probabilities of normalised cell images."""
    if not images:
        return np.zeros((0, 11), np.float32)
    return model().probabilities(features(np.stack(images)))


def read_cells(image: np.ndarray, hmat: np.ndarray, field: dict, black: float,
               shift_mm=(0.0, 0.0)) -> list[dict[str, Any]]:
    """Raw per-cell measures of a comb field: ink pixels and, for inked cells, the top
    alternatives [[label, probability], ...] (label '0'-'9' or 'other')."""
    cells = field.get("cells_mm") or []
    out: list[dict[str, Any]] = []
    images, where = [], []
    for i, c in enumerate(cells):
        norm, ink = normalise(cell_patch(image, hmat, c, shift_mm), black)
        out.append({"ink": ink})
        if norm is not None:
            images.append(norm)
            where.append(i)
    probs = classify(images)
    for i, p in zip(where, probs):
        top = np.argsort(-p)[:TOP_K]
        out[i]["alts"] = [[LABELS[j], round(float(p[j]), 4)] for j in top]
    return out


__all__ = ["read_cells", "normalise", "cell_patch", "features", "classify", "Model", "model", "LABELS"]
