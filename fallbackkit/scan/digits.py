"""Digit recognition in comb cells: per cell, empty / one digit 0-9 / something else.

Each cell is cut upright from the scan through the page transform (with the field's measured
outline shift); ink is the dark pixels and the paler ones joined to them; its printed outline is
removed without cutting the strokes that cross it or run beside it (`strip_outline`), specks are
dropped and the ink is normalised the way MNIST digits are (longer side 20 px, centred by centre of
mass in 28 x 28, deskewed). A page's cells go through this side by side, together (`normalise_many`:
a few OpenCV calls per page instead of a few per cell; one cell alone gives the same pixels). A
small convolutional network gives 11 probabilities (0-9 and "other": a letter, a scribble, two
digits, a crossed-out digit), calibrated by temperature on held-out digits. Two such networks read
every inked cell (the second trained with another seed and another reshaping of the digits): the
cell's probabilities are both models' weighted product (`combine`, see `opinions`), and each one's
first choice is kept (`votes`), so that a box is pre-filled only where they agree.

The models are `digits_model.npz` and `digits_second.npz` beside this file, made by
`tools/train_digits.py` from the data in `data/handwriting/` (fixed seeds); they need NumPy and
OpenCV only. What a cell reads as is stored as raw measures (ink, top alternatives, votes; for a cell
read empty, its edge ink: a stroke written on the box's side that the cut leaves out, `_edge_ink`)
so that the suggestion can be decided again later.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import cv2
import numpy as np

CELL_PPM = 8.0          # px/mm of the upright cell cut
INK_DARK = 0.35         # darkness of a pixel that counts as ink
SPECK_PX = 6            # connected ink smaller than this (px at CELL_PPM) is dust
EMPTY_INK_PX = 24       # a cell with less ink than this (after specks) is empty
OTHER = 10              # class index of "something else"
LABELS = [str(d) for d in range(10)] + ["other"]
MODEL_PATH = Path(__file__).with_name("digits_model.npz")
SECOND_PATH = Path(__file__).with_name("digits_second.npz")   # the second opinion (see Batch.finish)
TOP_K = 3


def cell_patch(image: np.ndarray, hmat: np.ndarray, cell_mm, shift_mm=(0.0, 0.0)) -> np.ndarray:
    """The cell [x, y, w, h] mm (plus 1 mm around) upright at CELL_PPM, grey uint8."""
    from .read import patch
    x, y, w, h = cell_mm
    return patch(image, hmat, x + shift_mm[0] - 1.0, y + shift_mm[1] - 1.0, w + 2.0, h + 2.0, CELL_PPM)


OUTLINE_BAND_MM = 0.6   # half-width of the band around the printed outline searched for its line
OUTSIDE_MM = 0.5        # a stroke may run this far beyond the outline (and is kept)
LINE_SHARE = 0.35       # a straight run this long (share of the cell side) in the band may be printed line
LINE_COVER = 0.8        # ... in a row (column) where such runs cover this share of the cell side (a long
                        # stroke lying along the line covers less: it stays)
LINE_EDGE_COVER = 0.1   # ... or this share, next to such a row (the line's blurred edge)
INK_FAINT = 0.2         # a paler pixel is ink too where it joins ink of INK_DARK (a pale or thin pen)
GAP_PX = 12             # blank columns between cells laid side by side (more than any kernel reaches)
LINE_FULL = 0.9         # the printed outline runs along this share of its side at least (a stroke less)
EDGE_GAP_PX = 1         # the printed line's pale rim beside its inner edge is the line's, not ink in the margin
LINE_MAX_PX = 4         # the printed outline is at most this wide in pale ink (2-3 px scanned or photographed
                        # at CELL_PPM): a straight run along the side wider than this holds a stroke too
_K3 = np.ones((3, 3), np.uint8)


def _next_to(a: np.ndarray) -> np.ndarray:
    """True beside a True along the first axis of a (one step either way)."""
    out = np.zeros_like(a)
    out[1:] |= a[:-1]
    out[:-1] |= a[1:]
    return out


def _crossing(a: np.ndarray, vertical: bool, reach: int) -> np.ndarray:
    """True where a (uint8 0/1) is True both 1..reach px before (above / left of) and 1..reach px
    after (below / right of) it: two rectangular dilations (OpenCV's fast path), anchored at either
    end, compared one pixel apart."""
    k = np.ones((reach, 1) if vertical else (1, reach), np.uint8)
    bd = {"borderType": cv2.BORDER_CONSTANT, "borderValue": 0}
    before = cv2.dilate(a, k, anchor=(0, reach - 1) if vertical else (reach - 1, 0), **bd)
    after = cv2.dilate(a, k, anchor=(0, 0), **bd)
    out = np.zeros(a.shape, bool)
    if vertical:
        np.bitwise_and(before[:-2], after[2:], out=out[1:-1].view(np.uint8))
    else:
        np.bitwise_and(before[:, :-2], after[:, 2:], out=out[:, 1:-1].view(np.uint8))
    return out


def _tile(a: np.ndarray) -> np.ndarray:
    """(N, h, w) -> (h, N * (w + GAP_PX)): the cells side by side with blank columns between them, so
    that one OpenCV call treats a page's cells (and one cell exactly as a page's cells)."""
    n, h, w = a.shape
    out = np.zeros((h, n, w + GAP_PX), a.dtype)
    out[:, :, :w] = a.transpose(1, 0, 2)
    return out.reshape(h, -1)


def _runs(idx: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of consecutive integers in a sorted index array."""
    cut = np.flatnonzero(np.diff(idx) != 1) + 1
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(idx, cut)]


