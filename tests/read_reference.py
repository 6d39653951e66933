"""The page reading as it was before a MAR page's glue was made cheaper (fallbackkit/scan/read.py
and engine.py at commit 7e347e5), frozen: tests/test_scan_mar_cost.py reads real filled and damaged
pages with these in place of the package's and checks that every PageResult is the same, bit for
bit. The functions here replaced: read._weakest_chunk, _best_shifts, _measure_boxes,
_measure_hand_group, _print_bands; engine._read_located, _measure_field, _decide_field,
_visibility. Not used by the package."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from fallbackkit.scan import digits, locate
from fallbackkit.scan.engine import (DARK_PAGE, LOW_CONTRAST, PAGE_COVERED_SHARE, POOR_FIT_MM, PRINTED_REF_MAX,
                                     PRINTED_REF_MIN, FieldReading, PageResult, _boxes, _field_crop, _near_corner,
                                     dark_fraction)
from fallbackkit.scan.reasons import english
from fallbackkit.scan.read import (BOX_MARGIN_MM, BOX_PX_PER_MM, CROP_MARGIN_MM, CROP_PX_PER_MM, DARK_FOR_OUTLINE,
                                   FAINT_DARK, HAND_INK_DARK, INK_DARK, LINE_PITCH, MIN_SPAN, OUTLINE_BAND_PX,
                                   PAPER_QUANTILE, PRINT_MASK_MM, SEARCH_MM, SHIFT_PENALTY, SHRINK, STRIP_MM,
                                   TILE_FAINT, TILE_INK, TILE_LIGHT, TILE_MIN_USABLE, TILE_MM, _below, _edge_blocks,
                                   _frame_rects, _integral, _kth_greys, _median3_stack, _rect_counts, _rect_strips,
                                   _tile_sums_many, _usable_patterns, _weakest_of_strips, measure_box, patch)
from fallbackkit.scan import read


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
    # each strip's own positions (the means that straddle two strips are dropped)
    n_pos = L - 2
    pos_start = np.cumsum(n_pos) - n_pos
    keep = np.repeat(np.cumsum(L) - L - pos_start, n_pos) + np.arange(int(n_pos.sum()))
    run = np.concatenate([np.zeros(1), np.cumsum(contrast[keep], dtype=np.float64)])
    k = np.minimum(window, n_pos)
    n_win = n_pos - k + 1
    win_start = np.cumsum(n_win) - n_win
    first = np.repeat(pos_start - win_start, n_win) + np.arange(int(n_win.sum()))
    kk = np.repeat(k, n_win)
    return np.minimum.reduceat((run[first + kk] - run[first]) / kk, win_start)


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
    shifts = [s for s in range(-search, search + 1) if lo + s >= 0 and hi + s < n]
    if not shifts:
        return np.zeros(len(dark), int)
    sv = np.array(shifts)
    score = np.minimum(pmax[:, lo + sv], pmax[:, hi + sv]) - np.array([SHIFT_PENALTY * abs(s) for s in shifts])
    return sv[np.argmax(score, axis=1)]  # the first best, as a scan from -search keeps


def _measure_boxes(image: np.ndarray, hmat: np.ndarray, boxes_mm: list, black: float) -> list[dict[str, Any]]:
    if not boxes_mm:
        return []
    if len({(b[2], b[3]) for b in boxes_mm}) != 1:
        return [measure_box(image, hmat, b, black) for b in boxes_mm]
    margin = BOX_MARGIN_MM
    ppm = BOX_PX_PER_MM
    patches = [patch(image, hmat, x - margin, y - margin, w + 2 * margin, h + 2 * margin, ppm)
               for x, y, w, h in boxes_mm]
    if len({p.shape for p in patches}) != 1:
        return [measure_box(image, hmat, b, black) for b in boxes_mm]
    P = np.stack(patches)
    N = len(P)
    S = _median3_stack(P)
    paper = _kth_greys(P, int(P[0].size * PAPER_QUANTILE)).astype(np.float32)
    span = np.maximum(paper.astype(np.float64) - black, MIN_SPAN).astype(np.float32)
    lut = (paper[:, None] - np.arange(256, dtype=np.float32)[None, :]) / span[:, None]
    raw_dark = P < _below(np.count_nonzero(lut > DARK_FOR_OUTLINE, axis=1))
    w, h = boxes_mm[0][2], boxes_mm[0][3]
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
    out = []
    # as Python numbers (the same values: integer counts divided in float64, float32 read as float)
    ink_l, faint_l, size_l, sx_l, sy_l = ink_c.tolist(), faint_c.tolist(), size.tolist(), sx.tolist(), sy.tolist()
    strips_l = [(key, c.tolist(), s.tolist()) for key, (c, s) in strips.items()]
    outline_l, printed_l, paper_l = outline.tolist(), printed.tolist(), paper.tolist()
    for i in range(N):
        n = size_l[i]
        ink = ink_l[i] / n if n else float("nan")
        faint = faint_l[i] / n if n else float("nan")
        spill = {key: (c[i] / s[i] if s[i] else 0.0) for key, c, s in strips_l}
        out.append({"ink": round(ink, 4), "faint": round(faint, 4),
                    "spill": {key: round(v, 4) for key, v in spill.items()},
                    "spill_max": round(max(spill.values()), 4),
                    "shift_mm": [round(sx_l[i] / ppm, 2), round(sy_l[i] / ppm, 2)],
                    "outline": round(outline_l[i] / 4, 3), "printed": round(printed_l[i], 3),
                    "paper": round(paper_l[i], 1)})
    return out


def _measure_hand_group(image: np.ndarray, hmat: np.ndarray, fields: list[dict], black: float,
                        outlines: list) -> list[tuple[dict[str, Any], np.ndarray]]:
    """The fields of one _hand_shape as one stack; their outlines' strips go to outlines (the raw
    measures' "printed" is set from them by _set_printed)."""
    margin = CROP_MARGIN_MM
    ppm = CROP_PX_PER_MM
    w, h = fields[0]["box_mm"][2:]
    crops = [patch(image, hmat, f["box_mm"][0] - margin, f["box_mm"][1] - margin, w + 2 * margin, h + 2 * margin,
                   ppm) for f in fields]
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
    origins = list(zip(ox.tolist(), oy.tolist()))
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
    rects = [_frame_rects(f, origins[i], ppm, (int(x0), int(y0), bw, bh))
             for i, (f, x0, y0) in enumerate(zip(fields, m + sxs, m + sys_))]
    blocks = _edge_blocks(P, rects[0]) if all(r == rects[0] for r in rects) else None
    if blocks is not None:
        outlines.append(([raw for raw, _ in out], blocks))
    else:
        outlines += [([raw], [s for r in rects[i] for s in _rect_strips(P[i], *r)]) for i, (raw, _) in enumerate(out)]
    return out


