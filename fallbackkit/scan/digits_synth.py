"""Real handwritten digits put into comb boxes, for training, the tests and the benchmark.

A digit image (MNIST style: white ink on black, 28 x 28) is cropped to its ink, scaled to a
handwriting height, thickened or thinned like another pen, and laid on the page through the page
transform, off-centre and sometimes touching the printed outline. Training cells are made the same
way on a small printed comb and damaged with `degrade.py`, so that the recogniser learns what a
digit looks like after pen, box and scanner. The "other" class (letters, two digits, crossed-out
digits, scribbles) is drawn here too. NumPy and OpenCV only; every function takes a seeded rng.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from . import degrade
from .digits import cell_patch, normalise

DATA_PATH = Path(__file__).resolve().parents[2] / "data" / "handwriting" / "mnist-test-first5000.npz"
# more training writers: the 60,000 MNIST training-set digits (other writers than the test set's), all train
EXTRA_TRAIN_PATH = DATA_PATH.with_name("mnist-train60000.npz")
CELL_W, CELL_H = 5.5, 8.0
TRAIN_END, VALID_END = 3500, 4000     # by position: train [0, 3500), calibrate [3500, 4000), test [4000, 5000)
LETTERS = "ACEFHKLMNPRUVWXYacdefhkmnprtuvwxy"  # letters not easily read as a digit


def load_mnist(path: Path | str = DATA_PATH) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as z:
        return z["images"], z["labels"]


def load_training_digits(extra: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Every digit the models may be trained on: our file's train split (0-3499), then, with extra,
    the 60,000 MNIST training-set digits of EXTRA_TRAIN_PATH. Never the calibrate or test split."""
    images, labels = load_mnist()
    images, labels = images[:TRAIN_END], labels[:TRAIN_END]
    if extra:
        more, more_labels = load_mnist(EXTRA_TRAIN_PATH)
        images, labels = np.concatenate([images, more]), np.concatenate([labels, more_labels])
    return images, labels


