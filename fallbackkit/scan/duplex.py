"""The back of a sheet in a duplex scan, told by the front just before it in the same file.

On a bilevel scan (CCITT G3/G4, thresholded by the scanner) strong show-through is black like any
ink: a back page that shows its front through the paper cannot be told from a page written on by
looking at it alone. The evidence is the front: a back whose ink is, within a small tolerance, the
previous page's ink seen in a mirror (after the small shift, scale and turn a duplex scanner gives
between the two sides), with no ink outside that mirror, is the front showing through: a blank
page. Ink the mirror does not explain was put on the back: a person looks at the paper.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

WORK_DPI = 100.0          # ink maps compared on a copy at about 100 dpi (an A4 side ~1170 px)
ALIGN_DPI = 50.0          # the mirror aligned to the back on a coarser copy
INK_CONTRAST = 0.40       # as blank_page: this much darker than the local paper is ink on the back
FRONT_CONTRAST = 0.25     # the front's ink, a bit fainter allowed (what shows through is its darkest part)
TOLERANCE_MM = 0.5        # show-through ink lies this close to the mirrored front's ink, once aligned
STROKE_MM = 1.5          # unexplained ink this long is writing (a short word over the front's ink still leaves this)
MIN_EXPLAINED = 0.97      # share of the back's ink the mirror must explain
MIN_CORRELATION = 0.65    # the aligned mirror and the back must really be the same picture (true backs: 0.78-0.9)
MAX_SHIFT_MM = 10.0       # the two sides of a duplex scan are a few mm apart, not a line of a table
MAX_SCALE_OFF = 0.03      # nor scaled by more than 3 %
EDGE = 0.03               # scanner edge shadows at the border are not content (as blank_page)


def _small(image: np.ndarray, dpi: float | None, target: float) -> np.ndarray:
    h, w = image.shape
    f = (dpi / target) if dpi else max(h, w) / (297.0 / 25.4 * target)
    if f <= 1.05:
        return image
    return cv2.resize(image, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)


def _ink(small: np.ndarray, contrast: float, despeckle: bool) -> np.ndarray:
    """Ink against the local paper (as engine._ink_marks), speckle removed on the back. The front
    keeps its thinnest lines (a median would take a one-pixel rule away, while the same rule,
    blurred through the paper, comes out thicker on the back)."""
    if despeckle:
        small = cv2.medianBlur(small, 3)
    paper = cv2.dilate(small, np.ones((15, 15), np.uint8)).astype(np.float32)
    return ((paper - small) / np.maximum(paper, 1.0) >= contrast).astype(np.uint8)


def _shift(moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, float]:
    """The translation taking `moving` onto `fixed` (phase correlation of blurred ink maps), as
    ECC's initial warp (which takes fixed points to moving points), and the peak's response."""
    (dx, dy), response = cv2.phaseCorrelate(cv2.GaussianBlur(moving, (0, 0), 2.0),
                                            cv2.GaussianBlur(fixed, (0, 0), 2.0))  # fixed(x) ~ moving(x - d)
    return np.array([[1, 0, -dx], [0, 1, -dy]], np.float32), float(response)


def _align(moving: np.ndarray, fixed: np.ndarray, warp: np.ndarray) -> tuple[np.ndarray, float]:
    """Refine to an affine transform (shift, scale, a small turn) by ECC; the warp and the
    correlation (0 when ECC did not converge: the shift alone is kept)."""
    try:
        cc, warp = cv2.findTransformECC(cv2.GaussianBlur(fixed, (0, 0), 1.5), cv2.GaussianBlur(moving, (0, 0), 1.5),
                                        warp.copy(), cv2.MOTION_AFFINE,
                                        (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-5), None, 1)
    except cv2.error:
        return warp, 0.0
    return warp, float(cc)


def compare(back: np.ndarray, front: np.ndarray, back_dpi: float | None = None,
            front_dpi: float | None = None) -> dict[str, Any]:
    """Measure how much of the back's ink the front's mirror explains. Both 2-D uint8 grey pages
    as decoded. Tries the mirror of a long-edge turn (left-right) and of a short-edge turn
    (top-bottom) and keeps the better one. Raw measures, kept in the capture's quality."""
    b_small = _small(back, back_dpi, WORK_DPI)
    f_small = _small(front, front_dpi, WORK_DPI)
    if f_small.shape != b_small.shape:  # a scanner gives both sides the same size; tolerate a few pixels
        f_small = cv2.resize(f_small, (b_small.shape[1], b_small.shape[0]), interpolation=cv2.INTER_AREA)
    sh, sw = b_small.shape
    by, bx = int(sh * EDGE), int(sw * EDGE)
    back_ink = _ink(b_small, INK_CONTRAST, True)
    back_ink[:by], back_ink[sh - by:], back_ink[:, :bx], back_ink[:, sw - bx:] = 0, 0, 0, 0
    front_ink = _ink(f_small, FRONT_CONTRAST, False)
    px_per_mm = max(sh, sw) / 297.0
    k = ALIGN_DPI / WORK_DPI
    fixed = cv2.resize(back_ink.astype(np.float32), None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    turns = []
    for turn, mirror in (("long_edge", front_ink[:, ::-1]), ("short_edge", front_ink[::-1, :])):
        mirror = np.ascontiguousarray(mirror)
        moving = cv2.resize(mirror.astype(np.float32), (fixed.shape[1], fixed.shape[0]), interpolation=cv2.INTER_AREA)
        turns.append((*_shift(moving, fixed), turn, mirror, moving))
    warp, response, turn, mirror, moving = max(turns, key=lambda t: t[1])  # the way the sheet was turned
    warp, cc = _align(moving, fixed, warp)
    full = warp.copy()
    full[:, 2] /= k
    placed = cv2.warpAffine(mirror, full, (sw, sh), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    r = max(1, round(TOLERANCE_MM * px_per_mm))
    near = cv2.dilate(placed, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    outside = (back_ink & (1 - near)).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(outside, connectivity=8)
    longest = int(stats[1:, 2:4].max()) if n > 1 else 0
    ink_px = int(back_ink.sum())
    return {"turn": turn, "correlation": round(cc, 3), "response": round(response, 3),
            "shift_mm": [round(float(full[0, 2]) / px_per_mm, 2), round(float(full[1, 2]) / px_per_mm, 2)],
            "scale": [round(float(np.hypot(*full[:, 0])), 4), round(float(np.hypot(*full[:, 1])), 4)],
            "back_ink_share": round(ink_px / back_ink.size, 5),
            "explained": round(1.0 - int(outside.sum()) / ink_px, 4) if ink_px else 1.0,
            "unexplained_longest_mm": round(longest / px_per_mm, 1)}


def is_mirror(m: dict[str, Any]) -> bool:
    """Is the back that front seen through the paper at all: the mirror aligns with it closely, by
    the small shift and scale of a duplex scan? (Two pages of the same kind, e.g. a cover's two
    pages of tables, can align at some far shift: that is no back.)"""
    return (m["correlation"] >= MIN_CORRELATION and max(map(abs, m["shift_mm"])) <= MAX_SHIFT_MM
            and all(abs(s - 1.0) <= MAX_SCALE_OFF for s in m["scale"]))


def is_show_through(m: dict[str, Any]) -> bool:
    """Only the front's mirror on the back: aligned for real, every ink explained, no stroke outside."""
    return is_mirror(m) and m["explained"] >= MIN_EXPLAINED and m["unexplained_longest_mm"] < STROKE_MM


__all__ = ["compare", "is_mirror", "is_show_through"]