def _print_bands(fields: list[dict], x: np.ndarray, y: np.ndarray, w: float, h: float, ox: np.ndarray,
                 oy: np.ndarray, ppm: float, H: int, W: int) -> np.ndarray:
    """The printed lines of a stack of handwriting fields (of one _hand_shape) to mask, as pixel
    rectangles [n, r0, r1, c0, c1] (not empty, inside the crop): the outline of the field box and
    of each comb cell, PRINT_MASK_MM on either side; the separators between comb groups ('/', ':',
    '.', in the gaps between cells); the ruling between a text field's lines. origin (ox, oy): the
    crop's top-left corner in mm after the shift that lines the box up."""
    N = len(fields)
    cells = np.array([f.get("cells_mm") or [] for f in fields], float).reshape(N, -1, 4)
    rx = np.concatenate([x[:, None], cells[:, :, 0]], axis=1)
    ry = np.concatenate([y[:, None], cells[:, :, 1]], axis=1)
    rw = np.concatenate([np.full((N, 1), w), cells[:, :, 2]], axis=1)
    rh = np.concatenate([np.full((N, 1), h), cells[:, :, 3]], axis=1)
    X0, Y0 = (rx - ox[:, None]) * ppm, (ry - oy[:, None]) * ppm
    X1, Y1 = (rx + rw - ox[:, None]) * ppm, (ry + rh - oy[:, None]) * ppm
    pad = PRINT_MASK_MM * ppm
    # the four sides of each rectangle: top, bottom, left, right
    a0 = np.concatenate([X0 - pad, X0 - pad, X0 - pad, X1 - pad], axis=1)
    b0 = np.concatenate([Y0 - pad, Y1 - pad, Y0 - pad, Y0 - pad], axis=1)
    a1 = np.concatenate([X1 + pad, X1 + pad, X0 + pad, X1 + pad], axis=1)
    b1 = np.concatenate([Y0 + pad, Y1 + pad, Y1 + pad, Y1 + pad], axis=1)
    r0, r1 = np.maximum(0, np.floor(b0)), np.minimum(H, np.ceil(b1))
    c0, c1 = np.maximum(0, np.floor(a0)), np.minimum(W, np.ceil(a1))
    parts = [np.stack([r0, r1, c0, c1], axis=2)]
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
    rects = np.concatenate(parts, axis=1)
    n = np.broadcast_to(np.arange(N)[:, None, None], (N, rects.shape[1], 1))
    out = np.concatenate([n, rects], axis=2).reshape(-1, 5).astype(np.int64)
    return out[(out[:, 2] > out[:, 1]) & (out[:, 4] > out[:, 3])]