def _strip_tiled(ink: np.ndarray, n: int, w: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """strip_outline of n tiled cells of width w (see _tile). The printed line is only looked for
    in the band where it is printed, so each step is worked out only where it can matter: the
    straight runs along the band's rows and the ones beside them, the crossing strokes around the
    band's rows (each row's and column's numbers as on the whole cell). The straight runs down the
    columns are found on every column (cheaper than gathering the band's) and counted on the band's."""
    h = ink.shape[0]
    s = w + GAP_PX
    band = int(round(OUTLINE_BAND_MM * CELL_PPM))
    u8 = ink.view(np.uint8)
    lh = max(3, int(round(LINE_SHARE * (w - 2 * m))))
    lv = max(3, int(round(LINE_SHARE * (h - 2 * m))))
    bd = {"borderType": cv2.BORDER_CONSTANT, "borderValue": 0}
    band_rows, band_cols, rows, near_band = _bands(h, n, w, m)
    # straight runs: an opening along rows (columns) treats each row (column) on its own
    horiz = cv2.morphologyEx(u8[rows], cv2.MORPH_OPEN, np.ones((1, lh), np.uint8), **bd) > 0
    vert = cv2.morphologyEx(u8, cv2.MORPH_OPEN, np.ones((lv, 1), np.uint8), **bd)
    # only the rows (columns) the line runs along nearly the whole cell: a stroke lying on the line
    # thickens the run there but stays outside those rows and is kept (and the blurred edge rows
    # beside them, where such runs still cover some of the side)
    rcover = np.zeros((h, n))
    rcover[rows] = np.count_nonzero(horiz.reshape(len(rows), n, s)[:, :, m:w - m], axis=2) / (w - 2 * m)
    ccover = np.where(near_band, cv2.reduce(vert[m:h - m], 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[0], 0) / (h - 2 * m)
    rsel = (rcover >= LINE_COVER) | ((rcover >= LINE_EDGE_COVER) & _next_to(rcover >= LINE_COVER))
    csel = (ccover >= LINE_COVER) | ((ccover >= LINE_EDGE_COVER) & _next_to(ccover >= LINE_COVER))
    line_h = np.zeros(ink.shape, bool)
    in_band = band_rows[rows]
    line_h[rows[in_band]] = horiz[in_band] & np.repeat(rsel[rows[in_band]], s, axis=1)
    line_v = vert.view(bool) & (band_cols & csel)[None, :]
    line = line_h | line_v
    rest = np.greater(ink, line).view(np.uint8)    # ink & ~line
    reach = 2 * band + 1
    tall = cv2.dilate(rest, np.ones((3, 1), np.uint8))
    # a line pixel is kept where a stroke crosses the line (ink on both sides). A stroke that only
    # touches the line loses the pixels it shares with it: keeping the line there (tried) draws a
    # bar of outline on every digit that touches its box, which costs more than it saves.
    kept = rest.view(bool) | line_v & _crossing(tall, False, reach)
    for r0, r1 in _runs(np.flatnonzero(band_rows)):   # the rows within reach of the band's
        a, b = max(0, r0 - reach), min(h, r1 + reach)
        wide = cv2.dilate(rest[a:b], np.ones((1, 3), np.uint8))
        kept[r0:r1] |= line_h[r0:r1] & _crossing(wide, True, reach)[r0 - a:r1 - a]
    return kept, np.greater(line, kept)   # line & ~kept


@functools.lru_cache(maxsize=64)
def _bands(h: int, n: int, w: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For _strip_tiled: the rows of the outline's band, its columns (in each of the n cells), the
    rows of the band and those beside them, and the columns of the band and those beside them."""
    s = w + GAP_PX
    band = int(round(OUTLINE_BAND_MM * CELL_PPM))
    band_rows = np.zeros(h, bool)
    band_rows[max(0, m - band):m + band + 1] = True
    band_rows[max(0, h - m - band):h - m + band + 1] = True
    col = np.arange(n * s) % s
    band_cols = ((col >= m - band) & (col <= m + band)) | ((col >= w - m - band) & (col <= w - m + band))
    rows = np.flatnonzero(band_rows | _next_to(band_rows))       # the band's rows and those beside them
    near_band = band_cols | _next_to(band_cols)
    for a in (band_rows, band_cols, rows, near_band):
        a.flags.writeable = False
    return band_rows, band_cols, rows, near_band


def strip_outline(ink: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(ink without the printed outline, the outline pixels removed) of a cell patch whose outline
    is m px from each edge. The outline is what runs straight along the band where it is printed; a
    pixel of it is kept where a stroke continues across the line on both sides (a digit crossing the
    outline keeps its stroke; a long stroke lying beside the line stays, its rows are not the line's)."""
    h, w = ink.shape
    kept, removed = _strip_tiled(_tile(ink[None]), 1, w, m)
    return kept[:, :w], removed[:, :w]


def comb_patches(image: np.ndarray, hmat: np.ndarray, field: dict, shift_mm=(0.0, 0.0)) -> list[np.ndarray]:
    """cell_patch of every cell of a comb field, cut as one strip when the cells lie in one row on
    whole pixels of CELL_PPM from each other (the printed combs do: one warp instead of one a cell;
    the same pixels up to the warp's rounding)."""
    cells = tuple(tuple(map(float, c)) for c in field.get("cells_mm") or [])
    if not cells:
        return []
    layout = _comb_layout(cells)
    if layout is None:
        return [cell_patch(image, hmat, c, shift_mm) for c in cells]
    from .read import patch
    (x0, y, w, h), cuts = layout
    strip = patch(image, hmat, x0 + shift_mm[0] - 1.0, y + shift_mm[1] - 1.0, w, h, CELL_PPM)
    return [strip[:, o:o + wpx] for o, wpx in cuts]


@functools.lru_cache(maxsize=4096)
def _comb_layout(cells: tuple) -> tuple[tuple[float, float, float, float], list[tuple[int, int]]] | None:
    """For comb_patches: the first cell's x, y, the strip's w, h (mm, before the field's shift and the
    1 mm around) and each cell's columns in it, or None when the cells must be cut one by one
    (worked out once per comb)."""
    x0, y, _, h = cells[0]
    offs = [(c[0] - x0) * CELL_PPM for c in cells]
    if any(c[1] != y or c[3] != h or abs(o - round(o)) > 1e-6 for c, o in zip(cells, offs)):
        return None
    right = max(c[0] + c[2] for c in cells)
    width = max(1, int(round((right - x0 + 2.0) * CELL_PPM)))
    cuts = []
    for c, o in zip(cells, offs):
        o, wpx = int(round(o)), max(1, int(round((c[2] + 2.0) * CELL_PPM)))
        if o + wpx > width:
            return None
        cuts.append((o, wpx))
    return (x0, y, right - x0 + 2.0, h + 2.0), cuts


@functools.lru_cache(maxsize=8)
def _zones(shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """For a cell patch of this shape: the cell and a little beyond its outline (not the
    neighbours' ink), and the interior rows/columns clear of the outline band."""
    h, w = shape
    m = int(round(1.0 * CELL_PPM))
    out_px = int(round(OUTSIDE_MM * CELL_PPM))
    pad = int(round(OUTLINE_BAND_MM * CELL_PPM))
    zone = np.zeros(shape, bool)
    zone[max(0, m - out_px):h - m + out_px, max(0, m - out_px):w - m + out_px] = True
    zone.flags.writeable = False
    return zone, (m + pad, h - m - pad, m + pad, w - m - pad)


def normalise(p: np.ndarray, black: float) -> tuple[np.ndarray | None, int]:
    """(28 x 28 float32 ink image 0..1, or None when empty; ink pixels) of one cell_patch."""
    return normalise_many([p], [black])[0]


def normalise_many(patches: list[np.ndarray], blacks) -> list[tuple[np.ndarray | None, int]]:
    """normalise of each cell patch, the cells of one shape laid side by side and treated together
    (a page's cells cost a few OpenCV calls, not a few per cell; one cell alone gives the same)."""
    return [(norm, ink) for norm, ink, _ in measure_many(patches, blacks)]


def measure_many(patches: list[np.ndarray], blacks) -> list[tuple[np.ndarray | None, int, int]]:
    """normalise_many, and the edge ink of each cell read empty (`_edge_ink`: ink along the inside of
    its outline that the cut leaves out, which the printed line does not explain; 0 for the others)."""
    out: list[tuple[np.ndarray | None, int, int]] = [(None, 0, 0)] * len(patches)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, p in enumerate(patches):
        groups.setdefault(p.shape, []).append(i)
    for shape, idx in groups.items():
        group = np.stack([patches[i] for i in idx])
        normalised, faint_grey = _normalise_group(group, np.array([blacks[i] for i in idx], np.float32))
        empty = np.array([norm is None for norm, _ in normalised])
        edges = np.zeros(len(idx), np.int64)
        if empty.any():
            edges[empty] = _edge_ink(group[empty], faint_grey[empty])
        for i, (norm, ink), edge in zip(idx, normalised, edges.tolist()):
            out[i] = (norm, ink, edge)
    return out


def _edge_ink(p: np.ndarray, faint_grey: np.ndarray) -> np.ndarray:
    """Per cell patch (n, h, w), the pale-ink pixels in the band of its outline that the printed line
    does not explain: a stroke written on the outline or hugging it inside the box, which the cut
    takes for line or drops for not reaching the interior (a 1 written on the box's side). On each
    side, the printed line is the straight run across the band that covers LINE_FULL of the side's
    whole length (where it is after the page transform and the field's shift; a stroke covers less);
    counted are the pixels between its inner edge (EDGE_GAP_PX beyond it) and the interior, along
    the interior's length, and the run's width beyond LINE_MAX_PX along that length (a stroke lying
    on the whole line merges with it). Beyond the line, away from the interior, is the neighbour's
    box and is not counted. A blank box's line and dust give 0 or a few pixels; the suggestion
    decides from this raw measure (`suggest.py`)."""
    n, h, w = p.shape
    m = int(round(1.0 * CELL_PPM))
    band = int(round(OUTLINE_BAND_MM * CELL_PPM))
    _, (r0, r1, c0, c1) = _zones((h, w))
    edge = np.zeros(n, np.int64)
    if r1 <= r0 or c1 <= c0 or m < band or h - m + band + 1 > h or w - m + band + 1 > w:
        return edge
    ink = p <= faint_grey.astype(np.int16)[:, None, None]
    # each side as (n, along it, across it from the band's outer edge to the interior): the whole
    # side (where the line is found) and the interior's length (where the margin is counted)
    sides = ((ink[:, m:h - m + 1, m - band:c0], r0 - m, r1 - m),
             (ink[:, m:h - m + 1, c1:w - m + band + 1][:, :, ::-1], r0 - m, r1 - m),
             (ink[:, m - band:r0, m:w - m + 1].transpose(0, 2, 1), c0 - m, c1 - m),
             (ink[:, r1:h - m + band + 1, m:w - m + 1][:, ::-1].transpose(0, 2, 1), c0 - m, c1 - m))
    for side, a, b in sides:
        along, across = side.shape[1], side.shape[2]
        cover = np.count_nonzero(side, axis=1)                          # (n, across)
        line = cover >= np.minimum(LINE_FULL * along, LINE_FULL * cover.max(axis=1))[:, None]
        line &= cover > 0
        found = line.any(axis=1)
        j = np.arange(across)
        inner = np.where(found, np.where(line, j, -1).max(axis=1), band)
        outer = np.where(found, np.where(line, j, across).min(axis=1), band)
        margin = side[:, a:b] & (j > (inner + EDGE_GAP_PX)[:, None])[:, None, :]
        edge += np.count_nonzero(margin, axis=(1, 2))
        edge += np.maximum(inner - outer + 1 - LINE_MAX_PX, 0) * (b - a)
    return edge


_GREYS = np.arange(256, dtype=np.float32)


def _members(labels: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The pixels whose component (labels: a label image, 0 for the background) is chosen; chosen[0]
    is False. One look-up per pixel: OpenCV's byte table while the labels fit in a byte (half the
    cost), else np.take (cheaper than visiting the mask's pixels twice)."""
    if len(chosen) <= 256:
        table = np.zeros(256, np.uint8)
        table[:len(chosen)] = chosen
        return cv2.LUT(labels.astype(np.uint8), table).view(bool)
    return np.take(chosen, labels)


def _components(a: np.ndarray) -> tuple[int, np.ndarray]:
    """connectedComponents (8-connected) of a uint8 0/1 image, in 16-bit labels while they fit (less
    memory written and read back; 32-bit when a page has 65,535 pieces or more): the same labels."""
    try:
        return cv2.connectedComponents(a, connectivity=8, ltype=cv2.CV_16U)
    except cv2.error:
        return cv2.connectedComponents(a, connectivity=8, ltype=cv2.CV_32S)


def _normalise_group(p: np.ndarray, blacks: np.ndarray) -> tuple[list[tuple[np.ndarray | None, int]], np.ndarray]:
    """normalise_many of cells of one shape, and each cell's palest grey that may be ink (for
    _edge_ink). The darkness of a pixel, (paper - grey) / span, depends on its grey value alone: each cell's 256 darknesses are worked out once (the same float32 numbers)
    and ink is found by comparing grey values with the palest ink grey; the darkness itself is read
    only inside the inked cells' crops. A cell with no pixel pale-ink dark in its interior has no ink
    (every stroke kept reaches the interior) and is answered before anything costly."""
    n, h, w = p.shape
    from .read import _kth_greys
    # the k-th smallest grey of each cell (np.sort(cell.ravel())[k]) from the cells' histograms
    paper = _kth_greys(p, int(h * w * 0.92)).astype(np.float32)
    span = np.maximum(paper - blacks, 25.0)
    dark_of = np.clip((paper[:, None] - _GREYS) / span[:, None], 0.0, 1.0)   # (n, 256), falls with grey
    faint_grey = np.count_nonzero(dark_of >= INK_FAINT, axis=1) - 1          # palest grey that may be ink
    dark_grey = np.count_nonzero(dark_of >= INK_DARK, axis=1) - 1
    zone, (r0, r1, c0, c1) = _zones((h, w))
    res: list[tuple[np.ndarray | None, int]] = [(None, 0)] * n
    if r1 <= r0 or c1 <= c0:
        return res, faint_grey   # a box too small to have an interior: nothing in it can be kept
    idx = np.nonzero((p[:, r0:r1, c0:c1].min(axis=(1, 2)) <= faint_grey) & (dark_grey >= 0))[0]
    if not len(idx):
        return res, faint_grey
    ys, xs = np.nonzero(zone)
    zy, zx = int(ys.min()), int(xs.min())
    zh, zw = int(ys.max()) + 1 - zy, int(xs.max()) + 1 - zx
    nk = len(idx)
    m = int(round(1.0 * CELL_PPM)) - zy
    w, s = zw, zw + GAP_PX
    # the candidate cells' zones side by side, the gaps paper-white (no grey threshold reaches 255)
    grey = np.full((zh, nk, s), 255, np.uint8)
    grey[:, :, :zw] = p[idx, zy:zy + zh, zx:zx + zw].transpose(1, 0, 2)
    grey = grey.reshape(zh, -1)
    # ink: pale-ink pixels, where they join dark ones (a pale pen's strokes stay whole)
    faint = grey <= np.repeat(faint_grey[idx].astype(np.uint8), s)[None, :]
    dark = grey <= np.repeat(dark_grey[idx].astype(np.uint8), s)[None, :]
    nf, flab = _components(faint.view(np.uint8))
    hit = np.bincount(flab[dark], minlength=nf) > 0
    hit[0] = False
    ink = faint if hit[1:].all() else _members(flab, hit)
    ink, line = _strip_tiled(ink, nk, w, m)
    # strokes: what is left, in pieces of SPECK_PX or more that reach the cell's interior (areas
    # counted here: OpenCV's statistics visit every paper pixel too, and cost four labellings)
    nc, lab = _components(ink.view(np.uint8))
    area = np.bincount(lab[ink], minlength=nc)
    inside = np.bincount(lab[r0 - zy:r1 - zy].reshape(r1 - r0, nk, s)[:, :, c0 - zx:c1 - zx].ravel(), minlength=nc) > 0
    keep = (area >= SPECK_PX) & inside
    keep[0] = False
    kept = ink if keep[1:].all() else _members(lab, keep)
    by_cell = kept.reshape(zh, nk, s)
    total = np.count_nonzero(by_cell, axis=(0, 2))
    rows, cols = by_cell.any(axis=2), by_cell.any(axis=0)          # (zh, nk), (nk, s)
    y0, y1 = rows.argmax(axis=0), zh - rows[::-1].argmax(axis=0)
    x0 = cols.argmax(axis=1) + np.arange(nk) * s
    x1 = s - cols[:, ::-1].argmax(axis=1) + np.arange(nk) * s
    # the kept strokes and the pale rim around them (anti-aliased pen), not the printed line
    value = cv2.dilate(kept.view(np.uint8), _K3)
    np.greater(value, line, out=value)   # & ~line
    # elsewhere paper-white: the darkness of grey 255 is 0 (no paper is paler), so each crop's
    # darkness is one table look-up of its greys (value - 1 is 0 where value and 255 elsewhere)
    np.bitwise_or(grey, np.subtract(value, 1, out=value), out=grey)
    boxes = [(i, t, ya, yb, xa, xb) for i, t, ya, yb, xa, xb in zip(idx.tolist(), total.tolist(), y0.tolist(),
                                                                   y1.tolist(), x0.tolist(), x1.tolist())]
    for i, t, *_ in boxes:
        if t < EMPTY_INK_PX:
            res[i] = (None, t)
    boxes = [b for b in boxes if b[1] >= EMPTY_INK_PX]
    out = np.empty((len(boxes), 28, 28), np.float32)
    for o, (i, t, ya, yb, xa, xb) in zip(out, boxes):
        _lay(cv2.LUT(grey[ya:yb, xa:xb], dark_of[i]), o)
    _to_darkest(out)
    for o, (i, t, *_) in zip(out, boxes):
        res[i] = (o, t)
    return res, faint_grey


def _to_darkest(out: np.ndarray) -> None:
    """Each image of out (N, 28, 28) divided by its darkest pixel (unless blank), in place."""
    mx = out.max(axis=(1, 2))
    some = mx > 0
    out[some] /= mx[some][:, None, None]


def _centre(crop: np.ndarray) -> np.ndarray:
    """The ink crop as MNIST digits are: longer side 20 px, centred by centre of mass in 28 x 28,
    deskewed (as `deskew`, in the same warp), darkest pixel 1."""
    out = np.empty((1, 28, 28), np.float32)
    _lay(crop, out[0])
    _to_darkest(out)
    return out[0]


def _lay(crop: np.ndarray, dst: np.ndarray) -> None:
    """_centre of crop into dst (28 x 28 float32) before the division by its darkest pixel."""
    ch, cw = crop.shape
    sc = 20.0 / max(ch, cw)
    nh, nw = max(1, int(round(ch * sc))), max(1, int(round(cw * sc)))
    small = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA)
    mo = cv2.moments(small)
    tot = mo["m00"] or 1.0
    cy, cx = mo["m01"] / tot, mo["m10"] / tot
    oy = min(max(int(round(14 - cy)), 0), 28 - nh)
    ox = min(max(int(round(14 - cx)), 0), 28 - nw)
    # laid at (ox, oy), then sheared about its centre of mass so that its principal axis is upright
    skew = 0.0 if abs(mo["mu02"]) < 1e-2 else max(-1.0, min(1.0, mo["mu11"] / mo["mu02"]))
    mat = np.float32([[1, skew, -skew * (cy + oy) + (cx + ox) - 14 - ox], [0, 1, -oy]])
    if skew == 0.0:
        mat[0, 2] = -ox
    cv2.warpAffine(small, mat, (28, 28), dst=dst, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0.0)


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


def _windows(x: np.ndarray, k: int) -> np.ndarray:
    """(B, H, W, C) -> (B, H-k+1, W-k+1, k*k*C): every k x k window, for convolution by matmul."""
    v = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))  # B, h, w, C, k, k
    b, h, w = v.shape[:3]
    return np.ascontiguousarray(v.transpose(0, 1, 2, 4, 5, 3)).reshape(b, h, w, -1)


def _dense(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x (..., k) @ w (k, n) as one 2-D product (a stacked matmul would run one small product per row)."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[1])


def _pool_windows(x: np.ndarray, k: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(4, B * H/2 * W/2, k*k*C): the k x k windows of x (B, H, W, C) as _windows, ordered by their
    place in each 2 x 2 pooling square first, so that convolution then max-pooling is one product and
    the maximum of four contiguous blocks (strided pooling of the product costs more than the product)."""
    v = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))  # B, h, w, C, k, k
    b, oh, ow, c = v.shape[:4]
    v = v.reshape(b, oh // 2, 2, ow // 2, 2, c, k, k).transpose(2, 4, 0, 1, 3, 6, 7, 5)
    return np.ascontiguousarray(v).reshape(4, -1, k * k * c), (b, oh // 2, ow // 2)


def _conv_pool(win: tuple[np.ndarray, tuple[int, int, int]], w: np.ndarray) -> np.ndarray:
    """maxpool(conv) from _pool_windows, (B * H/2 * W/2, channels): one product and the maximum of
    four contiguous blocks."""
    x = win[0]
    z = (x.reshape(-1, x.shape[-1]) @ w).reshape(4, -1, w.shape[1])
    return np.maximum(np.maximum(z[0], z[1]), np.maximum(z[2], z[3]))


def _bias_relu(q: np.ndarray, bias: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """ReLU(q + bias) as (B, H, W, channels) (the same numbers as the training pass: max-pooling
    before bias and ReLU keeps the order of values)."""
    q = q + bias
    np.maximum(q, 0, out=q)
    return q.reshape(*shape, -1)


def _conv_pool_relu(win: tuple[np.ndarray, tuple[int, int, int]], w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """ReLU(maxpool(conv) + bias) from _pool_windows."""
    return _bias_relu(_conv_pool(win, w), bias, win[1])


def _pool(x: np.ndarray) -> np.ndarray:
    """2 x 2 max-pooling (four strided views: a reshape-and-max over two axes costs several times more)."""
    return np.maximum(np.maximum(x[:, 0::2, 0::2], x[:, 1::2, 0::2]), np.maximum(x[:, 0::2, 1::2], x[:, 1::2, 1::2]))


class Model:
    """A small convolutional network: 5x5 conv (C1) + ReLU + 2x2 max-pool, 5x5 conv (C2) + ReLU +
    2x2 max-pool, a hidden ReLU layer, 11 outputs; softmax with a calibration temperature."""

    KEYS = ("w1", "b1", "w2", "b2", "w3", "b3", "w4", "b4")

    def __init__(self, params: dict[str, np.ndarray]):
        for k in self.KEYS:
            setattr(self, k, np.asarray(params[k], np.float32))
        self.temperature = float(params.get("temperature", 1.0))

    def forward(self, images: np.ndarray, keep: bool = False):
        """Logits; keep=True (training) also returns every layer, with the convolution windows."""
        if not keep:
            return self.hidden(images) @ self.w4 + self.b4
        x = np.asarray(images, np.float32)[..., None]
        p1 = _windows(x, 5)
        z1 = _dense(p1, self.w1) + self.b1
        a1 = np.maximum(z1, 0)
        q1 = _pool(a1)
        p2 = _windows(q1, 5)
        z2 = _dense(p2, self.w2) + self.b2
        a2 = np.maximum(z2, 0)
        q2 = _pool(a2)
        f = q2.reshape(len(x), -1)
        z3 = f @ self.w3 + self.b3
        h = np.maximum(z3, 0)
        logits = h @ self.w4 + self.b4
        return logits, (p1, z1, a1, q1, p2, z2, a2, q2, f, z3, h)

    def _hidden(self, win1: tuple[np.ndarray, tuple[int, int, int]]) -> np.ndarray:
        """The hidden layer from the first layer's _pool_windows of the images (float32 throughout)."""
        return self._hidden_q1(_conv_pool_relu(win1, self.w1, self.b1))

    def _hidden_q1(self, q1: np.ndarray) -> np.ndarray:
        """The hidden layer from the first layer's output (B, H, W, C1)."""
        q2 = _conv_pool_relu(_pool_windows(q1, 5), self.w2, self.b2)
        h = q2.reshape(len(q2), -1) @ self.w3
        h += self.b3
        np.maximum(h, 0, out=h)
        return h

    def hidden(self, images: np.ndarray) -> np.ndarray:
        """The hidden layer's features (what the kit's memory compares)."""
        return self._hidden(_pool_windows(np.asarray(images, np.float32)[..., None], 5))

    def logits(self, images: np.ndarray) -> np.ndarray:
        return self.forward(images)

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        z = logits / self.temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.calibrated(self.logits(images))

    def read(self, win1: tuple[np.ndarray, tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated probabilities, hidden features) of images given as their _pool_windows."""
        h = self._hidden(win1)
        return self.calibrated(h @ self.w4 + self.b4), h

    def save(self, path: Path | str) -> None:
        np.savez_compressed(path, temperature=np.float32(self.temperature),
                            **{k: getattr(self, k).astype(np.float16 if k.startswith("w") else np.float32)
                               for k in self.KEYS})


def _unit(h: np.ndarray) -> np.ndarray:
    return h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-6)


@functools.lru_cache(maxsize=1)
def model() -> Model:
    with np.load(MODEL_PATH) as z:
        return Model({k: z[k] for k in z.files})


@functools.lru_cache(maxsize=1)
def second_model() -> Model | None:
    """The second opinion: the same network trained with another seed and another reshaping of the
    training digits (`tools/train_digits.py --second`); its mistakes are mostly not the first's.
    None when its file is missing (an incomplete install): suggestions are still made, nothing is
    pre-filled."""
    if not SECOND_PATH.exists():
        return None
    with np.load(SECOND_PATH) as z:
        return Model({k: z[k] for k in z.files})


@functools.lru_cache(maxsize=4)
def _first_layer_of(*models: Model) -> tuple[np.ndarray, np.ndarray]:
    """The models' first-layer weights side by side, transposed (C1 of all, 25), and their biases
    (C1 of all, 1): both models' first layer is one product (one wide product costs less than two)."""
    w = np.concatenate([m.w1 for m in models], axis=1)
    b = np.concatenate([m.b1.reshape(-1) for m in models])
    return np.ascontiguousarray(w.T), np.ascontiguousarray(b[:, None])


# For _first_layer: the shifted copy of the image that window place (ky, kx) of pooling place (py, px)
# reads is the one shifted by (py + ky, px + kx) (of 6 x 6).
_SHIFT_Y = np.broadcast_to(np.arange(5)[:, None, None, None] + np.arange(2)[None, None, :, None], (5, 5, 2, 2))
_SHIFT_X = np.broadcast_to(np.arange(5)[None, :, None, None] + np.arange(2)[None, None, None, :], (5, 5, 2, 2))


def _first_layer(x: np.ndarray, wt: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """ReLU(maxpool(conv 5 x 5) + bias) of images x (B, 28, 28) float32 as (channels, B * 12 * 12), the
    same numbers as _conv_pool_relu of _pool_windows. The product is taken the other way round (the
    weights on the left): its right side is 36 copies of the image shifted by (0..5, 0..5) and taken
    every second pixel, gathered in whole blocks, instead of 576 windows of 25 pixels per image
    gathered pixel by pixel (35 % less CPU than that pass for a MAR page's boxes)."""
    b = len(x)
    shifted = np.empty((6, 6, b, 12, 12), np.float32)
    for dy in range(6):
        for dx in range(6):
            shifted[dy, dx] = x[:, dy:dy + 23:2, dx:dx + 23:2]
    z = (wt @ shifted[_SHIFT_Y, _SHIFT_X].reshape(25, -1)).reshape(len(wt), 4, -1)
    q = np.maximum(np.maximum(z[:, 0], z[:, 1]), np.maximum(z[:, 2], z[:, 3]))
    q += bias
    np.maximum(q, 0, out=q)
    return q


def _channels_last(q: np.ndarray, b: int) -> np.ndarray:
    """(C, B * 12 * 12) as (B, 12, 12, C), contiguous (the second layer's windows are gathered from it
    at half the cost of gathering them from a strided view)."""
    return np.ascontiguousarray(q.T).reshape(b, 12, 12, len(q))


NO_VOTE = -1   # the second model's vote when there is no second model: agrees with nothing
FIRST_WEIGHT = 0.8    # a box's probabilities: the models' calibrated probabilities multiplied with these
SECOND_WEIGHT = 0.4   # powers, normalised (`combine`). Chosen on the calibration split (24 beds, 1,992
                      # fields a tier): at the same wrong pre-fills (0.15 % office and phone) the clerk's
                      # keystrokes 0.338 / 0.343 of typing, against 0.357 / 0.358 with the first model's
                      # alone; 1 / 1 (a plain product) is over-sure (0.75 % wrong at PREFILL_MIN 0.97),
                      # 0.5 / 0.5 and 0.6 / 0.4 leave more boxes open, 0.7 / 0.5 as 0.8 / 0.4 within noise.


def combine(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """(N, 11) probabilities from both models' calibrated logits (logits / temperature): the
    product pa^FIRST_WEIGHT * pb^SECOND_WEIGHT, normalised. Where both models lean the same way a
    box is surer than either alone says; where they pull apart, less sure than the first says."""
    z = FIRST_WEIGHT * za + SECOND_WEIGHT * zb   # each model's log-normaliser cancels in the softmax
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


NET_CHUNK = 32   # at most this many boxes per pass through the networks (a page's boxes in equal chunks):
                 # the first layer's windows of a MAR page full of times (78 inked boxes) are 4.5 MB at
                 # once and cost 14 ms of CPU, 8-9.5 ms in chunks of 16-40 (load 11, 2026-12-01); a
                 # page of 26 the same either way. Each box's numbers the same up to float32 rounding
                 # (the matrix product's blocking)


def opinions(images: list[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 11) probabilities of normalised cell images (both models' weighted product, `combine`: on
    the calibration split they leave fewer boxes open at the same wrong pre-fills than the first
    model's alone or the two models' mean; the first model alone without a second), (N, 2) each
    model's top class, and the first model's hidden features (N, HIDDEN), L2-normalised, for the memory."""
    if not len(images):
        return np.zeros((0, 11), np.float32), np.zeros((0, 2), np.int64), np.zeros((0, 0), np.float32)
    x = np.stack(images) if isinstance(images, list) else np.asarray(images, np.float32)
    if len(x) > NET_CHUNK:
        chunks = -(-len(x) // NET_CHUNK)    # ceiling divisions: equal chunks, none of a few boxes
        size = -(-len(x) // chunks)
        parts = [_opinions(x[i:i + size]) for i in range(0, len(x), size)]
        return tuple(np.concatenate(p) for p in zip(*parts))  # type: ignore[return-value]
    return _opinions(x)


def _opinions(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = x.astype(np.float32, copy=False)
    first, second = model(), second_model()
    if second is None:
        q = _first_layer(x, *_first_layer_of(first))
        feats = first._hidden_q1(_channels_last(q, len(x)))
        pa = first.calibrated(feats @ first.w4 + first.b4)
        return pa, np.stack([pa.argmax(axis=1), np.full(len(pa), NO_VOTE)], axis=1), _unit(feats)
    # both models' first layer in one product
    c1 = first.w1.shape[1]
    q = _first_layer(x, *_first_layer_of(first, second))
    feats = first._hidden_q1(_channels_last(q[:c1], len(x)))
    za = (feats @ first.w4 + first.b4) / first.temperature
    zb = (second._hidden_q1(_channels_last(q[c1:], len(x))) @ second.w4 + second.b4) / second.temperature
    return combine(za, zb), np.stack([za.argmax(axis=1), zb.argmax(axis=1)], axis=1), _unit(feats)


def classify(images: list[np.ndarray]) -> np.ndarray:
    """(N, 11) calibrated probabilities of normalised cell images (both models)."""
    return opinions(images)[0]


class Batch:
    """The comb cells of a page, normalised and classified together at `finish` (one pass of the
    outline removal and of the network per page, not per field or cell)."""

    def __init__(self):
        self.cells: list[dict[str, Any]] = []
        self.patches: list[np.ndarray] = []
        self.blacks: list[float] = []

    def add(self, image: np.ndarray, hmat: np.ndarray, field: dict, black: float,
            shift_mm=(0.0, 0.0)) -> list[dict[str, Any]]:
        """The field's per-cell raw measures, filled in at `finish`."""
        out: list[dict[str, Any]] = []
        for p in comb_patches(image, hmat, field, shift_mm):
            cell: dict[str, Any] = {"ink": 0}
            out.append(cell)
            self.cells.append(cell)
            self.patches.append(p)
            self.blacks.append(float(black))
        return out

    def finish(self) -> None:
        """Raw measures of each cell: its ink pixels and, when inked, its top alternatives
        [[label, probability], ...] (label '0'-'9' or 'other'), after the kit's memory if there is one;
        when read empty, its edge ink if any (`_edge_ink`)."""
        if not self.patches:
            return
        inked, images = [], []
        for cell, (norm, ink, edge) in zip(self.cells, measure_many(self.patches, self.blacks)):
            cell["ink"] = ink
            if norm is not None:
                inked.append(cell)
                images.append(norm)
            elif edge:
                cell["edge_ink"] = edge   # an empty box with ink on its outline is not surely empty
        self.cells, self.patches, self.blacks = [], [], []
        if not images:
            return
        probs, votes, feats = opinions(images)
        touched = np.zeros(len(probs), bool)
        if _memory is not None and len(_memory):
            probs, touched = _memory.blend(feats, probs)
        top = np.argsort(-probs, axis=1)[:, :TOP_K]
        top_p = np.take_along_axis(probs, top, axis=1).tolist()
        labels = LABELS + ["none"]   # NO_VOTE (-1) is the last
        for cell, js, ps, v, t in zip(inked, top.tolist(), top_p, votes.tolist(), touched.tolist()):
            cell["alts"] = [[LABELS[j], round(q, 4)] for j, q in zip(js, ps)]
            # each model's own first choice, before the kit's memory: a box is pre-filled only where
            # they agree (suggest.py), so one model's sure mistake is not pre-filled
            cell["votes"] = [labels[j] for j in v]
            if t:
                cell["memory"] = True   # the kit's memory weighed in (it may not overrule the models)


def read_cells(image: np.ndarray, hmat: np.ndarray, field: dict, black: float,
               shift_mm=(0.0, 0.0)) -> list[dict[str, Any]]:
    """Raw per-cell measures of one comb field: ink pixels and, for inked cells, the top alternatives."""
    batch = Batch()
    out = batch.add(image, hmat, field, black, shift_mm)
    batch.finish()
    return out


__all__ = ["Batch", "read_cells", "normalise", "normalise_many", "measure_many", "cell_patch", "classify", "opinions", "Model", "model",
           "second_model", "LABELS"]


# --- learning from the kit's own clerks -----------------------------------------------------------
MEMORY_FILE = "digits-memory.npz"   # in the kit directory, rebuilt from the decisions by learn.py
MEMORY_SIM = 0.85                   # cosine similarity of hidden features that counts as the same hand
MEMORY_K = 5
MEMORY_WEIGHT = 0.6                 # weight of the neighbours' vote in the blend
MEMORY_RAISE_MAX = 0.8              # the memory raises no digit above what the models said beyond this
                                    # (below suggest.CELL_SURE: the memory alone never makes a box sure)


def embed(images: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """The base model's hidden features of normalised cell images, L2-normalised (N, HIDDEN)."""
    if not len(images):
        return np.zeros((0, model().w3.shape[1]), np.float32)
    return _unit(model().hidden(np.stack(images) if isinstance(images, list) else images))


class Memory:
    """Cells of this kit labelled by its clerks: a nearest-neighbour vote over the base model's hidden
    features, blended into the model's probabilities where the same hand wrote something alike.

    The memory may confirm the models or doubt them, never overrule them into certainty: after the
    blend no digit is likelier than the models said, unless it stays below MEMORY_RAISE_MAX (what
    the blend takes away and gives to no digit is doubt). A digit the memory puts first against
    the models is shown first but never pre-filled (the models' `votes` disagree with it)."""

    def __init__(self, feats: np.ndarray, labels: np.ndarray):
        self.feats = np.asarray(feats, np.float32)
        self.labels = np.asarray(labels, np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def adjust(self, feats: np.ndarray, probs: np.ndarray) -> np.ndarray:
        return self.blend(feats, probs)[0]

    def blend(self, feats: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the probabilities after the memory, which cells it had close neighbours for)."""
        if not len(self) or not len(feats):
            return probs, np.zeros(len(probs), bool)
        sims = feats @ self.feats.T
        # only the memory's cells as close as MEMORY_SIM count (the others weigh nothing), so each
        # cell's nearest are looked for among those alone, not among all the memory's (a kit's memory
        # grows with its decisions: tens of thousands of cells; a few per cent are that close). The
        # weights (float32) of at most MEMORY_K neighbours add up exactly in float64, in any order.
        near = sims >= MEMORY_SIM
        vote = np.zeros(probs.shape, np.float64)
        k = MEMORY_K
        for i in np.flatnonzero(near.any(axis=1)):
            j = np.flatnonzero(near[i])
            s = sims[i, j]
            if len(j) > k:
                top = np.argpartition(-s, k - 1)[:k]
                j, s = j[top], s[top]
            vote[i] = np.bincount(self.labels[j], weights=s.astype(np.float64), minlength=probs.shape[1])
        total = vote.sum(axis=1, keepdims=True)
        close = total[:, 0] > 0
        vote = np.where(close[:, None], vote / np.maximum(total, 1e-12), 0.0)
        a = MEMORY_WEIGHT
        blend = np.where(close[:, None], (1 - a) * probs + a * vote, probs)
        return np.minimum(blend, np.maximum(probs, MEMORY_RAISE_MAX)).astype(np.float32), close

    def save(self, path: Path | str) -> None:
        np.savez_compressed(path, feats=self.feats.astype(np.float16), labels=self.labels.astype(np.int8))

    @classmethod
    def load(cls, path: Path | str) -> "Memory | None":
        try:
            with np.load(path) as z:
                return cls(z["feats"].astype(np.float32), z["labels"].astype(np.int64))
        except (OSError, KeyError, ValueError):
            return None


_memory: Memory | None = None


def use_memory(memory: Memory | None) -> None:
    """Set the kit's memory for this process (the scan workers load it at start)."""
    global _memory
    _memory = memory
