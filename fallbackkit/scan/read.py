"""Measuring and deciding the fields of an aligned page.

Measuring and deciding are separate on purpose: `measure_*` turns pixels into raw numbers that are
stored, `decide` turns raw numbers into a value and a status. Thresholds can change later and be
re-applied to stored readings without rescanning.

Marks (checkbox, choice, multichoice): each 5 mm box is warped upright at 8 px/mm, shifted by up
to 0.7 mm so that its printed outline lines up, and measured: ink inside the box shrunk to 80 %
(the outline is ignored), faint ink, and ink in a thin ring just outside (marks that spill out).
Handwritten fields: ink is looked for in 2 mm tiles of the field box, with the printed outline,
comb cells and ruling masked out; the field is cropped at 150 dpi for a person to transcribe.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import cv2
import numpy as np

from ..templates.contract import LINE_PITCH
from ..templates.model import default_transcribe
from .reasons import english, join

BOX_PX_PER_MM = 8.0
CROP_PX_PER_MM = 150 / 25.4
SEARCH_MM = 0.7

# Ink darkness is measured relative to the local paper (0) and the corner marks' black (1).
PAPER_QUANTILE = 0.92  # a patch's paper level: this quantile of its grey values (ink and print cover < 8 %)
MIN_SPAN = 25.0        # paper minus black, at least this many grey levels (a washed-out patch is not all ink)
DARK_FOR_OUTLINE = 0.15  # pixels this dark show the printed outline when a box or frame is lined up
BOX_MARGIN_MM = 2.0    # paper warped around each mark box (the outline search and the spill strips)
SHRINK = 0.1           # a box's inside is measured shrunk by 10 % of its side on each edge (the outline left out)
STRIP_MM = (0.35, 0.8)  # the spill strips: this far outside the box outline (beyond the printed line's blur)
SHIFT_PENALTY = 0.004  # per pixel of shift, so that of two equally good outline positions the nearer wins
INK_DARK = 0.42        # a pixel at least this dark is ink
FAINT_DARK = 0.18      # lighter than INK_DARK but at least this: faint ink (pencil, dry pen)

# Box decisions (fraction of the shrunk interior), after SDAPS.
EMPTY_MAX = 0.03
MARK_MIN = 0.08
MARK_MAX = 0.60
CANCEL_MIN = 0.72
FAINT_MAX = 0.05       # faint-ink fraction above which an otherwise empty box is a faint mark
SPILL_MAX = 0.15       # ink fraction in one side strip just outside the box
SPILL_EMPTY_MAX = 0.12 # an empty box with this much ink just outside: something was marked near it

# Visibility: the printed outline of every box, comb cell and handwriting frame must be in the scan.
OUTLINE_BAND_PX = 3    # the darkest pixel within +-3 px across a printed line counts (0.4-0.5 mm)
OUTLINE_WINDOW_MM = 1.5  # the weakest 1.5 mm stretch of each edge is the edge's evidence
VISIBLE_RATIO = 0.4    # a piece of outline under 40 % of the page's typical outline darkness: not seen

# Handwritten fields
TILE_MM = 2.0
TILE_INK = 0.06        # a tile with this much ink is inked (SDAPS uses 6 %)
TILE_FAINT = 0.025     # below TILE_INK but above this: faint, a person looks
TILE_LIGHT = 0.08      # share of a tile with light ink (pencil, dry pen) that makes a person look
HAND_INK_DARK = INK_DARK - 0.1  # handwriting counts as ink a little lighter than marks (a thin pen line's blur)
PRINT_MASK_MM = 0.45   # printed outline, comb cells and ruling masked this far on either side (line + blur + shift)
TILE_MIN_USABLE = 0.3  # a tile counts when at least 30 % of it is unmasked
HANDWRITTEN = ("number", "datetime", "text", "initials", "signature")
SIGNED_MIN_TILES = 2   # ink-only fields: fewer inked 2 mm tiles than this is a trace, not a signature
CROP_MARGIN_MM = 1.5   # paper kept around a handwritten field's box in its crop
MARK_TYPES = ("checkbox", "choice", "multichoice")


def patch(image: np.ndarray, hmat: np.ndarray, x_mm: float, y_mm: float, w_mm: float, h_mm: float,
          ppm: float, interpolation=cv2.INTER_LINEAR) -> np.ndarray:
    """An upright grey patch of the page region [x, y, w, h] mm at ppm px/mm."""
    t = np.array([[1 / ppm, 0, x_mm], [0, 1 / ppm, y_mm], [0, 0, 1]], float)
    m = hmat @ t
    size = (max(1, int(round(w_mm * ppm))), max(1, int(round(h_mm * ppm))))
    return cv2.warpPerspective(image, m, size, flags=interpolation | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


def patches(image: np.ndarray, hmat: np.ndarray, xs, ys, w_mm: float, h_mm: float, ppm: float) -> list[np.ndarray]:
    """patch() of the regions [x, y, w, h] mm of one size, for each (x, y) of xs, ys: the same pixels.
    The regions' transforms come from one product of hmat with the stack of their translations:
    NumPy multiplies each pair of a stack as it multiplies one pair (the same BLAS call per pair),
    so each transform is the very matrix patch() makes (tests/test_scan_read_cost.py)."""
    n = len(xs)
    t = np.zeros((n, 3, 3))
    t[:, 0, 0] = t[:, 1, 1] = 1 / ppm
    t[:, 0, 2], t[:, 1, 2], t[:, 2, 2] = xs, ys, 1.0
    size = (max(1, int(round(w_mm * ppm))), max(1, int(round(h_mm * ppm))))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return [cv2.warpPerspective(image, m, size, flags=flags, borderMode=cv2.BORDER_REPLICATE) for m in hmat @ t]


class _Levels:
    """Darkness of one patch as grey-level thresholds, measured once.

    Darkness d(v) = (paper - v) / span is a function of the grey value v alone and falls as v rises,
    so "d >= t" is exactly "v <= the largest grey value whose darkness is >= t": the thresholds are
    worked out on the 256 grey levels (in float32, as the darkness of each pixel would be) and the
    patch is compared as uint8. Same decisions as converting every pixel, a fraction of the cost."""

    __slots__ = ("paper", "lut", "_cache")

    def __init__(self, p: np.ndarray, black: float):
        self.paper = float(_kth_grey(p, int(p.size * PAPER_QUANTILE)))
        span = max(self.paper - black, MIN_SPAN)
        self.lut = (self.paper - np.arange(256, dtype=np.float32)) / span
        self._cache: dict[tuple[str, float], int] = {}

    def at_least(self, t: float) -> int:
        """Largest grey v with d(v) >= t (-1: none)."""
        key = ("ge", t)
        v = self._cache.get(key)
        if v is None:
            v = self._cache[key] = int(np.count_nonzero(self.lut >= t)) - 1
        return v

    def above(self, t: float) -> int:
        """Largest grey v with d(v) > t (-1: none)."""
        key = ("gt", t)
        v = self._cache.get(key)
        if v is None:
            v = self._cache[key] = int(np.count_nonzero(self.lut > t)) - 1
        return v

    def mean(self, p: np.ndarray) -> float:
        """Mean darkness of the pixels p (float32, as the per-pixel darkness array would give)."""
        return self.lut[p].mean()


def _kth_grey(p: np.ndarray, k: int) -> int:
    """The k-th smallest grey value of a uint8 patch (np.partition(p.ravel(), k)[k]), from its
    histogram: the same value, without sorting the pixels."""
    hist = cv2.calcHist([np.ascontiguousarray(p)], [0], None, [256], [0, 256]).ravel()
    return int(np.searchsorted(np.cumsum(hist), k, side="right"))


def _le(p: np.ndarray, v: int) -> np.ndarray:
    return p <= v if v >= 0 else np.zeros(p.shape, bool)


def _edge_evidence(P: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, ppm: float,
                   vertical: bool = True) -> np.ndarray:
    """How clearly the printed outline of a rectangle is in each patch of a stack (N x H x W grey,
    corners per patch): per edge, the weakest OUTLINE_WINDOW_MM stretch along it, as the mean
    contrast of the line against the paper on either side of it (N x 4, or N x 2 with
    vertical=False). At each position (after a 3-pixel mean along the edge, against noise) the
    darkest pixel within +-OUTLINE_BAND_PX across the edge is the line, the brightest within twice
    that is the paper: contrast (paper - line) / paper, clipped to 0..1. Local on purpose: under
    uneven light (a phone photo) paper and print are dimmed by the same factor, and a sheet lying
    over the outline, duller than the form, has no line in it, only its own paper. A pen stroke
    over the outline only darkens it."""
    if len(P) == 1:
        return _edge_evidence_one(P[0], int(x0[0]), int(y0[0]), int(x1[0]), int(y1[0]), ppm, vertical)[None]
    N, H, W = P.shape
    b = OUTLINE_BAND_PX
    d = np.arange(-2 * b, 2 * b + 1)
    window = max(3, int(round(OUTLINE_WINDOW_MM * ppm)))
    # the two edges of each direction have the same length: measured as one stack of 2N strips
    pairs = [(True, np.concatenate([y0, y1]), np.concatenate([x0, x0]), np.concatenate([x1, x1]))]
    if vertical:
        pairs.append((False, np.concatenate([x0, x1]), np.concatenate([y0, y0]), np.concatenate([y1, y1])))
    n = np.concatenate([np.arange(N), np.arange(N)])
    out = []
    for horizontal, pos, a0, a1 in pairs:
        length = int(np.max(a1 - a0)) + 1
        limit, along_limit = (H, W) if horizontal else (W, H)
        if pos.min() - 2 * b >= 0 and pos.max() + 2 * b < limit and a0.min() >= 0 and a0.max() + length <= along_limit:
            # inside every patch: plain slices (no index arrays)
            if horizontal:
                vals = np.stack([P[i, p - 2 * b:p + 2 * b + 1, a:a + length]
                                 for i, p, a in zip(n.tolist(), pos.tolist(), a0.tolist())])
            else:
                vals = np.stack([P[i, a:a + length, p - 2 * b:p + 2 * b + 1].T
                                 for i, p, a in zip(n.tolist(), pos.tolist(), a0.tolist())])
        else:
            across = np.clip(pos[:, None] + d[None, :], 0, limit - 1)
            along = np.clip(a0[:, None] + np.arange(length)[None, :], 0, along_limit - 1)
            if horizontal:
                vals = P[n[:, None, None], across[:, :, None], along[:, None, :]]
            else:
                vals = P[n[:, None, None], along[:, None, :], across[:, :, None]]
        # the 3-pixel mean as a sum of grey levels (exact in integers): the darkest and brightest
        # sums divided by 3 in float32 are the same numbers as the darkest and brightest means
        if length >= 3:
            sums = vals[:, :, :-2].astype(np.uint16) + vals[:, :, 1:-1] + vals[:, :, 2:]
            line = sums[:, b:3 * b + 1].min(axis=1).astype(np.float32) / 3
            paper = np.maximum(sums.max(axis=1).astype(np.float32) / 3, 1.0)
        else:
            line = vals[:, b:3 * b + 1].min(axis=1).astype(np.float32)
            paper = np.maximum(vals.max(axis=1).astype(np.float32), 1.0)
        contrast = np.clip((paper - line) / paper, 0.0, 1.0)
        k = min(window, contrast.shape[1])
        c = np.concatenate([np.zeros((2 * N, 1), np.float64), np.cumsum(contrast, axis=1, dtype=np.float64)],
                           axis=1)
        weakest = ((c[:, k:] - c[:, :-k]) / k).min(axis=1)
        out += [weakest[:N], weakest[N:]]
    return np.stack(out, axis=1)


def _edge_evidence_one(p: np.ndarray, x0: int, y0: int, x1: int, y1: int, ppm: float, vertical: bool) -> np.ndarray:
    """_edge_evidence of one patch with plain slices (the same numbers, a fraction of the calls):
    the handwriting frames are measured one field at a time."""
    H, W = p.shape
    b = OUTLINE_BAND_PX
    window = max(3, int(round(OUTLINE_WINDOW_MM * ppm)))
    out = []
    # the two edges of each direction have the same length: measured as one stack of two (the same
    # numbers, half the calls)
    pairs = [(True, (y0, y1), x0, x1)]
    if vertical:
        pairs.append((False, (x0, x1), y0, y1))
    for horizontal, positions, a0, a1 in pairs:
        limit = H if horizontal else W
        if min(positions) - 2 * b < 0 or max(positions) + 2 * b + 1 > limit or a0 < 0 \
                or a1 >= (W if horizontal else H):  # at the border: the general way
            P = p[None]
            one = np.array([0])
            return _edge_evidence(np.concatenate([P, P]), one.repeat(2) + x0, one.repeat(2) + y0,
                                  one.repeat(2) + x1, one.repeat(2) + y1, ppm, vertical)[0]
        if horizontal:
            vals = np.stack([p[pos - 2 * b:pos + 2 * b + 1, a0:a1 + 1] for pos in positions]).astype(np.float32)
        else:
            vals = np.stack([p[a0:a1 + 1, pos - 2 * b:pos + 2 * b + 1].T for pos in positions]).astype(np.float32)
        if vals.shape[2] >= 3:
            vals = (vals[:, :, :-2] + vals[:, :, 1:-1] + vals[:, :, 2:]) / 3
        line = vals[:, b:3 * b + 1].min(axis=1)
        paper = np.maximum(vals.max(axis=1), 1.0)
        contrast = np.clip((paper - line) / paper, 0.0, 1.0)
        k = min(window, contrast.shape[1])
        c = np.concatenate([np.zeros((2, 1)), np.cumsum(contrast, axis=1, dtype=np.float64)], axis=1)
        out.extend(((c[:, k:] - c[:, :-k]) / k).min(axis=1).tolist())
    return np.array(out)


def _edge_strip(p: np.ndarray, pos: int, a0: int, length: int, horizontal: bool) -> np.ndarray:
    """The pixels _edge_evidence reads for one edge of patch p: (4 * OUTLINE_BAND_PX + 1) across the
    edge at pos by length along it from a0; beyond the patch, its border pixels (as there)."""
    b2 = 2 * OUTLINE_BAND_PX
    H, W = p.shape
    limit, along_limit = (H, W) if horizontal else (W, H)
    if pos - b2 >= 0 and pos + b2 < limit and a0 >= 0 and a0 + length <= along_limit:
        return p[pos - b2:pos + b2 + 1, a0:a0 + length] if horizontal else p[a0:a0 + length, pos - b2:pos + b2 + 1].T
    across = np.clip(np.arange(pos - b2, pos + b2 + 1), 0, limit - 1)
    along = np.clip(np.arange(a0, a0 + length), 0, along_limit - 1)
    return p[across[:, None], along[None, :]] if horizontal else p[along[None, :], across[:, None]]


def _rect_strips(p: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> list[np.ndarray]:
    """The four edges of the rectangle (x0, y0)-(x1, y1) (px, corners included) of patch p, as
    _edge_evidence reads them: top, bottom, left, right."""
    return [_edge_strip(p, y0, x0, x1 - x0 + 1, True), _edge_strip(p, y1, x0, x1 - x0 + 1, True),
            _edge_strip(p, x0, y0, y1 - y0 + 1, False), _edge_strip(p, x1, y0, y1 - y0 + 1, False)]


# Edges of a page measured together: at most this many positions summed in one float64 running sum
# (every contrast is 0 or a float32 of at least 1/765, a multiple of 2^-33: 2^19 of them at most 1
# each sum exactly in 53 bits, so a window's sum taken from the running sum is exactly the window's own)
STRIPS_AT_ONCE = 1 << 19


def _weakest_of_strips(strips: list[np.ndarray], ppm: float) -> np.ndarray:
    """_edge_evidence's figure of each edge (the weakest OUTLINE_WINDOW_MM stretch of its line
    against the paper) for any number of edges of any lengths and patches, in a few array calls:
    the strips (_edge_strip) laid end to end, every position worked out on its own as there, the
    window means from one running sum (exact, see STRIPS_AT_ONCE). The same numbers as
    _edge_evidence and _edge_evidence_one. An item may also be a block of n strips of one length
    (n x rows x length: the same edge of each patch of a stack), giving n figures in its place."""
    items: list[np.ndarray] = []
    for s in strips:
        if s.ndim == 2:
            items.append(s[None])
        elif s.shape[0] * s.shape[2] > STRIPS_AT_ONCE:  # a block longer than one running sum: strip by strip
            items += [t[None] for t in s]
        else:
            items.append(s)
    counts = [s.shape[0] for s in items]
    out = np.empty(sum(counts))
    if not items:
        return out
    at = np.cumsum([0] + counts).tolist()
    window = max(3, int(round(OUTLINE_WINDOW_MM * ppm)))
    chunk: list[int] = []
    total = 0

    def flush():
        got = _weakest_chunk([items[j] for j in chunk], window)
        o = 0
        for j in chunk:
            out[at[j]:at[j + 1]] = got[o:o + counts[j]]
            o += counts[j]

    for i, s in enumerate(items):
        n = s.shape[2]
        if n < 3:  # too short for the 3-pixel mean (never on the printed forms): alone
            out[at[i]:at[i + 1]] = [_weakest_short(t, window) for t in s]
            continue
        if chunk and total + n * counts[i] > STRIPS_AT_ONCE:
            flush()
            chunk, total = [], 0
        chunk.append(i)
        total += n * counts[i]
    if chunk:
        flush()
    return out


def _weakest_chunk(blocks: list[np.ndarray], window: int) -> np.ndarray:
    """The figures of blocks of strips (n x rows x length each), laid end to end in one row."""
    b = OUTLINE_BAND_PX
    if len(blocks) == 1 and blocks[0].shape[0] == 1:
        vals = blocks[0][0]
    else:
        vals = np.empty((blocks[0].shape[1], sum(s.shape[0] * s.shape[2] for s in blocks)), np.uint8)
        at = 0
        for s in blocks:
            n, _, length = s.shape
            vals[:, at:at + n * length].reshape(-1, n, length)[:] = s.transpose(1, 0, 2)
            at += n * length
    L = np.repeat([s.shape[2] for s in blocks], [s.shape[0] for s in blocks])
    sums = vals[:, :-2].astype(np.uint16) + vals[:, 1:-1] + vals[:, 2:]
    line = sums[b:3 * b + 1].min(axis=0).astype(np.float32) / 3
    paper = np.maximum(sums.max(axis=0).astype(np.float32) / 3, 1.0)
    contrast = np.clip((paper - line) / paper, 0.0, 1.0)
    # one running sum over every position, the means that straddle two strips too: no window takes
    # them in, and every partial sum is exact (STRIPS_AT_ONCE), so each window's sum is the same
    # number as from a running sum of its strip's own positions alone
    run = np.empty(len(contrast) + 1)
    run[0] = 0.0
    np.cumsum(contrast, dtype=np.float64, out=run[1:])
    n_pos = L - 2
    k = np.minimum(window, n_pos)
    n_win = n_pos - k + 1
    win_start = np.cumsum(n_win) - n_win
    first = np.repeat(np.cumsum(L) - L - win_start, n_win) + np.arange(int(n_win.sum()))
    kk = np.repeat(k, n_win)
    return np.minimum.reduceat((run[first + kk] - run[first]) / kk, win_start)


def _weakest_short(strip: np.ndarray, window: int) -> float:
    b = OUTLINE_BAND_PX
    line = strip[b:3 * b + 1].min(axis=0).astype(np.float32)
    paper = np.maximum(strip.max(axis=0).astype(np.float32), 1.0)
    contrast = np.clip((paper - line) / paper, 0.0, 1.0)
    k = min(window, len(contrast))
    c = np.concatenate([np.zeros(1), np.cumsum(contrast, dtype=np.float64)])
    return float(((c[k:] - c[:-k]) / k).min())


def _best_shift(dark: np.ndarray, lo: int, hi: int, axis: int, search: int, band: tuple[int, int]) -> int:
    """Shift (px) that puts the printed outline's two edges (at lo and hi) on dark columns/rows.
    dark: boolean, pixels with darkness > 0.15."""
    # Coverage along the edge: the printed outline darkens the whole edge, a pen stroke or a line
    # of text crossing the same row or column only darkens part of it.
    if axis == 1:
        sub = dark[band[0]:band[1], :]
        prof = np.add.reduce(sub, axis=0, dtype=np.int32) / sub.shape[0]
    else:
        sub = dark[:, band[0]:band[1]]
        prof = np.add.reduce(sub, axis=1, dtype=np.int32) / sub.shape[1]
    n = len(prof)
    pmax = prof.copy()
    pmax[1:] = np.maximum(pmax[1:], prof[:-1])
    pmax[:-1] = np.maximum(pmax[:-1], prof[1:])
    pm = pmax.tolist()  # plain floats: the same values, a faster short loop
    best, best_score = 0, -1e9
    for s in range(-search, search + 1):
        a, b = lo + s, hi + s
        if a < 0 or b >= n:
            continue
        score = min(pm[a], pm[b]) - SHIFT_PENALTY * abs(s)
        if score > best_score:
            best, best_score = s, score
    return best


def _frac(mask: np.ndarray) -> float:
    return np.count_nonzero(mask) / mask.size if mask.size else float("nan")


def measure_box(image: np.ndarray, hmat: np.ndarray, box_mm, black: float) -> dict[str, Any]:
    x, y, w, h = box_mm
    margin = BOX_MARGIN_MM
    ppm = BOX_PX_PER_MM
    p = patch(image, hmat, x - margin, y - margin, w + 2 * margin, h + 2 * margin, ppm)
    lv = _Levels(p, black)
    smooth = _median3(p)
    raw_dark = _le(p, lv.above(DARK_FOR_OUTLINE))
    m = int(round(margin * ppm))
    bw, bh = int(round(w * ppm)), int(round(h * ppm))
    search = int(round(SEARCH_MM * ppm))
    sx = _best_shift(raw_dark, m, m + bw, 1, search, (m + search + 2, m + bh - search - 2))
    sy = _best_shift(raw_dark, m, m + bh, 0, search, (m + search + 2, m + bw - search - 2))
    x0, y0 = m + sx, m + sy
    x1, y1 = x0 + bw, y0 + bh
    shrink = int(round(SHRINK * min(bw, bh)))
    interior = smooth[y0 + shrink:y1 - shrink, x0 + shrink:x1 - shrink]
    v_ink, v_faint = lv.at_least(INK_DARK), lv.at_least(FAINT_DARK)
    ink = _frac(_le(interior, v_ink))
    faint = _frac(_le(interior, v_faint) & ~_le(interior, v_ink))
    # strips just outside the outline: 0.35 .. 0.8 mm away
    a, b = int(round(STRIP_MM[0] * ppm)), int(round(STRIP_MM[1] * ppm))
    strips = {
        "top": smooth[max(0, y0 - b):y0 - a, x0:x1],
        "bottom": smooth[y1 + a:y1 + b, x0:x1],
        "left": smooth[y0:y1, max(0, x0 - b):x0 - a],
        "right": smooth[y0:y1, x1 + a:x1 + b],
    }
    spill = {k: _frac(_le(v, v_ink)) if v.size else 0.0 for k, v in strips.items()}
    outline = float(lv.mean(p[y0:y1, x0]) + lv.mean(p[y0:y1, x1]) + lv.mean(p[y0, x0:x1])
                    + lv.mean(p[y1, x0:x1])) / 4
    one = np.array([0])
    printed = _edge_evidence(p[None], one + x0, one + y0, one + x1, one + y1, ppm)
    return {"ink": round(ink, 4), "faint": round(faint, 4), "spill": {k: round(v, 4) for k, v in spill.items()},
            "spill_max": round(max(spill.values()), 4), "shift_mm": [round(sx / ppm, 2), round(sy / ppm, 2)],
            "outline": round(outline, 3), "printed": round(float(printed.min()), 3), "paper": round(lv.paper, 1)}


def _below(count: np.ndarray) -> np.ndarray:
    """Per patch of a stack, its grey thresholds as uint8 for "grey < _below(count)": count is how
    many grey values are dark enough (the darkness LUT falls as the grey value rises, so they are
    0 .. count - 1), and "grey < count" is "grey <= count - 1" (none when count is 0). A uint8
    comparison costs several times less than one with int64 thresholds. count <= 255: grey 255 is
    never darker than the paper (at most 255)."""
    return np.minimum(count, 255).astype(np.uint8)[:, None, None]


def _rect_counts(ii: np.ndarray, n: np.ndarray, r0, r1, c0, c1, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel counts (and sizes) of rectangles [r0:r1, c0:c1] (Python slice rules: clipped, empty when
    stop <= start) of each patch n (h rows), from the integral image ii of the stack laid end to end
    (_integral: a rectangle's four corners are in its own patch, the rows above it cancel out)."""
    w = ii.shape[1] - 1
    r0, r1 = np.clip(r0, 0, h), np.clip(r1, 0, h)
    c0, c1 = np.clip(c0, 0, w), np.clip(c1, 0, w)
    r1, c1 = np.maximum(r1, r0), np.maximum(c1, c0)
    r0, r1 = r0 + n * h, r1 + n * h
    counts = ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]
    return counts, (r1 - r0) * (c1 - c0)


