"""The digit cell cutting, normalising and forward pass as they were before they were made cheaper
(fallbackkit/scan/digits.py at commit 016225c), and the kit's memory's blend (at commit 2c04214),
frozen: tests/test_digits_cost.py checks that the scan's cells still give the models the same inputs
(the trained models expect them), the same probabilities and the same blend. Not used by the package."""
from __future__ import annotations

import functools

import cv2
import numpy as np

from fallbackkit.scan.digits import (CELL_PPM, EMPTY_INK_PX, GAP_PX, INK_DARK, INK_FAINT, LINE_COVER,
                                     LINE_EDGE_COVER, LINE_SHARE, OUTLINE_BAND_MM, OUTSIDE_MM, SPECK_PX)

_K3 = np.ones((3, 3), np.uint8)


def cell_patch(image: np.ndarray, hmat: np.ndarray, cell_mm, shift_mm=(0.0, 0.0)) -> np.ndarray:
    """The cell [x, y, w, h] mm (plus 1 mm around) upright at CELL_PPM, grey uint8."""
    from fallbackkit.scan.read import patch
    x, y, w, h = cell_mm
    return patch(image, hmat, x + shift_mm[0] - 1.0, y + shift_mm[1] - 1.0, w + 2.0, h + 2.0, CELL_PPM)


def _next_to(a: np.ndarray) -> np.ndarray:
    """True beside a True along the first axis of a (one step either way)."""
    out = np.zeros_like(a)
    out[1:] |= a[:-1]
    out[:-1] |= a[1:]
    return out


def _beyond(a: np.ndarray, vertical: bool, reach: int, before: bool) -> np.ndarray:
    """True where a is True 1..reach px before (above / left of) or after (below / right of) it."""
    k = np.zeros((2 * reach + 1, 1) if vertical else (1, 2 * reach + 1), np.uint8)
    if vertical:
        k[:reach] = 1 if before else 0
        k[reach + 1:] = 0 if before else 1
    else:
        k[:, :reach] = 1 if before else 0
        k[:, reach + 1:] = 0 if before else 1
    return cv2.dilate(a.view(np.uint8) if a.dtype == bool else a, k, borderType=cv2.BORDER_CONSTANT,
                      borderValue=0).view(bool)


def _tile(a: np.ndarray) -> np.ndarray:
    """(N, h, w) -> (h, N * (w + GAP_PX)): the cells side by side with blank columns between them, so
    that one OpenCV call treats a page's cells (and one cell exactly as a page's cells)."""
    n, h, w = a.shape
    out = np.zeros((h, n, w + GAP_PX), a.dtype)
    out[:, :, :w] = a.transpose(1, 0, 2)
    return out.reshape(h, -1)