def _read_located(image: np.ndarray, loc: locate.Location, geometry: dict, quality: dict,
                  t0: float) -> PageResult:
    t2 = time.perf_counter()
    hmat = loc.transform
    contrast = loc.paper_level - loc.black_level
    dark = dark_fraction(image, hmat, geometry, (loc.black_level + loc.paper_level) / 2)
    page_review = None
    if loc.fit_error_mm is not None and loc.fit_error_mm > POOR_FIT_MM:
        page_review = english("poor_fit", mm=f"{loc.fit_error_mm:.1f}")
    elif contrast < LOW_CONTRAST:
        page_review = english("low_contrast", levels=f"{contrast:.0f}")
    elif dark > DARK_PAGE:
        page_review = english("page_dark", percent=f"{dark * 100:.0f}")
    # every mark box of the page measured in one go (same numbers as one at a time, less overhead)
    boxes = [b for f in geometry["fields"] for b in _boxes(f)]
    measures = iter(read.measure_boxes(image, hmat, [b["box_mm"] for b in boxes], loc.black_level))
    # and every handwriting field (fields of one shape as one stack of crops)
    hand = iter(read.measure_handwritten_many(
        image, hmat, [f for f in geometry["fields"] if f["type"] in read.HANDWRITTEN], loc.black_level))
    cells = digits.Batch()  # the inked comb cells of the page, classified together (suggestions)
    measured = [_measure_field(image, hmat, f, loc.black_level, measures, cells, hand) for f in geometry["fields"]]
    cells.finish()
    if loc.missing_mark:
        for f, (raw, _) in zip(geometry["fields"], measured):
            if _near_corner(f, loc.missing_mark, geometry["page_size_mm"]):
                raw["weak_corner_mm"] = loc.weak_corner_mm
    visibility = _visibility(measured)
    if page_review is None and visibility["covered_share"] >= PAGE_COVERED_SHARE:
        page_review = english("page_covered", covered=visibility["covered"], fields=visibility["fields"])
    quality.update({"marks_found": 3 if loc.missing_mark else 4, "missing_mark": loc.missing_mark,
                    "weak_corner_mm": loc.weak_corner_mm, "hole_ok": loc.hole_ok, "contrast": round(contrast, 1),
                    "black_level": round(loc.black_level, 1), "paper_level": round(loc.paper_level, 1),
                    "dark_fraction": round(dark, 3), "notes": loc.notes,
                    "visibility": visibility, "page_review": page_review})
    readings = [_decide_field(image, hmat, f, raw, crop, page_review) for f, (raw, crop) in
                zip(geometry["fields"], measured)]
    quality["timings_ms"]["fields"] = round((time.perf_counter() - t2) * 1000, 2)
    quality["timings_ms"]["total"] = round((time.perf_counter() - t0) * 1000, 2)
    quality["review_count"] = sum(r.status == "review" for r in readings)
    return PageResult("read", None, None, None, orientation=loc.orientation,
                      transform=[[float(v) for v in row] for row in hmat],
                      fit_error_mm=None if loc.fit_error_mm is None else round(loc.fit_error_mm, 3),
                      dpi=round(loc.dpi, 1), quality=quality,
                      readings=readings)