def _integral(mask: np.ndarray) -> np.ndarray:
    """The integral image ((N * H + 1) x (W + 1), int32) of a stack of boolean masks laid end to end."""
    N, H, W = mask.shape
    return cv2.integral(np.ascontiguousarray(mask).reshape(N * H, W).view(np.uint8))


def _best_shifts(dark: np.ndarray, lo: int, hi: int, axis: int, search: int, band: tuple[int, int]) -> np.ndarray:
    """_best_shift for a stack of patches at once (the same numbers, the same first-best rule)."""
    if axis == 1:
        sub = dark[:, band[0]:band[1], :]
        prof = np.add.reduce(sub, axis=1, dtype=np.int32) / sub.shape[1]
    else:
        sub = dark[:, :, band[0]:band[1]]
        prof = np.add.reduce(sub, axis=2, dtype=np.int32) / sub.shape[2]
    n = prof.shape[1]
    pmax = prof.copy()
    pmax[:, 1:] = np.maximum(pmax[:, 1:], prof[:, :-1])
    pmax[:, :-1] = np.maximum(pmax[:, :-1], prof[:, 1:])
    sv, penalty = _shift_range(lo, hi, n, search)
    if not len(sv):
        return np.zeros(len(dark), int)
    score = np.minimum(pmax[:, lo + sv], pmax[:, hi + sv]) - penalty
    return sv[np.argmax(score, axis=1)]  # the first best, as a scan from -search keeps