def _strip_tiled(ink: np.ndarray, n: int, w: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """strip_outline of n tiled cells of width w (see _tile)."""
    h = ink.shape[0]
    s = w + GAP_PX
    band = int(round(OUTLINE_BAND_MM * CELL_PPM))
    u8 = ink.astype(np.uint8)
    lh = max(3, int(round(LINE_SHARE * (w - 2 * m))))
    lv = max(3, int(round(LINE_SHARE * (h - 2 * m))))
    bd = {"borderType": cv2.BORDER_CONSTANT, "borderValue": 0}
    horiz = cv2.morphologyEx(u8, cv2.MORPH_OPEN, np.ones((1, lh), np.uint8), **bd) > 0
    vert = cv2.morphologyEx(u8, cv2.MORPH_OPEN, np.ones((lv, 1), np.uint8), **bd) > 0
    # only the rows (columns) the line runs along nearly the whole cell: a stroke lying on the line
    # thickens the run there but stays outside those rows and is kept (and the blurred edge rows
    # beside them, where such runs still cover some of the side)
    rcover = horiz.reshape(h, n, s)[:, :, m:w - m].mean(axis=2)             # (h, n)
    ccover = vert[m:h - m, :].mean(axis=0)                                 # (n * s,)
    rsel = (rcover >= LINE_COVER) | ((rcover >= LINE_EDGE_COVER) & _next_to(rcover >= LINE_COVER))
    csel = (ccover >= LINE_COVER) | ((ccover >= LINE_EDGE_COVER) & _next_to(ccover >= LINE_COVER))
    band_rows = np.zeros((h, 1), bool)
    band_rows[max(0, m - band):m + band + 1] = True
    band_rows[max(0, h - m - band):h - m + band + 1] = True
    col = np.arange(n * s) % s
    band_cols = ((col >= m - band) & (col <= m + band)) | ((col >= w - m - band) & (col <= w - m + band))
    line_h = horiz & np.repeat(band_rows & rsel, s, axis=1)
    line_v = vert & (band_cols & csel)[None, :]
    line = line_h | line_v
    rest = (ink & ~line).view(np.uint8)
    reach = 2 * band + 1
    wide = cv2.dilate(rest, np.ones((1, 3), np.uint8))
    tall = cv2.dilate(rest, np.ones((3, 1), np.uint8))
    # a line pixel is kept where a stroke crosses the line (ink on both sides). A stroke that only
    # touches the line loses the pixels it shares with it: keeping the line there (tried) draws a
    # bar of outline on every digit that touches its box, which costs more than it saves.
    cross_h = _beyond(wide, True, reach, True) & _beyond(wide, True, reach, False)
    cross_v = _beyond(tall, False, reach, True) & _beyond(tall, False, reach, False)
    kept = rest.view(bool) | line_h & cross_h | line_v & cross_v
    return kept, line & ~kept


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
    the same pixels)."""
    cells = [tuple(map(float, c)) for c in field.get("cells_mm") or []]
    if not cells:
        return []
    x0, y, _, h = cells[0]
    offs = [(c[0] - x0) * CELL_PPM for c in cells]
    if any(c[1] != y or c[3] != h or abs(o - round(o)) > 1e-6 for c, o in zip(cells, offs)):
        return [cell_patch(image, hmat, c, shift_mm) for c in cells]
    from fallbackkit.scan.read import patch
    right = max(c[0] + c[2] for c in cells)
    strip = patch(image, hmat, x0 + shift_mm[0] - 1.0, y + shift_mm[1] - 1.0, right - x0 + 2.0, h + 2.0, CELL_PPM)
    out = []
    for c, o in zip(cells, offs):
        o, wpx = int(round(o)), max(1, int(round((c[2] + 2.0) * CELL_PPM)))
        if o + wpx > strip.shape[1]:
            return [cell_patch(image, hmat, c, shift_mm) for c in cells]
        out.append(strip[:, o:o + wpx])
    return out


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
    out: list[tuple[np.ndarray | None, int]] = [(None, 0)] * len(patches)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, p in enumerate(patches):
        groups.setdefault(p.shape, []).append(i)
    for shape, idx in groups.items():
        for i, r in zip(idx, _normalise_group(np.stack([patches[i] for i in idx]),
                                              np.array([blacks[i] for i in idx], np.float32))):
            out[i] = r
    return out


def _normalise_group(p: np.ndarray, blacks: np.ndarray) -> list[tuple[np.ndarray | None, int]]:
    n, h, w = p.shape
    flat = p.reshape(n, -1)
    k = int(flat.shape[1] * 0.92)
    paper = np.sort(flat, axis=1, kind="stable")[:, k].astype(np.float32)  # a radix sort of bytes: quick
    span = np.maximum(paper - blacks, 25.0)
    # only the zone is looked at (the cell and a little beyond its outline): cut to it, the same
    # numbers on fewer pixels
    zone, (r0, r1, c0, c1) = _zones((h, w))
    ys, xs = np.nonzero(zone)
    zy, zx = int(ys.min()), int(xs.min())
    zh, zw = int(ys.max()) + 1 - zy, int(xs.max()) + 1 - zx
    cut = p[:, zy:zy + zh, zx:zx + zw].astype(np.float32)
    dark = np.clip((paper[:, None, None] - cut) / span[:, None, None], 0.0, 1.0)
    m = int(round(1.0 * CELL_PPM)) - zy
    w, s = zw, zw + GAP_PX
    dark_t = _tile(dark)
    # ink: dark pixels, and the paler ones joined to them (a pale pen's strokes stay whole)
    nf, flab = cv2.connectedComponents((dark_t >= INK_FAINT).view(np.uint8), connectivity=8)
    hit = np.zeros(nf, bool)
    hit[flab[dark_t >= INK_DARK]] = True
    hit[0] = False
    ink, line = _strip_tiled(np.take(hit, flab), n, w, m)
    nc, lab, stats, _ = cv2.connectedComponentsWithStats(ink.view(np.uint8), connectivity=8)
    inside = np.bincount(lab[r0 - zy:r1 - zy].reshape(r1 - r0, n, s)[:, :, c0 - zx:c1 - zx].ravel(), minlength=nc)
    keep = (stats[:, cv2.CC_STAT_AREA] >= SPECK_PX) & (inside > 0)
    keep[0] = False
    cell = stats[:, cv2.CC_STAT_LEFT] // s
    area = stats[:, cv2.CC_STAT_AREA]
    total = np.bincount(cell[keep], weights=area[keep], minlength=n).astype(int)
    big = 1 << 30
    x0 = np.full(n, big)
    y0 = np.full(n, big)
    x1 = np.zeros(n, int)
    y1 = np.zeros(n, int)
    kc, ks = cell[keep], stats[keep]
    np.minimum.at(x0, kc, ks[:, cv2.CC_STAT_LEFT])
    np.minimum.at(y0, kc, ks[:, cv2.CC_STAT_TOP])
    np.maximum.at(x1, kc, ks[:, cv2.CC_STAT_LEFT] + ks[:, cv2.CC_STAT_WIDTH])
    np.maximum.at(y1, kc, ks[:, cv2.CC_STAT_TOP] + ks[:, cv2.CC_STAT_HEIGHT])
    # the kept strokes and the pale rim around them (anti-aliased pen), not the printed line
    halo = cv2.dilate(np.take(keep, lab).view(np.uint8), _K3).view(bool)
    value = np.where(halo & ~line, dark_t, np.float32(0.0))
    res: list[tuple[np.ndarray | None, int]] = []
    for i in range(n):
        if total[i] < EMPTY_INK_PX:
            res.append((None, int(total[i])))
            continue
        res.append((_centre(value[y0[i]:y1[i], x0[i]:x1[i]]), int(total[i])))
    return res


def _centre(crop: np.ndarray) -> np.ndarray:
    """The ink crop as MNIST digits are: longer side 20 px, centred by centre of mass in 28 x 28,
    deskewed (as `deskew`, in the same warp), darkest pixel 1."""
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
    out = cv2.warpAffine(small, mat, (28, 28), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0.0)
    mx = float(out.max())
    if mx > 0:
        out /= mx
    return out


def _pool_windows(x: np.ndarray, k: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(4, B * H/2 * W/2, k*k*C): the k x k windows of x (B, H, W, C) as _windows, ordered by their
    place in each 2 x 2 pooling square first, so that convolution then max-pooling is one product and
    the maximum of four contiguous blocks (strided pooling of the product costs more than the product)."""
    v = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))  # B, h, w, C, k, k
    b, oh, ow, c = v.shape[:4]
    v = v.reshape(b, oh // 2, 2, ow // 2, 2, c, k, k).transpose(2, 4, 0, 1, 3, 6, 7, 5)
    return np.ascontiguousarray(v).reshape(4, -1, k * k * c), (b, oh // 2, ow // 2)


def _conv_pool_relu(win: tuple[np.ndarray, tuple[int, int, int]], w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """ReLU(maxpool(conv) + bias) from _pool_windows (the same numbers as the training pass: max-pooling
    before bias and ReLU keeps the order of values)."""
    x, (b, h, wd) = win
    z = (x.reshape(-1, x.shape[-1]) @ w).reshape(4, -1, w.shape[1])
    q = np.maximum(np.maximum(z[0], z[1]), np.maximum(z[2], z[3]))
    q += bias
    np.maximum(q, 0, out=q)
    return q.reshape(b, h, wd, -1)


def read(model, images: np.ndarray) -> np.ndarray:
    """Calibrated probabilities of one model (digits.Model's weights) on normalised cell images, as
    its forward pass computed them."""
    win1 = _pool_windows(np.asarray(images, np.float32)[..., None], 5)
    q1 = _conv_pool_relu(win1, model.w1, model.b1)
    q2 = _conv_pool_relu(_pool_windows(q1, 5), model.w2, model.b2)
    h = q2.reshape(len(q2), -1) @ model.w3
    h += model.b3
    np.maximum(h, 0, out=h)
    return model.calibrated(h @ model.w4 + model.b4)


def opinions(first, second, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """digits.opinions as it was: both models from the first layer's windows gathered once."""
    win1 = _pool_windows(np.asarray(images, np.float32)[..., None], 5)
    out = []
    for model in (first, second):
        q1 = _conv_pool_relu(win1, model.w1, model.b1)
        q2 = _conv_pool_relu(_pool_windows(q1, 5), model.w2, model.b2)
        h = q2.reshape(len(q2), -1) @ model.w3
        h += model.b3
        np.maximum(h, 0, out=h)
        out.append((model.calibrated(h @ model.w4 + model.b4), h))
    (pa, feats), (pb, _) = out
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-6)
    return (pa + pb) / 2, np.stack([pa.argmax(axis=1), pb.argmax(axis=1)], axis=1), unit


def blend(memory_feats: np.ndarray, memory_labels: np.ndarray, feats: np.ndarray,
          probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """digits.Memory.blend as it was before it looked for the nearest among the close cells only
    (fallbackkit/scan/digits.py at commit 2c04214)."""
    from fallbackkit.scan.digits import MEMORY_K, MEMORY_RAISE_MAX, MEMORY_SIM, MEMORY_WEIGHT
    n = len(memory_labels)
    sims = feats @ memory_feats.T
    k = min(MEMORY_K, n)
    near = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else \
        np.broadcast_to(np.arange(n), (len(feats), n))
    s = np.take_along_axis(sims, near, axis=1)
    w = np.where(s >= MEMORY_SIM, s, 0.0)
    vote = np.zeros(probs.shape, np.float64)
    np.add.at(vote, (np.repeat(np.arange(len(feats)), k), memory_labels[near].ravel()), w.ravel())
    total = vote.sum(axis=1, keepdims=True)
    close = total[:, 0] > 0
    vote = np.where(close[:, None], vote / np.maximum(total, 1e-12), 0.0)
    a = MEMORY_WEIGHT
    blend = np.where(close[:, None], (1 - a) * probs + a * vote, probs)
    return np.minimum(blend, np.maximum(probs, MEMORY_RAISE_MAX)).astype(np.float32), close