def _measure_field(image: np.ndarray, hmat: np.ndarray, f: dict, black: float, measures,
                   cells: digits.Batch | None = None, hand=None) -> tuple[dict, np.ndarray | None]:
    """Raw measures of one field (and the handwriting crop). measures: an iterator over this and the
    following fields' box measures (measure_boxes); hand: the same over the handwriting fields'
    (measure_handwritten_many), None to measure this one here; cells: the page's comb cells to classify."""
    ftype = f["type"]
    if ftype in read.MARK_TYPES:
        raw: dict[str, Any] = {"boxes": [{"value": b["value"], **next(measures)} for b in _boxes(f)]}
        if ftype == "checkbox":
            raw["boxes"][0].pop("value")
        return raw, None
    if ftype in read.HANDWRITTEN:
        raw, crop = next(hand) if hand is not None else read.measure_handwritten(image, hmat, f, black)
        if f.get("transcribe"):  # as printed on this sheet; decide() is re-run from the raw measures
            raw["transcribe"] = f["transcribe"]
        if read.decide_ink(raw) and f.get("cells_mm") and cells is not None \
                and read.transcribe_mode(raw, ftype) == "yes":  # comb field: each cell, for a suggestion
            raw["cells"] = cells.add(image, hmat, f, black, raw["shift_mm"])
        return raw, crop
    return {}, None  # an unknown field type is never guessed at


def _decide_field(image: np.ndarray, hmat: np.ndarray, f: dict, raw: dict, crop: np.ndarray | None,
                  page_review: str | None) -> FieldReading:
    ftype = f["type"]
    if page_review:
        raw["page_review"] = page_review
    if ftype in read.MARK_TYPES or ftype in read.HANDWRITTEN:
        options = [o["value"] for o in f["options"]] if ftype in ("choice", "multichoice") else None
        value, conf, status, reason = read.decide(raw, ftype, options)
    else:
        value, conf, status, reason = None, 0.0, "review", english("unknown_type", type=ftype)
    ink = read.decide_ink(raw) if ftype in read.HANDWRITTEN else None
    boxes = _boxes(f)
    if status == "review" and crop is None and boxes:
        crop = _field_crop(image, hmat, [b["box_mm"] for b in boxes])
    return FieldReading(f["name"], ftype, raw, value, conf, status, reason, ink, crop)


def _visibility(measured: list[tuple[dict, np.ndarray | None]]) -> dict[str, Any]:
    """Compare each field's printed outline with the rest of the page's, and record the page's
    typical outline darkness in every field's raw measures ("printed_ref"), so that decide() can be
    re-run from stored readings. Mark boxes and handwriting frames are sampled differently, so
    each kind has its own reference: a high percentile of its fields (robust to a good part of the
    page being covered), never below PRINTED_REF_MIN (a page whose outlines are all faint is not
    trusted either)."""
    kinds: dict[str, list[dict]] = {"boxes": [], "frames": []}
    for raw, _ in measured:
        if read.field_printed(raw) is not None:
            kinds["boxes" if "boxes" in raw else "frames"].append(raw)
    refs = {}
    pooled = [read.field_printed(r) for raws in kinds.values() for r in raws]
    for kind, raws in kinds.items():
        if not raws:
            continue
        # a kind with few fields on the page borrows the whole page's outlines (one heavily inked
        # frame must not set the bar for the other two)
        values = [read.field_printed(r) for r in raws] if len(raws) >= 5 else pooled
        refs[kind] = round(min(PRINTED_REF_MAX, max(PRINTED_REF_MIN, float(np.percentile(values, 75)))), 3)
        for r in raws:
            r["printed_ref"] = refs[kind]
    n = sum(len(r) for r in kinds.values())
    covered = sum(read.is_covered(r) for raws in kinds.values() for r in raws)
    return {"fields": n, "covered": covered, "covered_share": round(covered / n, 3) if n else 0.0,
            "printed_ref": refs}