@functools.lru_cache(maxsize=256)
def _shift_range(lo: int, hi: int, n: int, search: int) -> tuple[np.ndarray, np.ndarray]:
    """The shifts _best_shifts tries (both edges inside the profile) and their penalties (read-only)."""
    shifts = [s for s in range(-search, search + 1) if lo + s >= 0 and hi + s < n]
    sv, penalty = np.array(shifts, int), np.array([SHIFT_PENALTY * abs(s) for s in shifts])
    sv.flags.writeable = penalty.flags.writeable = False
    return sv, penalty


def measure_boxes(image: np.ndarray, hmat: np.ndarray, boxes_mm: list, black: float) -> list[dict[str, Any]]:
    """measure_box for every box of a page at once: the same numbers (the boxes of a sheet are all
    the same size, so their patches are measured as one stack instead of ~20 small calls each),
    plus, per box, what the boxes facing it from near by hold ("near", see _neighbours)."""
    out = _measure_boxes(image, hmat, boxes_mm, black)
    _neighbours(boxes_mm, out)
    return out


SIDES = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}  # side -> the side facing it
NEIGHBOUR_MM = 3.0   # boxes whose outlines are at most this far apart face each other (rows of options: 2 mm)


def _neighbours(boxes_mm: list, measures: list[dict[str, Any]]) -> None:
    """Record in each box's measures, per side, the box of the page (any field) that faces it within
    NEIGHBOUR_MM: its interior ink and faint ink and its spill strips. A mark that spills out of its
    box is only accepted when no neighbour holds ink of its own, and an empty box's spill is only
    explained by a neighbour that clearly holds the mark; decide() needs the neighbour's numbers
    for that, and they are stored with the box so that it can be re-run."""
    if len(boxes_mm) < 2:
        return
    b = np.asarray(boxes_mm, float)
    x, y, w, h = b[:, 0:1], b[:, 1:2], b[:, 2:3], b[:, 3:4]
    ox = np.minimum(x + w, (x + w).T) - np.maximum(x, x.T) > 0.5 * np.minimum(w, w.T)  # columns overlap
    oy = np.minimum(y + h, (y + h).T) - np.maximum(y, y.T) > 0.5 * np.minimum(h, h.T)  # rows overlap
    gaps = {"bottom": ox & (y.T - (y + h) >= 0) & (y.T - (y + h) <= NEIGHBOUR_MM),
            "top": ox & (y - (y.T + h.T) >= 0) & (y - (y.T + h.T) <= NEIGHBOUR_MM),
            "right": oy & (x.T - (x + w) >= 0) & (x.T - (x + w) <= NEIGHBOUR_MM),
            "left": oy & (x - (x.T + w.T) >= 0) & (x - (x.T + w.T) <= NEIGHBOUR_MM)}
    for side, g in gaps.items():
        for i, j in zip(*np.nonzero(g)):
            m = measures[j]
            measures[i].setdefault("near", {})[side] = {"ink": m["ink"], "faint": m["faint"],
                                                        "spill": m["spill"]}