def _ink_crop(img: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(img > 30)
    if len(ys) == 0:
        return img
    return img[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def ink_alpha(img28: np.ndarray, cell_mm, ppm: float, rng: np.random.Generator
              ) -> tuple[np.ndarray, tuple[float, float]]:
    """An alpha map (0..1) of the digit sized for a cell at ppm px/mm, and its top-left (mm) on the page."""
    x, y, w, h = cell_mm
    ink = _ink_crop(img28).astype(np.float32) / 255.0
    ih, iw = ink.shape
    height_mm = float(rng.uniform(0.55, 0.9)) * h
    width_mm = min(height_mm * iw / ih, w * 1.05)
    height_mm = min(height_mm, width_mm * ih / iw) if iw / ih * height_mm > w * 1.05 else height_mm
    nh, nw = max(2, int(round(height_mm * ppm))), max(2, int(round(width_mm * ppm)))
    alpha = cv2.resize(ink, (nw, nh), interpolation=cv2.INTER_LINEAR)
    # another pen: the MNIST stroke scaled up is ~0.7 mm wide; thin it or thicken it
    k = int(round(ppm * float(rng.uniform(0.0, 0.35))))
    if k >= 1:
        op = cv2.erode if rng.random() < 0.7 else cv2.dilate
        alpha = op(alpha, np.ones((k, k), np.uint8))
    alpha = np.clip(alpha * 1.3, 0, 1)
    slack_x = max(0.0, w - width_mm)
    slack_y = max(0.0, h - height_mm)
    ox = x + float(rng.uniform(-0.3, slack_x + 0.3)) if slack_x > 0 else x + (w - width_mm) / 2
    oy = y + float(rng.uniform(-0.4, slack_y + 0.4))
    return alpha, (ox, oy)


def paste(page: np.ndarray, hmat: np.ndarray, alpha: np.ndarray, top_left_mm, ppm: float,
          grey: int = 30) -> None:
    """Lay an alpha map drawn at ppm px/mm onto the page at top_left_mm through hmat (in place)."""
    t = np.array([[1 / ppm, 0, top_left_mm[0]], [0, 1 / ppm, top_left_mm[1]], [0, 0, 1]], float)
    m = np.asarray(hmat, float) @ t
    warped = cv2.warpPerspective(alpha, m, (page.shape[1], page.shape[0]), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ys, xs = np.nonzero(warped > 0.02)
    if len(ys) == 0:
        return
    r0, r1, c0, c1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    a = warped[r0:r1, c0:c1]
    region = page[r0:r1, c0:c1].astype(np.float32)
    ink = region * (1 - a) + grey * a
    page[r0:r1, c0:c1] = np.minimum(region, ink).astype(np.uint8)


def write_digit(page: np.ndarray, hmat: np.ndarray, cell_mm, img28: np.ndarray,
                rng: np.random.Generator) -> None:
    """A real handwritten digit into one comb cell of a rendered page (page mm -> px by hmat)."""
    j = np.asarray(hmat, float)
    ppm = float(math.hypot(j[0, 0], j[1, 0])) or 8.0
    alpha, tl = ink_alpha(img28, cell_mm, ppm, rng)
    paste(page, hmat, alpha, tl, ppm, int(rng.integers(0, 70)))


# --- plausible values written by the simulator ---------------------------------------------------
class DigitWriter:
    """Writes plausible values into comb fields with real handwritten digits of the train split
    (never the writer-disjoint test split), so that a simulated ward's scans get digit suggestions:
    times of day (a MAR time near its column's scheduled time), today's date (a birth date in the
    past), numbers within the template's plausible range (`range:`, its middle half)."""

    def __init__(self, ranges: dict[str, tuple[float, float]] | None = None, today=None,
                 path: Path | str = DATA_PATH):
        import datetime as _dt
        images, labels = load_mnist(path)
        self.by_digit = {d: images[:TRAIN_END][labels[:TRAIN_END] == d] for d in range(10)}
        self.ranges = ranges or {}
        self.today = today or _dt.date.today()

    def text_for(self, field: dict, rng: np.random.Generator) -> str:
        """What a nurse writes in the field's boxes, one character a box (a space: left empty)."""
        import datetime as _dt
        n = len(field.get("cells_mm") or [])
        base = field["name"].split(".")[-1]
        if field["type"] == "datetime":
            fmt = field.get("format") or "datetime"
            slot = field.get("scheduled")
            if slot and ":" in slot:
                h, m = (int(v) for v in slot.split(":")[:2])
                at = (h * 60 + m + int(rng.integers(-40, 41))) % 1440
            else:
                at = int(rng.integers(0, 1440))
            hhmm = f"{at // 60:02d}{at % 60:02d}"
            day = (self.today - _dt.timedelta(days=int(rng.integers(365 * 20, 365 * 85))) if base.endswith("birth_date")
                   else self.today)
            text = {"time": hhmm, "date": day.strftime("%d%m%Y")}.get(fmt, day.strftime("%d%m%Y") + hhmm)
            return text if len(text) == n else ""
        ints, decs = int(field.get("digits") or 0), int(field.get("decimals") or 0)
        lo, hi = self.ranges.get(field["name"]) or self.ranges.get(base) or (0, 10 ** ints - 1)
        lo, hi = lo + (hi - lo) * 0.25, lo + (hi - lo) * 0.6
        v = float(rng.uniform(lo, hi))
        whole = str(int(v))
        if len(whole) > ints:
            return ""
        frac = str(int((v - int(v)) * 10 ** decs)).rjust(decs, "0") if decs else ""
        return whole.rjust(ints) + frac

    def write(self, page: np.ndarray, hmat: np.ndarray, field: dict, text: str, rng: np.random.Generator) -> None:
        for cell, ch in zip(field["cells_mm"], text):
            if ch.strip():
                pool = self.by_digit[int(ch)]
                write_digit(page, hmat, cell, pool[int(rng.integers(len(pool)))], rng)


# --- the "other" class ---------------------------------------------------------------------------
def letter_image(rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((64, 64), np.uint8)
    ch = LETTERS[int(rng.integers(len(LETTERS)))]
    font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
                           cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_ITALIC]))
    cv2.putText(img, ch, (8, 50), font, 1.6, 255, int(rng.integers(2, 6)), cv2.LINE_AA)
    return img


def crossed_image(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = digit.copy()
    t = int(rng.integers(2, 4))
    kind = rng.integers(3)
    if kind == 0:   # an X over it
        cv2.line(img, (3, 3), (24, 24), 255, t, cv2.LINE_AA)
        cv2.line(img, (24, 3), (3, 24), 255, t, cv2.LINE_AA)
    elif kind == 1:  # zigzag hatching
        n = int(rng.integers(3, 7))
        pts = [(int(3 + 22 * (i % 2)), int(3 + 22 * i / n + rng.integers(-2, 3))) for i in range(n + 1)]
        cv2.polylines(img, [np.array(pts, np.int32)], False, 255, t, cv2.LINE_AA)
    else:            # a long diagonal
        a = float(rng.uniform(30, 60)) * (1 if rng.random() < 0.5 else -1)
        dx, dy = 13 * math.cos(math.radians(a)), 13 * math.sin(math.radians(a))
        cv2.line(img, (int(14 - dx), int(14 - dy)), (int(14 + dx), int(14 + dy)), 255, t + 1, cv2.LINE_AA)
        cv2.line(img, (int(14 - dx), int(16 - dy)), (int(14 + dx), int(16 + dy)), 255, t, cv2.LINE_AA)
    return img


def two_digits_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.hstack([_ink_crop(a), np.zeros((_ink_crop(a).shape[0], 3), np.uint8),
                      cv2.resize(_ink_crop(b), (_ink_crop(b).shape[1], _ink_crop(a).shape[0]))])


def scribble_image(rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((28, 28), np.uint8)
    n = int(rng.integers(5, 12))
    pts = rng.integers(2, 26, (n, 2)).astype(np.int32)
    cv2.polylines(img, [pts], False, 255, int(rng.integers(1, 4)), cv2.LINE_AA)
    return img


def other_image(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(4)
    pick = lambda: images[int(rng.integers(len(images)))]  # noqa: E731
    if kind == 0:
        return letter_image(rng)
    if kind == 1:
        return crossed_image(pick(), rng)
    if kind == 2:
        return two_digits_image(pick(), pick())
    return scribble_image(rng)


# --- training cells ------------------------------------------------------------------------------
def _phone(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Phone-photo damage on a small patch: blur, uneven light, noise, JPEG."""
    out = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 1.2))).astype(np.float32)
    h, w = out.shape
    g = np.linspace(1.0, 1.0 - float(rng.uniform(0, 0.3)), w, dtype=np.float32)[None, :]
    out = out * g * float(rng.uniform(0.6, 1.0))
    out += rng.normal(0, float(rng.uniform(2, 6)), out.shape).astype(np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(65, 90))])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def training_cell(img: np.ndarray, rng: np.random.Generator, tier: str | None = None) -> np.ndarray | None:
    """A printed comb cell with img written in it, damaged (tier: clean, office, phone; None: any),
    cut and normalised like a scan."""
    ppm = float(rng.uniform(5.5, 10.5)) if tier is None else (200 / 25.4 if tier != "phone"
                                                                else float(rng.uniform(6.0, 9.0)))
    margin = 3.0
    W, H = int(round((CELL_W + 2 * margin) * ppm)), int(round((CELL_H + 2 * margin) * ppm))
    page = np.full((H, W), int(rng.integers(225, 256)), np.uint8)
    line = max(1, int(round(0.3 * ppm)))
    outline = int(rng.integers(0, 80))
    x0, y0 = int(round(margin * ppm)), int(round(margin * ppm))
    x1, y1 = int(round((margin + CELL_W) * ppm)), int(round((margin + CELL_H) * ppm))
    cv2.line(page, (0, y0), (W, y0), outline, line)
    cv2.line(page, (0, y1), (W, y1), outline, line)
    for xv in (x0, x1):
        cv2.line(page, (xv, 0 if False else y0), (xv, y1), outline, line)
    hmat = np.array([[ppm, 0, 0], [0, ppm, 0], [0, 0, 1]], float)
    cell = (margin, margin, CELL_W, CELL_H)
    alpha, tl = ink_alpha(img, cell, ppm, rng)
    paste(page, hmat, alpha, tl, ppm, int(rng.integers(0, 90)))
    r = rng.random() if tier is None else {"office": 0.0, "phone": 0.6, "clean": 1.0}[tier]
    if r < 0.5:
        page = degrade.office(page, rng)
    elif r < 0.85:
        page = _phone(page, rng)
    shift = tuple(float(v) for v in rng.uniform(-0.25, 0.25, 2))
    black = float(rng.uniform(0, 60))
    norm, _ = normalise(cell_patch(page, hmat, (margin + shift[0], margin + shift[1], CELL_W, CELL_H)), black)
    return norm


__all__ = ["DigitWriter", "load_mnist", "load_training_digits", "write_digit", "training_cell", "other_image", "crossed_image", "letter_image",
           "TRAIN_END", "VALID_END"]