def _measure_boxes(image: np.ndarray, hmat: np.ndarray, boxes_mm: list, black: float) -> list[dict[str, Any]]:
    if not boxes_mm:
        return []
    if len({(b[2], b[3]) for b in boxes_mm}) != 1:
        return [measure_box(image, hmat, b, black) for b in boxes_mm]
    margin = BOX_MARGIN_MM
    ppm = BOX_PX_PER_MM
    w, h = boxes_mm[0][2], boxes_mm[0][3]
    P = np.stack(patches(image, hmat, [b[0] - margin for b in boxes_mm], [b[1] - margin for b in boxes_mm],
                         w + 2 * margin, h + 2 * margin, ppm))
    N = len(P)
    S = _median3_stack(P)
    paper = _kth_greys(P, int(P[0].size * PAPER_QUANTILE)).astype(np.float32)
    span = np.maximum(paper.astype(np.float64) - black, MIN_SPAN).astype(np.float32)
    lut = (paper[:, None] - np.arange(256, dtype=np.float32)[None, :]) / span[:, None]
    raw_dark = P < _below(np.count_nonzero(lut > DARK_FOR_OUTLINE, axis=1))
    m = int(round(margin * ppm))
    bw, bh = int(round(w * ppm)), int(round(h * ppm))
    search = int(round(SEARCH_MM * ppm))
    sx = _best_shifts(raw_dark, m, m + bw, 1, search, (m + search + 2, m + bh - search - 2))
    sy = _best_shifts(raw_dark, m, m + bh, 0, search, (m + search + 2, m + bw - search - 2))
    x0, y0 = m + sx, m + sy
    x1, y1 = x0 + bw, y0 + bh
    shrink = int(round(SHRINK * min(bw, bh)))
    ink_mask = S < _below(np.count_nonzero(lut >= INK_DARK, axis=1))
    faint_mask = (S < _below(np.count_nonzero(lut >= FAINT_DARK, axis=1))) & ~ink_mask
    ii_ink, ii_faint = _integral(ink_mask), _integral(faint_mask)
    n = np.arange(N)
    ph = P.shape[1]
    ink_c, size = _rect_counts(ii_ink, n, y0 + shrink, y1 - shrink, x0 + shrink, x1 - shrink, ph)
    faint_c, _ = _rect_counts(ii_faint, n, y0 + shrink, y1 - shrink, x0 + shrink, x1 - shrink, ph)
    a, b = int(round(STRIP_MM[0] * ppm)), int(round(STRIP_MM[1] * ppm))
    strips = {
        "top": _rect_counts(ii_ink, n, np.maximum(0, y0 - b), y0 - a, x0, x1, ph),
        "bottom": _rect_counts(ii_ink, n, y1 + a, y1 + b, x0, x1, ph),
        "left": _rect_counts(ii_ink, n, y0, y1, np.maximum(0, x0 - b), x0 - a, ph),
        "right": _rect_counts(ii_ink, n, y0, y1, x1 + a, x1 + b, ph),
    }
    # outline: mean darkness along each printed edge, float32 as per pixel
    rows, cols = np.arange(bh), np.arange(bw)
    nn = n[:, None]
    lines = [P[nn, y0[:, None] + rows, x0[:, None]], P[nn, y0[:, None] + rows, x1[:, None]],
             P[nn, y0[:, None], x0[:, None] + cols], P[nn, y1[:, None], x0[:, None] + cols]]
    means = [lut[nn, ln.astype(np.intp)].mean(axis=1) for ln in lines]
    outline = ((means[0] + means[1]) + means[2]) + means[3]
    # the boxes' outlines as one run of edge strips (the same numbers as _edge_evidence of the stack)
    # (the boxes lined up on the same pixels of their patches: each edge of them as one block of strips)
    alike: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(x0.tolist(), y0.tolist())):
        alike.setdefault(key, []).append(i)
    edges, owners = [], []
    for (bx0, by0), idx in alike.items():
        blocks = _edge_blocks(P, [(bx0, by0, bx0 + bw, by0 + bh)], np.array(idx))
        if blocks is None:  # at the patch's border: box by box
            for i in idx:
                edges += _rect_strips(P[i], bx0, by0, bx0 + bw, by0 + bh)
                owners.append([i])
        else:
            edges += blocks
            owners.append(idx)
    weakest = _weakest_of_strips(edges, ppm)
    printed = np.empty(N)
    at = 0
    for idx in owners:
        printed[idx] = weakest[at:at + 4 * len(idx)].reshape(4, len(idx)).min(axis=0)
        at += 4 * len(idx)
    # as Python numbers (the same values: integer counts divided in float64, float32 read as float),
    # each measure rounded as a column; spill_max is the largest rounded side (round() never changes
    # the order of two numbers, so the largest side rounded is the largest of the rounded sides)
    size_l = size.tolist()
    nan = float("nan")
    ink_r = [round(c / n, 4) if n else nan for c, n in zip(ink_c.tolist(), size_l)]
    faint_r = [round(c / n, 4) if n else nan for c, n in zip(faint_c.tolist(), size_l)]
    (k0, (c0, s0)), (k1, (c1, s1)), (k2, (c2, s2)), (k3, (c3, s3)) = strips.items()
    v0, v1, v2, v3 = ([round(c / s, 4) if s else 0.0 for c, s in zip(c.tolist(), s.tolist())]
                      for c, s in ((c0, s0), (c1, s1), (c2, s2), (c3, s3)))
    shifts = [[round(a / ppm, 2), round(b / ppm, 2)] for a, b in zip(sx.tolist(), sy.tolist())]
    outline_r = [round(v / 4, 3) for v in outline.tolist()]
    printed_r = [round(v, 3) for v in printed.tolist()]
    paper_r = [round(v, 1) for v in paper.tolist()]
    return [{"ink": ink_r[i], "faint": faint_r[i], "spill": {k0: v0[i], k1: v1[i], k2: v2[i], k3: v3[i]},
             "spill_max": max(v0[i], v1[i], v2[i], v3[i]), "shift_mm": shifts[i], "outline": outline_r[i],
             "printed": printed_r[i], "paper": paper_r[i]} for i in range(N)]


def box_state(m: dict[str, Any]) -> tuple[str, float, str | None]:
    """One box: ('empty'|'marked'|'cancelled'|'unsure', confidence, reason code when unsure)."""
    ink, faint, spill = m["ink"], m["faint"], m["spill_max"]
    if ink >= CANCEL_MIN:
        return "cancelled", round(0.8 + 0.19 * min(1.0, (ink - CANCEL_MIN) / 0.2), 3), None
    if MARK_MIN <= ink <= MARK_MAX:
        if spill > SPILL_MAX and spill > ink:
            if _spilled_from_here(m):
                return "marked", SPILLED_CONFIDENCE, None
            return "unsure", 0.4, "half_outside"
        margin = min(ink - MARK_MIN, MARK_MAX - ink) / 0.08
        return "marked", round(0.8 + 0.19 * min(1.0, margin), 3), None
    if ink <= EMPTY_MAX:
        if faint > FAINT_MAX:
            return "unsure", 0.4, "faint_mark"
        if spill > SPILL_EMPTY_MAX and not _spill_from_neighbour(m):
            return "unsure", 0.4, "half_outside"
        return "empty", round(max(0.5, 0.99 - 5 * ink - 2 * faint), 3), None
    return "unsure", 0.35, "ambiguous_mark"


# Marks that spill out of their box (issue 12.5). A cross centred in its box whose strokes run out
# of it leaves ink in the strips on opposite sides; a mark drawn off-centre (half outside) on one
# side only. The ink belongs to the box when it is centred and no box facing a spilled side holds
# ink of its own; an empty box next to it then sees that spill and is still empty.
SPILLED_CONFIDENCE = 0.8
SPILL_SIDE = SPILL_EMPTY_MAX      # a strip with more ink than this has ink running out through it
SPILL_BALANCE = 0.5               # the opposite strip holds at least this share of it: the mark is centred
SPILL_CLEAN = 0.05                # strips without a neighbour's mark near them: at most this ink
SPILLED_MARK_MIN = 0.12           # the spilled mark's own ink inside the box: clearly a mark
NEIGHBOUR_CLEAN = 0.01            # a neighbour (or an empty box) this clean inside holds no mark of its own


def _clean_inside(m: dict[str, Any]) -> bool:
    return m["ink"] <= NEIGHBOUR_CLEAN and m["faint"] <= FAINT_MAX / 2


def _spilled_from_here(m: dict[str, Any]) -> bool:
    """A marked box whose ink runs out of it: centred (every spilled side's opposite strip carries
    ink too), clearly inked inside, and every box facing a spilled side clean inside."""
    spill, near = m["spill"], m.get("near", {})
    if m["ink"] < SPILLED_MARK_MIN or len(spill) != 4:
        return False
    for side, other in SIDES.items():
        if spill[side] > SPILL_SIDE:
            if spill[other] < SPILL_BALANCE * spill[side]:
                return False
            if side in near and not _clean_inside(near[side]):
                return False
    return True


def _spill_from_neighbour(m: dict[str, Any]) -> bool:
    """An empty box with ink just outside it, all of it on sides facing a box that clearly holds a
    mark of its own whose ink runs out toward this box. Anything else (ink on a side with no marked
    neighbour, ink inside this box) is left to a person."""
    near = m.get("near", {})
    if not _clean_inside(m) or len(m["spill"]) != 4:
        return False
    explained = False
    for side, v in m["spill"].items():
        if v <= SPILL_CLEAN:
            continue
        n = near.get(side)
        if n is None or not (SPILLED_MARK_MIN <= n["ink"] <= MARK_MAX) \
                or n["faint"] > max(FAINT_MAX, 0.35 * n["ink"]):  # a pen line's soft edge, no more
            return False
        nstate = box_state({**n, "spill_max": max(n["spill"].values()), "near": {}})
        if nstate[0] != "marked" or n["spill"][SIDES[side]] <= SPILL_CLEAN:
            return False
        explained = True
    return explained


COVERED = english("covered")
WEAK_CORNER = english("weak_corner")
# page read from three marks: fields near the fourth corner to review when the transform there is
# more uncertain than the box reader's own outline search can make up for
WEAK_CORNER_MM = SEARCH_MM


def field_printed(raw: dict[str, Any]) -> float | None:
    """The weakest piece of printed outline measured for a field (None: not measured, old readings)."""
    if "boxes" in raw:
        vals = [b["printed"] for b in raw["boxes"] if "printed" in b]
        return min(vals) if vals else None
    return raw.get("printed")


def is_covered(raw: dict[str, Any]) -> bool:
    """Is part of the field's printed outline missing from the scan, compared with the outlines of
    the rest of the page (raw["printed_ref"])? Then blank paper may lie over it: an empty box or
    a blank field there proves nothing."""
    printed, ref = field_printed(raw), raw.get("printed_ref")
    return printed is not None and ref is not None and printed < VISIBLE_RATIO * ref


def transcribe_mode(raw: dict[str, Any], type: str) -> str:
    """How a handwritten field is decided: 'yes' (a person types it), 'ink-only' (ink present is the
    value), 'no' (kept as image only). The sheet's geometry records it when the template chose other
    than the type's default (signatures: ink-only, other handwriting: yes)."""
    return raw.get("transcribe") or default_transcribe(type)


def decide(raw: dict[str, Any], type: str, options: list[str] | None = None
           ) -> tuple[Any, float, str, str | None]:
    """Value, confidence, status ('accepted'|'review') and reason, from stored raw measures."""
    page_review = raw.get("page_review")
    if type in HANDWRITTEN and transcribe_mode(raw, type) == "no":
        # image only: nothing to type and no value, whatever the scan; the page and the field's crop
        # stay for anyone who needs to look (never a review item: nobody has to decide anything)
        return None, 0.95, "accepted", english("image_only")
    value, conf, status, reason = _decide(raw, type, options)
    if is_covered(raw):  # what was read is kept as the suggestion; a person looks at the paper
        reason = join(COVERED, reason)
        status, conf = "review", min(conf, 0.3)
    if raw.get("weak_corner_mm", 0.0) > WEAK_CORNER_MM:
        reason = join(reason, WEAK_CORNER)
        status, conf = "review", min(conf, 0.5)
    if page_review:
        return value, min(conf, 0.5), "review", join(reason, page_review)
    return value, conf, status, reason


def _decide(raw: dict[str, Any], type: str, options: list[str] | None) -> tuple[Any, float, str, str | None]:
    if type in HANDWRITTEN and transcribe_mode(raw, type) == "ink-only":
        return _decide_ink_only(raw)
    if type in HANDWRITTEN:
        ink = decide_ink(raw)
        if ink:
            return None, round(raw.get("ink_confidence", 0.9), 3), "review", english(
                "faint_writing" if raw.get("faint_only") else "to_transcribe")
        return None, 0.95, "accepted", None
    boxes = raw["boxes"]
    states = [box_state(b) for b in boxes]
    if type == "checkbox":
        state, conf, why = states[0]
        if state == "unsure":
            return None, conf, "review", english(why)
        return state == "marked", conf, "accepted", None
    opts = options or [b.get("value") for b in boxes]
    unsure = [(o, s) for o, s in zip(opts, states) if s[0] == "unsure"]
    marked = [o for o, s in zip(opts, states) if s[0] == "marked"]
    cancelled = [o for o, s in zip(opts, states) if s[0] == "cancelled"]
    conf = min(s[1] for s in states)
    if unsure:
        return None, conf, "review", english(unsure[0][1][2], option=unsure[0][0])
    if type == "multichoice":
        return sorted(marked), conf, "accepted", None
    if len(marked) > 1:
        return None, min(conf, 0.3), "review", english("two_marked") if len(marked) == 2 \
            else english("n_marked", n=len(marked))
    if marked and cancelled:
        if _clear_correction(boxes, states):
            # the convention printed on the form: a box filled solid is cancelled. One solid box, one
            # clear mark, nothing else: the marked option, and the reading says it was corrected
            return marked[0], conf, "accepted", english("corrected")
        return marked[0], min(conf, 0.5), "review", english("mark_and_cancelled")
    if marked:
        return marked[0], conf, "accepted", None
    return None, conf, "accepted", None


CORRECTION_SOLID = 0.80   # a cancelled box this full is unmistakably filled in
CORRECTION_MARK = (0.10, 0.45)  # and the other mark clearly a tick or a cross, well inside the box
CORRECTION_EMPTY = 0.01   # every other box this empty, nothing faint, nothing spilling in


def _clear_correction(boxes: list[dict], states: list[tuple]) -> bool:
    """Exactly one box filled solid, exactly one clearly marked, every other box clearly empty."""
    solid = [b for b, s in zip(boxes, states) if s[0] == "cancelled"]
    marks = [b for b, s in zip(boxes, states) if s[0] == "marked"]
    rest = [b for b, s in zip(boxes, states) if s[0] not in ("cancelled", "marked")]
    return (len(solid) == 1 and len(marks) == 1 and solid[0]["ink"] >= CORRECTION_SOLID
            and CORRECTION_MARK[0] <= marks[0]["ink"] <= CORRECTION_MARK[1]
            and marks[0]["spill_max"] <= SPILL_EMPTY_MAX
            and marks[0]["faint"] <= max(FAINT_MAX, 0.35 * marks[0]["ink"])  # a pen line's soft edge, no more
            and all(s[0] == "empty" for s in states if s[0] not in ("cancelled", "marked"))
            and all(b["ink"] <= CORRECTION_EMPTY and b["faint"] <= FAINT_MAX / 2 and b["spill_max"] <= 0.05
                    for b in rest))


def _decide_ink_only(raw: dict[str, Any]) -> tuple[Any, float, str, str | None]:
    """A signature (or any ink-only field): clear ink is "signed" (True), a clean field "not signed"
    (False). Anything in between (faint or light ink only, or a trace too small to be a signature)
    goes to a person. decide() sends a covered field to review on top of this."""
    if not decide_ink(raw):
        return False, 0.95, "accepted", None
    if raw.get("faint_only") or raw.get("tiles_inked", 0) < SIGNED_MIN_TILES:
        return None, 0.5, "review", english("faint_writing")
    return True, round(raw.get("ink_confidence", 0.9), 3), "accepted", None


def decide_ink(raw: dict[str, Any]) -> bool:
    """Is there ink in a handwritten field? Faint ink counts: it is never accepted as blank."""
    return (raw.get("tiles_inked", 0) > 0 or raw.get("max_tile", 0.0) > TILE_FAINT
            or raw.get("max_light_tile", 0.0) > TILE_LIGHT)


def measure_handwritten(image: np.ndarray, hmat: np.ndarray, field: dict, black: float
                        ) -> tuple[dict[str, Any], np.ndarray]:
    """Raw measures of one handwritten field and its crop (the numbers measure_handwritten_many gives)."""
    return _measure_hand_one(image, hmat, field, black)


def _hand_shape(field: dict) -> tuple:
    """Fields measured as one stack: the same box size (so the same crop shape), the same number
    of cells, comb groups and ruled lines. Their pixel positions are still worked out per field."""
    cells = field.get("cells_mm") or []
    gaps = tuple(b[0] - (a[0] + a[2]) > 0.5 for a, b in zip(cells, cells[1:]))
    return (tuple(field["box_mm"][2:]), len(cells), gaps, int(field.get("lines") or 1))


def measure_handwritten_many(image: np.ndarray, hmat: np.ndarray, fields: list[dict], black: float
                             ) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Raw measures and crop of every handwritten field of a page, in order. Fields of the same
    shape (_hand_shape: a MAR's time slots, a vitals sheet's comb boxes) are measured as one stack of
    crops: the same numbers as one field at a time, without ~40 small array calls per field.

    Ink is looked for in TILE_MM tiles of the field box, with the printed outline, comb cells,
    separators and ruling masked out (PRINT_MASK_MM on either side), after lining the box up with
    its printed outline (up to SEARCH_MM); "printed" is the weakest stretch of the field's outline
    (_edge_evidence: of its frame, or for a comb of each group of cells' outer frame)."""
    out: list = [None] * len(fields)
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(fields):
        groups.setdefault(_hand_shape(f), []).append(i)
    outlines: list[tuple[list[dict], list[np.ndarray]]] = []  # the page's frames, measured together at the end
    for idx in groups.values():
        if len(idx) < STACK_MIN:
            for i in idx:
                out[i] = _measure_hand_one(image, hmat, fields[i], black, outlines)
            continue
        for i, measured in zip(idx, _measure_hand_group(image, hmat, [fields[i] for i in idx], black, outlines)):
            out[i] = measured
    _set_printed(outlines, CROP_PX_PER_MM)
    return out


def _set_printed(outlines: list[tuple[list[dict], list[np.ndarray]]], ppm: float) -> None:
    """Each field's "printed" (the weakest stretch of its outline: of all its edges), all of a page's
    edges measured in one go. outlines: (raw measures of n fields, their edges: strips when n is 1,
    else blocks of the n fields' same edge)."""
    weakest = _weakest_of_strips([s for _, strips in outlines for s in strips], ppm)
    at = 0
    for raws, strips in outlines:
        n = len(raws)
        mine = weakest[at:at + n * len(strips)].reshape(len(strips), n).T.tolist()
        at += n * len(strips)
        for raw, edges in zip(raws, mine):
            raw["printed"] = round(min([1.0, *edges]), 3)


# fewer fields of one shape than this are measured one by one: a stack's fixed cost (~30 array
# calls) is more than a lone field's
STACK_MIN = 2


def _measure_hand_group(image: np.ndarray, hmat: np.ndarray, fields: list[dict], black: float,
                        outlines: list) -> list[tuple[dict[str, Any], np.ndarray]]:
    """The fields of one _hand_shape as one stack; their outlines' strips go to outlines (the raw
    measures' "printed" is set from them by _set_printed)."""
    margin = CROP_MARGIN_MM
    ppm = CROP_PX_PER_MM
    w, h = fields[0]["box_mm"][2:]
    crops = patches(image, hmat, [f["box_mm"][0] - margin for f in fields], [f["box_mm"][1] - margin for f in fields],
                    w + 2 * margin, h + 2 * margin, ppm)
    P = np.stack(crops)
    N, H, W = P.shape
    S = _median3_stack(P)
    paper = _kth_greys(P, int(H * W * PAPER_QUANTILE)).astype(np.float32)
    span = np.maximum(paper.astype(np.float64) - black, MIN_SPAN).astype(np.float32)
    lut = (paper[:, None] - np.arange(256, dtype=np.float32)[None, :]) / span[:, None]
    raw_dark = P < _below(np.count_nonzero(lut > DARK_FOR_OUTLINE, axis=1))
    m = int(round(margin * ppm))
    bw, bh = int(round(w * ppm)), int(round(h * ppm))
    search = int(round(SEARCH_MM * ppm))
    band_r = (m + search + 1, m + bh - search - 1)
    band_c = (m + search + 1, m + bw - search - 1)
    zero = np.zeros(N, int)
    sxs = _best_shifts(raw_dark, m, m + bw, 1, search, band_r) if band_r[1] > band_r[0] else zero
    sys_ = _best_shifts(raw_dark, m, m + bh, 0, search, band_c) if band_c[1] > band_c[0] else zero
    box = np.array([f["box_mm"][:2] for f in fields], float)
    x, y = box[:, 0], box[:, 1]
    ox, oy = x - margin - sxs / ppm, y - margin - sys_ / ppm
    # only the inside of the field box counts, less the printed lines: one mask per distinct layout
    # of those lines in the crop (the fields of a stack nearly always share one)
    patterns, which = _usable_patterns(H, W, (m + sys_).tolist(), (m + sxs).tolist(), bh, bw,
                                       _print_bands(fields, x, y, w, h, ox, oy, ppm, H, W))
    usable = patterns[0] if len(patterns) == 1 else patterns[which]  # (H x W: the same for every field)
    light = (S < _below(np.count_nonzero(lut >= FAINT_DARK, axis=1))) & usable
    tile = max(4, int(round(TILE_MM * ppm)))
    ((use_t, n_usable),) = _tile_sums_many([patterns], tile)
    use_t, n_usable = use_t[which], n_usable[which]
    if light.any():
        inked = (S < _below(np.count_nonzero(lut >= HAND_INK_DARK, axis=1))) & usable
        (ink_t, n_inked), (light_t, _) = _tile_sums_many([inked, light], tile)
    else:  # no light ink anywhere, so no ink (darker) either: every count is 0
        ink_t = light_t = np.zeros_like(use_t)
        n_inked = np.zeros_like(n_usable)
    valid = use_t >= tile * tile * TILE_MIN_USABLE
    frac = np.where(valid, ink_t / np.maximum(use_t, 1), 0.0)
    light_frac = np.where(valid, light_t / np.maximum(use_t, 1), 0.0)
    tiles = valid.sum(axis=(1, 2))
    inked_tiles = (frac >= TILE_INK).sum(axis=(1, 2))
    has_tiles = frac.shape[1] * frac.shape[2] > 0
    max_tile = frac.max(axis=(1, 2)) if has_tiles else np.zeros(N)
    max_light = light_frac.max(axis=(1, 2)) if has_tiles else np.zeros(N)
    out = []
    # as Python numbers (the same values)
    tiles_l, inked_l, max_l, light_l = tiles.tolist(), inked_tiles.tolist(), max_tile.tolist(), max_light.tolist()
    n_inked_l, n_usable_l, paper_l = n_inked.tolist(), n_usable.tolist(), paper.tolist()
    for i, (sx, sy) in enumerate(zip(sxs.tolist(), sys_.tolist())):
        raw = {"tiles": tiles_l[i], "tiles_inked": inked_l[i], "max_tile": round(max_l[i], 4),
               "printed": None,  # _set_printed
               "ink_fraction": round(n_inked_l[i] / max(1, n_usable_l[i]), 4),
               "max_light_tile": round(light_l[i], 4),
               "shift_mm": [round(sx / ppm, 2), round(sy / ppm, 2)], "paper": round(paper_l[i], 1)}
        if inked_l[i] == 0 and (max_l[i] > TILE_FAINT or light_l[i] > TILE_LIGHT):
            raw["faint_only"] = True
            raw["ink_confidence"] = 0.5
        out.append((raw, crops[i]))
    # the fields' outlines: when they lie on the same pixels of every crop (the usual case), each
    # edge of the stack's crops as one block of strips
    rects = _frame_rects_stack(fields, ox, oy, ppm, m + sxs, m + sys_, bw, bh)
    blocks = _edge_blocks(P, [tuple(r) for r in rects[0].tolist()]) if (rects == rects[0]).all() else None
    if blocks is not None:
        outlines.append(([raw for raw, _ in out], blocks))
    else:
        outlines += [([raw], [s for r in rects[i].tolist() for s in _rect_strips(P[i], *r)])
                     for i, (raw, _) in enumerate(out)]
    return out


def _frame_rects_stack(fields: list[dict], ox: np.ndarray, oy: np.ndarray, ppm: float, x0: np.ndarray,
                       y0: np.ndarray, bw: int, bh: int) -> np.ndarray:
    """_frame_rects of each field of a stack (one _hand_shape: the same comb groups), as an array
    (fields x rectangles x [x0, y0, x1, y1]): the same numbers (each corner (v - origin) * ppm
    rounded half to even, as round() does). origin (ox, oy) per field; x0, y0: each frame's corner
    in the crop (px), for a field without cells."""
    first = fields[0].get("cells_mm") or []
    if not first:
        return np.stack([x0, y0, x0 + bw, y0 + bh], axis=1).astype(np.int64)[:, None, :]
    groups: list[list[int]] = [[0]]
    for i, (a, b) in enumerate(zip(first, first[1:]), 1):
        if b[0] - (a[0] + a[2]) > 0.5:
            groups.append([])
        groups[-1].append(i)
    cells = np.array([f["cells_mm"] for f in fields], float)
    corners = []
    for g in groups:
        corners += [cells[:, g[0], 0], cells[:, g, 1].min(axis=1),
                    cells[:, g[-1], 0] + cells[:, g[-1], 2], (cells[:, g, 1] + cells[:, g, 3]).max(axis=1)]
    mm = np.stack(corners, axis=1).reshape(len(fields), len(groups), 4)
    origin = np.stack([ox, oy, ox, oy], axis=1)[:, None, :]
    return np.rint((mm - origin) * ppm).astype(np.int64)


def _print_bands(fields: list[dict], x: np.ndarray, y: np.ndarray, w: float, h: float, ox: np.ndarray,
                 oy: np.ndarray, ppm: float, H: int, W: int) -> np.ndarray:
    """The printed lines of a stack of handwriting fields (of one _hand_shape) to mask, as pixel
    rectangles [n, r0, r1, c0, c1] (not empty, inside the crop): the outline of the field box and
    of each comb cell, PRINT_MASK_MM on either side; the separators between comb groups ('/', ':',
    '.', in the gaps between cells); the ruling between a text field's lines. origin (ox, oy): the
    crop's top-left corner in mm after the shift that lines the box up."""
    N = len(fields)
    cells = np.array([f.get("cells_mm") or [] for f in fields], float).reshape(N, -1, 4)
    R = cells.shape[1] + 1
    rects_mm = np.empty((N, R, 4))  # the field box, then its cells: x, y, w, h
    rects_mm[:, 0, 0], rects_mm[:, 0, 1], rects_mm[:, 0, 2], rects_mm[:, 0, 3] = x, y, w, h
    rects_mm[:, 1:] = cells
    origin = np.stack([ox, oy], axis=1)[:, None, :]
    near = (rects_mm[:, :, :2] - origin) * ppm                         # X0, Y0
    far = (rects_mm[:, :, :2] + rects_mm[:, :, 2:] - origin) * ppm      # X1, Y1
    pad = PRINT_MASK_MM * ppm
    edges = np.stack([near[:, :, 1], far[:, :, 1], near[:, :, 0], far[:, :, 0]])  # Y0, Y1, X0, X1
    bounds = np.concatenate([np.maximum(np.floor(edges - pad), 0),
                             np.minimum(np.ceil(edges + pad), np.array([H, H, W, W], float)[:, None, None])])
    # the four sides of each rectangle (top, bottom, left, right) as [r0, r1, c0, c1]: the lines' edges
    # less (0..3) or plus (4..7) the band
    sides = bounds[[0, 4, 2, 7, 1, 5, 2, 7, 0, 5, 2, 6, 0, 5, 3, 7]].reshape(4, 4, N, R).transpose(2, 0, 3, 1)
    parts = [sides.reshape(N, 4 * R, 4)]
    if cells.shape[1] > 1:
        gap0 = cells[:, :-1, 0] + cells[:, :-1, 2]
        gap1 = cells[:, 1:, 0]
        g0 = np.maximum(0, np.trunc((gap0 - ox[:, None]) * ppm) - 1)
        g1 = np.minimum(W, np.maximum(0, np.ceil((gap1 - ox[:, None]) * ppm) + 1))
        g1 = np.where(gap1 - gap0 > 0.5, g1, 0)
        parts.append(np.stack([np.zeros_like(g0), np.full_like(g0, H), g0, g1], axis=2))
    lines = int(fields[0].get("lines") or 1)
    if lines > 1:
        ly = y[:, None] + np.arange(1, lines)[None, :] * LINE_PITCH
        l0 = np.maximum(0, np.trunc((ly - oy[:, None] - PRINT_MASK_MM) * ppm))
        l1 = np.minimum(H, np.maximum(0, np.ceil((ly - oy[:, None] + PRINT_MASK_MM) * ppm)))
        parts.append(np.stack([l0, l1, np.zeros_like(l0), np.full_like(l0, W)], axis=2))
    out = np.empty((N, sum(p.shape[1] for p in parts), 5), np.int64)
    out[:, :, 0] = np.arange(N)[:, None]
    at = 0
    for p in parts:
        out[:, at:at + p.shape[1], 1:] = p
        at += p.shape[1]
    out = out.reshape(-1, 5)
    return out[(out[:, 2] > out[:, 1]) & (out[:, 4] > out[:, 3])]


def _usable_patterns(H: int, W: int, r0s: list[int], c0s: list[int], bh: int, bw: int, bands: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The usable pixels of each crop of a stack (its field box from (r0, c0), bh x bw, less the printed
    bands [n, r0, r1, c0, c1] of _print_bands), built once per distinct layout: (the distinct masks,
    P x H x W bool; which of them each crop has). The same masks as set field by field."""
    N = len(r0s)
    counts = np.bincount(bands[:, 0], minlength=N)
    rows = bands[:, 1:]
    if N > 1 and counts.min() == counts.max() and min(r0s) == max(r0s) and min(c0s) == max(c0s):
        alike = rows.reshape(N, -1)
        if (alike == alike[0]).all():  # every field's lines on the same pixels: one mask (the usual case)
            N, counts, rows = 1, counts[:1], rows[:int(counts[0])]
    counts = counts.tolist()
    rows = rows.tolist()
    keys: dict[tuple, int] = {}
    which, masks = [], []
    at = 0
    for r0, c0, n in zip(r0s, c0s, counts):
        own = rows[at:at + n]
        at += n
        key = (r0, c0, *(v for rect in own for v in rect))
        i = keys.get(key)
        if i is None:
            i = keys[key] = len(masks)
            mask = np.zeros((H, W), bool)
            mask[max(0, r0):r0 + bh, max(0, c0):c0 + bw] = True
            for a0, a1, b0, b1 in own:
                mask[a0:a1, b0:b1] = False
            masks.append(mask)
        which.append(i)
    if N < len(r0s):
        return masks[0][None], np.zeros(len(r0s), np.intp)
    return np.stack(masks), np.array(which, np.intp)


# OpenCV's 3x3 median filter is ~30 times slower per pixel on images narrower than this (opencv-python
# 5.0.0 here: about 20 ns a pixel below 66 columns, 0.6 above; a MAR's one-box number fields are 50
# px wide): narrower images are filtered widened by copies of their last column, which is what the
# filter's own border rule (replicate) puts there, so their own columns come out the same.
MEDIAN_MIN_WIDTH = 66


def _median3(img: np.ndarray) -> np.ndarray:
    """cv2.medianBlur(img, 3) of a 2-D uint8 image (the same pixels), without the narrow-image cliff."""
    h, w = img.shape
    if w >= MEDIAN_MIN_WIDTH:
        return cv2.medianBlur(img, 3)
    wide = np.empty((h, MEDIAN_MIN_WIDTH), np.uint8)
    wide[:, :w] = img
    wide[:, w:] = img[:, w - 1:w]
    return cv2.medianBlur(wide, 3)[:, :w]


def _median3_stack(P: np.ndarray) -> np.ndarray:
    """cv2.medianBlur(p, 3) of each patch of a stack (the same pixels), in two calls: the stack as one
    tall image, then each patch's first and last row again from three-row strips that repeat the
    edge row as medianBlur's border does (in the tall image they saw the neighbouring patches)."""
    N, H, W = P.shape
    if N == 1 or H < 2:
        return np.stack([_median3(p) for p in P])
    S = np.ascontiguousarray(_median3(P.reshape(N * H, W))).reshape(N, H, W)
    edges = np.stack([P[:, 0], P[:, 0], P[:, 1], P[:, H - 2], P[:, H - 1], P[:, H - 1]], axis=1)
    fixed = _median3(edges.reshape(N * 6, W)).reshape(N, 6, W)
    S[:, 0], S[:, H - 1] = fixed[:, 1], fixed[:, 4]
    return S


def _kth_greys(P: np.ndarray, k: int) -> np.ndarray:
    """_kth_grey of each patch of a stack (N x H x W): the same values, the histograms' running sums in
    one call (float32 counts below 2^24: exact). Many patches: their histograms as one histogram of
    patch * 256 + grey (16-bit, one bin per value), one call instead of one per patch."""
    n = len(P)
    if 8 <= n <= 255:
        codes = P.astype(np.uint16)
        codes += (np.arange(n, dtype=np.uint16) * 256)[:, None, None]
        hists = cv2.calcHist([codes.reshape(-1, codes.shape[2])], [0], None, [n * 256], [0, n * 256]).reshape(n, 256)
    else:
        hists = np.stack([cv2.calcHist([p], [0], None, [256], [0, 256]) for p in P]).reshape(n, 256)
    return np.count_nonzero(np.cumsum(hists, axis=1) <= k, axis=1)


def _edge_blocks(P: np.ndarray, rects: list[tuple[int, int, int, int]], which: np.ndarray | None = None
                 ) -> list[np.ndarray] | None:
    """The four edges of each rectangle (px, corners included) in every patch of a stack (or in the
    patches `which`), as blocks (n x rows x length) of the strips _edge_strip reads: top, bottom,
    left, right. None when an edge runs out of the patch (there _edge_strip repeats the border
    pixels: strip by strip)."""
    b2 = 2 * OUTLINE_BAND_PX
    _, H, W = P.shape
    n = slice(None) if which is None else which
    out = []
    for x0, y0, x1, y1 in rects:
        for pos, a0, length, horizontal in ((y0, x0, x1 - x0 + 1, True), (y1, x0, x1 - x0 + 1, True),
                                            (x0, y0, y1 - y0 + 1, False), (x1, y0, y1 - y0 + 1, False)):
            limit, along_limit = (H, W) if horizontal else (W, H)
            if not (pos - b2 >= 0 and pos + b2 < limit and a0 >= 0 and a0 + length <= along_limit):
                return None
            out.append(P[n, pos - b2:pos + b2 + 1, a0:a0 + length] if horizontal
                       else P[n, a0:a0 + length, pos - b2:pos + b2 + 1].transpose(0, 2, 1))
    return out


def _tile_sums_many(masks: list[np.ndarray], tile: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per stack of boolean masks (N x H x W, all the same shape): each mask's pixel counts per
    tile x tile block (the last row and column of blocks partial) and its total count. One integral
    image of the stack laid end to end: a block's four corners are in one crop, so the rows above
    it (the other crops) cancel out."""
    N, H, W = masks[0].shape
    rows = np.minimum(np.arange(-(-H // tile) + 1) * tile, H)
    cols = np.minimum(np.arange(-(-W // tile) + 1) * tile, W)
    at = (np.arange(N)[:, None] * H + rows[None, :])[:, :, None]
    ends = np.arange(N + 1) * H
    out = []
    for mask in masks:
        ii = cv2.integral(np.ascontiguousarray(mask).reshape(N * H, W).view(np.uint8))
        g = ii[at, cols[None, None, :]]
        total = ii[ends, W]
        out.append((g[:, 1:, 1:] - g[:, :-1, 1:] - g[:, 1:, :-1] + g[:, :-1, :-1], total[1:] - total[:-1]))
    return out


def _mask_rect(mask: np.ndarray, x0: float, y0: float, x1: float, y1: float, ppm: float, origin,
               pad_mm: float, value: bool = True) -> None:
    """Set the outline of a rectangle (mm), with a band of pad_mm on either side, to value."""
    ox, oy = origin
    pad = pad_mm * ppm

    def px(v, o):
        return (v - o) * ppm
    X0, Y0, X1, Y1 = px(x0, ox), px(y0, oy), px(x1, ox), px(y1, oy)
    h, w = mask.shape
    for (a0, b0, a1, b1) in ((X0 - pad, Y0 - pad, X1 + pad, Y0 + pad), (X0 - pad, Y1 - pad, X1 + pad, Y1 + pad),
                             (X0 - pad, Y0 - pad, X0 + pad, Y1 + pad), (X1 - pad, Y0 - pad, X1 + pad, Y1 + pad)):
        r0, r1 = max(0, int(math.floor(b0))), min(h, int(math.ceil(b1)))
        c0, c1 = max(0, int(math.floor(a0))), min(w, int(math.ceil(a1)))
        if r1 > r0 and c1 > c0:
            mask[r0:r1, c0:c1] = value


def _measure_hand_one(image: np.ndarray, hmat: np.ndarray, field: dict, black: float, outlines: list | None = None
                      ) -> tuple[dict[str, Any], np.ndarray]:
    """One handwriting field alone (plain scalar arithmetic: cheaper than a stack of one). outlines:
    its outline's strips go there, "printed" is set from them later (_set_printed); None: now."""
    x, y, w, h = field["box_mm"]
    margin = CROP_MARGIN_MM
    ppm = CROP_PX_PER_MM
    crop = patch(image, hmat, x - margin, y - margin, w + 2 * margin, h + 2 * margin, ppm)
    lv = _Levels(crop, black)
    paper = lv.paper
    smooth = _median3(crop)
    raw_dark = _le(crop, lv.above(DARK_FOR_OUTLINE))
    m = int(round(margin * ppm))
    bw, bh = int(round(w * ppm)), int(round(h * ppm))
    search = int(round(SEARCH_MM * ppm))
    band_r = (m + search + 1, m + bh - search - 1)
    band_c = (m + search + 1, m + bw - search - 1)
    sx = _best_shift(raw_dark, m, m + bw, 1, search, band_r) if band_r[1] > band_r[0] else 0
    sy = _best_shift(raw_dark, m, m + bh, 0, search, band_c) if band_c[1] > band_c[0] else 0
    origin = (x - margin - sx / ppm, y - margin - sy / ppm)
    # only the inside of the field box counts, less the printed lines (set in place: the same mask
    # as inside & ~printed)
    usable = np.zeros(crop.shape, bool)
    r0, c0 = int(m + sy), int(m + sx)
    usable[max(0, r0):r0 + bh, max(0, c0):c0 + bw] = True
    pad = PRINT_MASK_MM
    _mask_rect(usable, x, y, x + w, y + h, ppm, origin, pad, False)
    cells = field.get("cells_mm") or []
    for cx, cy, cw, ch in cells:
        _mask_rect(usable, cx, cy, cx + cw, cy + ch, ppm, origin, pad, False)
    # separators between comb groups ('/', ':', '.') sit in the gaps between cells
    for a, b in zip(cells, cells[1:]):
        gap0, gap1 = a[0] + a[2], b[0]
        if gap1 - gap0 > 0.5:
            c0 = int((gap0 - origin[0]) * ppm) - 1
            c1 = int(math.ceil((gap1 - origin[0]) * ppm)) + 1
            usable[:, max(0, c0):max(0, c1)] = False
    for i in range(1, int(field.get("lines") or 1)):
        ly = y + i * LINE_PITCH
        r0 = int((ly - origin[1] - pad) * ppm)
        r1 = int(math.ceil((ly - origin[1] + pad) * ppm))
        usable[max(0, r0):max(0, r1), :] = False
    tile = max(4, int(round(TILE_MM * ppm)))
    # per tile: usable pixels, ink pixels, light-ink pixels
    light = _le(smooth, lv.at_least(FAINT_DARK)) & usable
    if light.any():
        inked = _le(smooth, lv.at_least(HAND_INK_DARK)) & usable
        (use_t, n_usable), (ink_t, n_inked), (light_t, _) = _tile_sums([usable, inked, light], tile)
    else:  # no light ink, so no ink (darker) either: every count is 0
        ((use_t, n_usable),) = _tile_sums([usable], tile)
        ink_t = light_t = np.zeros_like(use_t)
        n_inked = 0
    valid = use_t >= tile * tile * TILE_MIN_USABLE
    frac = np.where(valid, ink_t / np.maximum(use_t, 1), 0.0)
    light_frac = np.where(valid, light_t / np.maximum(use_t, 1), 0.0)
    tiles = int(valid.sum())
    inked_tiles = int((frac >= TILE_INK).sum())
    max_tile = float(frac.max()) if frac.size else 0.0
    max_light = float(light_frac.max()) if light_frac.size else 0.0
    raw = {"tiles": tiles, "tiles_inked": inked_tiles, "max_tile": round(max_tile, 4),
           "printed": None,
           "ink_fraction": round(float(n_inked) / max(1, n_usable), 4),
           "max_light_tile": round(max_light, 4),
           "shift_mm": [round(sx / ppm, 2), round(sy / ppm, 2)], "paper": round(paper, 1)}
    if inked_tiles == 0 and (max_tile > TILE_FAINT or max_light > TILE_LIGHT):
        raw["faint_only"] = True
        raw["ink_confidence"] = 0.5
    pending = [([raw], _frame_strips(crop, field, origin, ppm, (m + sx, m + sy, bw, bh)))]
    if outlines is None:
        _set_printed(pending, ppm)
    else:
        outlines += pending
    return raw, crop


def _frame_strips(crop: np.ndarray, field: dict, origin, ppm: float, frame_px) -> list[np.ndarray]:
    """The edge strips of a handwriting field's printed outline (its "printed" is their weakest
    stretch), of the rectangles of _frame_rects."""
    return [s for r in _frame_rects(field, origin, ppm, frame_px) for s in _rect_strips(crop, *r)]


def _frame_rects(field: dict, origin, ppm: float, frame_px) -> list[tuple[int, int, int, int]]:
    """The rectangles (px in the crop, corners included) of a handwriting field's printed outline:
    its frame; for a comb (no frame of its own: the gaps between groups are open), the outer frame
    of each group of cells (the walls between cells are left out: two rectangles' edges meet there,
    and blur away first)."""
    cells = field.get("cells_mm") or []
    if not cells:
        x0, y0, w, h = frame_px
        return [(x0, y0, x0 + w, y0 + h)]
    groups: list[list] = [[cells[0]]]
    for a, b in zip(cells, cells[1:]):
        if b[0] - (a[0] + a[2]) > 0.5:
            groups.append([])
        groups[-1].append(b)
    rects = []
    for g in groups:
        gx0, gy0 = g[0][0], min(c[1] for c in g)
        gx1, gy1 = g[-1][0] + g[-1][2], max(c[1] + c[3] for c in g)
        rects.append(tuple(int(round((v - o) * ppm)) for v, o in ((gx0, origin[0]), (gy0, origin[1]),
                                                                  (gx1, origin[0]), (gy1, origin[1]))))
    return rects


def _tile_sums(masks: list[np.ndarray], tile: int) -> list[tuple[np.ndarray, int]]:
    """Per boolean mask (all the same shape): its pixel counts per tile x tile block (the last row and
    column of blocks partial) and its total count."""
    H, W = masks[0].shape
    rows = np.minimum(np.arange(-(-H // tile) + 1) * tile, H)
    cols = np.minimum(np.arange(-(-W // tile) + 1) * tile, W)
    grid = np.ix_(rows, cols)
    out = []
    for mask in masks:
        ii = cv2.integral(mask.view(np.uint8))
        g = ii[grid]
        out.append((g[1:, 1:] - g[:-1, 1:] - g[1:, :-1] + g[:-1, :-1], int(ii[H, W])))
    return out
