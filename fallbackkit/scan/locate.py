"""Find a sheet on a page image: its QR code, its four corner marks and the page transform.

The QR is found first (zxing-cpp on the four corner regions, then the whole page, then a median
filtered page, then zbar as a second opinion). Its four corners give a first page -> image
transform, which predicts where the corner marks are; the marks (solid 6 mm squares, the
bottom-right one with a white hole) are then found on a reduced copy and give the homography used
to read the fields. Without a QR (a clerk identified the page), the marks are taken from the four
corners of the image and the holed mark tells which way up the page is.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import zxingcpp

from ..templates.contract import MARK_SIZE
from .reasons import detail

MARK_SIZE_MM = MARK_SIZE   # the printed corner mark's side (templates/contract.py; geometry["marks_mm"])
# The holed mark (bottom-right) is told by its centre: probes within HOLE_PROBE_MM of the centre lie
# in the white hole (half its side: contract.MARK_HOLE / 2 = 1.3 mm), the ring at RING_MM in the black between
# the hole's edge and the mark's edge (MARK_SIZE / 2 = 3 mm); tests/test_contract.py checks both.
HOLE_PROBE_MM = 0.5
RING_MM = 2.2
RING_DIAGONAL_MM = 2.1
WORK_PX_PER_MM = 3.0        # corner marks are searched on a copy at about 76 dpi
MAX_WORK_SIDE = 1400
MAX_FIT_MM = 5.0           # marks vs code worse than this: not aligned at all (poor fit starts lower)
THREE_MARKS_FROM_MM = 1.5  # four marks fitting worse than this: try three of them with the code
FLAT_FIT_MM = 0.5          # three marks' affine transform this close to the code: a flat page


@dataclass
class FoundCode:
    text: str
    corners_px: np.ndarray      # 4x2 in symbol order: top-left, top-right, bottom-right, bottom-left
    decoder: str


@dataclass
class Location:
    transform: np.ndarray                    # 3x3, page mm -> image px
    marks_px: dict[str, tuple[float, float]]
    fit_error_mm: float | None
    orientation: int
    dpi: float
    black_level: float
    paper_level: float
    hole_ok: bool
    notes: list[str] = field(default_factory=list)
    missing_mark: str | None = None          # located by three marks: the corner not used
    weak_corner_mm: float | None = None      # and how uncertain the transform is there (mm)


def _corner_rois(shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """x0, y0, x1, y1 of the corner regions where the QR can be, top-right first."""
    h, w = shape
    if h >= w:
        rw, rh = int(w * 0.42), int(h * 0.26)
    else:
        rw, rh = int(w * 0.26), int(h * 0.42)
    return [(w - rw, 0, w, rh), (0, h - rh, rw, h), (0, 0, rw, rh), (w - rw, h - rh, w, h)]


def _zxing(img: np.ndarray, offset=(0, 0), scale: float = 1.0) -> list[FoundCode]:
    found = []
    for b in zxingcpp.read_barcodes(img, formats=zxingcpp.BarcodeFormat.QRCode, try_downscale=True):
        p = b.position
        pts = np.array([[p.top_left.x, p.top_left.y], [p.top_right.x, p.top_right.y],
                        [p.bottom_right.x, p.bottom_right.y], [p.bottom_left.x, p.bottom_left.y]], float)
        pts = pts * scale + np.array(offset, float)
        found.append(FoundCode(b.text, pts, "zxing"))
    return found


def _zbar(img: np.ndarray) -> list[FoundCode]:
    try:
        from pyzbar import pyzbar
    except (ImportError, OSError):  # libzbar0 missing: zxing alone
        return []
    found = []
    for sym in pyzbar.decode(img, symbols=[pyzbar.ZBarSymbol.QRCODE]):
        try:
            text = sym.data.decode("ascii")
        except UnicodeDecodeError:
            continue
        poly = np.array([(p.x, p.y) for p in sym.polygon], float)
        if len(poly) != 4:
            continue
        # zbar's polygon starts at the symbol's top-left and runs counter-clockwise in symbol space.
        corners = np.array([poly[0], poly[3], poly[2], poly[1]])
        found.append(FoundCode(text, corners, "zbar"))
    return found


def find_codes(image: np.ndarray, accept) -> tuple[list[FoundCode], str]:
    """Decode QR codes, cheapest attempt first; stop at the first attempt that yields a code
    `accept(text)` recognises as a fallbackkit code (phantoms from noise are skipped)."""
    h, w = image.shape
    step = 2 if max(h, w) > 4200 else 1
    small = image[::step, ::step] if step > 1 else image
    attempts: list[tuple[str, Any]] = []
    for x0, y0, x1, y1 in _corner_rois(small.shape):
        attempts.append(("zxing-roi", lambda x0=x0, y0=y0, x1=x1, y1=y1: _zxing(
            np.ascontiguousarray(small[y0:y1, x0:x1]), (x0 * step, y0 * step), step)))
    attempts.append(("zxing-page", lambda: _zxing(small, (0, 0), step)))
    attempts.append(("zxing-median", lambda: _zxing(cv2.medianBlur(small, 3), (0, 0), step)))
    attempts.append(("zbar-page", lambda: [_scaled(c, step) for c in _zbar(small)]))
    attempts.append(("zbar-median", lambda: [_scaled(c, step) for c in _zbar(cv2.medianBlur(small, 3))]))
    seen: list[FoundCode] = []
    for name, run in attempts:
        codes = run()
        for c in codes:
            c.decoder = name
        seen += codes
        good = [c for c in codes if accept(c.text)]
        if good:
            return good, name
    return seen, "none"


def _scaled(code: FoundCode, step: int) -> FoundCode:
    code.corners_px = code.corners_px * step
    return code


# --- corner marks ------------------------------------------------------------------------------

@dataclass
class _Blob:
    x: float
    y: float
    side: float
    fill: float


def _blob_block(side_px: float) -> int:
    """The adaptive threshold's neighbourhood (px, odd) for marks of about side_px."""
    return max(int(side_px * 4) | 1, 15)


def _find_blobs(work: np.ndarray, side_px: float, windows: list[tuple[int, int, int, int]] | None = None
                ) -> list[_Blob]:
    """Solid dark squares of about side_px on the reduced image. windows (x0, y0, x1, y1, work px):
    look only there, and only for squares at least the threshold's reach inside each window, where
    the window's pixels are thresholded, opened and traced exactly as the whole image's are (the same
    blobs, the same numbers, a fraction of the pixels)."""
    block = _blob_block(side_px)
    if windows is None:
        return _blobs_in(work, side_px, block, 0, 0, None)
    h, w = work.shape
    # the mean threshold reaches block // 2, the opening 2 more: beyond that inside a window, the
    # binary image is the whole image's
    reach = block // 2 + 2
    blobs: list[_Blob] = []
    for x0, y0, x1, y1 in windows:
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 - x0 < 2 * reach + 4 or y1 - y0 < 2 * reach + 4:
            continue
        # where the window meets the image's own edge the image's border rule applies, as for the whole
        valid = (-1 if x0 == 0 else reach, -1 if y0 == 0 else reach,
                 x1 - x0 + 1 if x1 == w else x1 - x0 - reach, y1 - y0 + 1 if y1 == h else y1 - y0 - reach)
        for b in _blobs_in(np.ascontiguousarray(work[y0:y1, x0:x1]), side_px, block, x0, y0, valid):
            if not any(b.x == o.x and b.y == o.y for o in blobs):  # windows that overlap
                blobs.append(b)
    return blobs


def _blobs_in(work: np.ndarray, side_px: float, block: int, ox: int, oy: int,
              valid: tuple[int, int, int, int] | None) -> list[_Blob]:
    binary = cv2.adaptiveThreshold(work, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 25)
    # opening removes thin things touching a mark (toner streaks, pen lines, table edges)
    k = 3
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    # CCOMP, not EXTERNAL: on a photo the sheet is a hole in the (dark) desk, and the marks sit inside it
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    lo, hi = (side_px * 0.6) ** 2, (side_px * 1.5) ** 2
    blobs = []
    parents = hierarchy[0][:, 3].tolist() if hierarchy is not None else []
    for c, parent in zip(contours, parents):
        if parent != -1:  # the boundary of a hole, not of a component
            continue
        area = cv2.contourArea(c)
        if not lo <= area <= hi:
            continue
        x, y, bw, bh = cv2.boundingRect(c)
        if valid is not None and not (x > valid[0] and y > valid[1] and x + bw < valid[2] and y + bh < valid[3]):
            continue
        if ox or oy:  # in whole-image coordinates (integers: the same moments as found there)
            c = c + np.array([ox, oy], c.dtype)
        (cx, cy), (rw, rh), _ = cv2.minAreaRect(c)
        if rw <= 0 or rh <= 0 or max(rw, rh) / min(rw, rh) > 1.6:
            continue
        if area / (rw * rh) < 0.8:
            continue
        inside = binary[y:y + bh, x:x + bw]
        mask = np.zeros_like(inside)
        cv2.drawContours(mask, [c - [x + ox, y + oy]], -1, 255, -1)
        fill = float(np.count_nonzero(inside & mask)) / max(1, np.count_nonzero(mask))
        if fill < 0.7:
            continue
        m = cv2.moments(c)
        if m["m00"] <= 0:
            continue
        blobs.append(_Blob(m["m10"] / m["m00"], m["m01"] / m["m00"], math.sqrt(area), fill))
    return blobs


def _affine_h(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares affine transform (as a 3x3 matrix) mapping src points to dst points."""
    src = np.asarray(src, float).reshape(-1, 2)
    dst = np.asarray(dst, float).reshape(-1, 2)
    a = np.hstack([src, np.ones((len(src), 1))])
    sol, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return np.vstack([sol.T, [0, 0, 1]])


def project(h: np.ndarray, pts) -> np.ndarray:
    pts = np.asarray(pts, float).reshape(-1, 2)
    out = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), h).reshape(-1, 2)
    return out


def _hole_darkness(image: np.ndarray, h: np.ndarray, centre_mm) -> tuple[float, float]:
    """Mean grey at a mark's centre (hole) and in its solid ring, at full resolution."""
    return _holes_darkness(image, h, [centre_mm])[0]


def _probes(centre_mm) -> list[tuple[float, float]]:
    """The hole probes (5) then the ring probes (8) of a mark centred at centre_mm."""
    cx, cy = centre_mm
    p, r, d = HOLE_PROBE_MM, RING_MM, RING_DIAGONAL_MM
    return ([(cx + dx, cy + dy) for dx, dy in ((0, 0), (p, 0), (-p, 0), (0, p), (0, -p))]
            + [(cx + dx, cy + dy) for dx, dy in ((r, 0), (-r, 0), (0, r), (0, -r), (d, d), (-d, d), (d, -d), (-d, -d))])


def _holes_darkness(image: np.ndarray, h: np.ndarray, centres_mm: list) -> list[tuple[float, float]]:
    """_hole_darkness of several marks, their probes projected in one go (the same numbers)."""
    hh, ww = image.shape
    projected = project(h, [q for c in centres_mm for q in _probes(c)]).tolist()

    def sample(points):
        vals = []
        for x, y in points:
            xi, yi = int(round(x)), int(round(y))
            if 0 <= xi < ww and 0 <= yi < hh:
                vals.append(float(image[yi, xi]))
        return float(np.mean(vals)) if vals else 255.0
    return [(sample(projected[13 * i:13 * i + 5]), sample(projected[13 * i + 5:13 * i + 13]))
            for i in range(len(centres_mm))]


def _orientation(h: np.ndarray, page_mm) -> int:
    w, ht = page_mm
    c = project(h, [(w / 2, ht / 2), (w / 2 + 10, ht / 2)])
    dx, dy = c[1] - c[0]
    angle = math.degrees(math.atan2(dy, dx)) % 360
    return int(round(angle / 90.0)) % 4 * 90


MARK_ORDER = ("tl", "tr", "br", "bl")


def _mark_centres(geometry: dict) -> dict[str, tuple[float, float]]:
    return {k: (v[0] + v[2] / 2, v[1] + v[3] / 2) for k, v in geometry["marks_mm"].items()}


def _qr_corners_mm(geometry: dict) -> np.ndarray:
    x, y, s, _ = geometry["qr_mm"]
    return np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], float)


class MarksNotFound(Exception):
    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def _work_copy(image: np.ndarray, px_per_mm: float) -> tuple[np.ndarray, float]:
    """Reduced copy at about WORK_PX_PER_MM; returns it and the factor full px / work px."""
    factor = max(1.0, px_per_mm / WORK_PX_PER_MM)
    h, w = image.shape
    if max(h, w) / factor > MAX_WORK_SIDE:
        factor = max(h, w) / MAX_WORK_SIDE
    if factor <= 1.05:
        return image, 1.0
    size = (max(1, int(round(w / factor))), max(1, int(round(h / factor))))
    # a linear resize samples rather than averages (INTER_AREA costs 20x more); the opening in
    # _find_blobs removes the isolated speckle this lets through
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), factor


# Where the code puts a mark on a flat page the mark is within a millimetre or two: the marks are
# first looked for this close to where the code predicts them (a few small windows of the page),
# and the whole page is searched only when that does not give four marks that fit.
NEAR_MM = 10.0


def locate_with_code(image: np.ndarray, code: FoundCode, geometry: dict) -> Location:
    """Corner marks predicted from the QR position; raises MarksNotFound."""
    qr_mm = _qr_corners_mm(geometry)
    h_qr = _affine_h(qr_mm, code.corners_px)
    px_per_mm = math.sqrt(abs(np.linalg.det(h_qr[:2, :2])))
    work, factor = _work_copy(image, px_per_mm)
    side = MARK_SIZE_MM * px_per_mm / factor
    local = px_per_mm / factor
    reach = _blob_block(side) // 2 + 2
    predicted = {k: project(h_qr, [c])[0] / factor for k, c in _mark_centres(geometry).items()}
    r = NEAR_MM * local + side + reach
    windows = [(int(x - r), int(y - r), int(x + r) + 2, int(y + r) + 2) for x, y in predicted.values()]
    near = _locate_among(image, code, geometry, _find_blobs(work, side, windows), factor, px_per_mm, fast=True)
    if near is not None:
        return near
    return _locate_among(image, code, geometry, _find_blobs(work, side), factor, px_per_mm, fast=False)


def _locate_among(image: np.ndarray, code: FoundCode, geometry: dict, blobs: list[_Blob], factor: float,
                  px_per_mm: float, fast: bool) -> Location | None:
    """The page from the marks among blobs. fast (blobs near the predictions only): only four marks
    that fit as well as four must, else None (the caller searches the whole page)."""
    qr_mm = _qr_corners_mm(geometry)
    h_qr = _affine_h(qr_mm, code.corners_px)
    # the code's finder patterns look like small solid squares on a reduced, blurred scan
    qr_poly = ((code.corners_px - code.corners_px.mean(axis=0)) * 1.15 + code.corners_px.mean(axis=0)) / factor
    qr_poly = qr_poly.astype(np.float32).reshape(-1, 1, 2)
    blobs = [b for b in blobs if cv2.pointPolygonTest(qr_poly, (float(b.x), float(b.y)), False) < 0]
    centres = _mark_centres(geometry)
    qr_centre = qr_mm.mean(axis=0)
    # Candidates per corner near where the code predicts the mark. A phone photo's perspective is
    # not known from the code alone, so the search is wide; the four marks are then chosen together:
    # the set whose page transform puts the code's corners where they were found.
    candidates: dict[str, list[int]] = {}
    for key in MARK_ORDER:
        pred = project(h_qr, [centres[key]])[0] / factor
        local = px_per_mm / factor
        dist_mm = math.dist(centres[key], qr_centre)
        tol = (10.0 + 0.25 * dist_mm) * local
        near = sorted((math.hypot(b.x - pred[0], b.y - pred[1]), i) for i, b in enumerate(blobs)
                      if 0.55 < b.side / (MARK_SIZE_MM * local) < 1.6)
        candidates[key] = [i for d, i in near if d < tol][:5]
    missing = [k for k in MARK_ORDER if not candidates[k]]
    if fast and missing:
        return None
    if len(missing) > 1:
        raise MarksNotFound(detail("marks_missing", marks=missing))
    four = None if missing else _best_four(blobs, candidates, factor, centres, qr_mm, qr_centre, code)
    if four is not None and four[1] <= THREE_MARKS_FROM_MM:
        found = {k: (blobs[i].x * factor, blobs[i].y * factor) for k, i in zip(MARK_ORDER, four[0])}
        if not fast:
            return _finish(image, geometry, found, code.corners_px)
        try:
            return _finish(image, geometry, found, code.corners_px)
        except MarksNotFound:
            return None  # the whole page decides
    if fast:
        return None
    # A label over a mark, a blotch touching it (its centre moved), a torn corner: read from the
    # other three marks and the code's corners, if they agree as well as four marks must.
    flat, bent = _best_three(blobs, candidates, factor, centres, qr_mm, code, missing)
    qr_px = np.asarray(code.corners_px, float)
    if flat is not None and flat[1] <= FLAT_FIT_MM:
        # three marks whose affine transform puts the code where it was found: the fourth blob was wrong
        keys, score, combo, hmat = flat
        found = {k: (blobs[i].x * factor, blobs[i].y * factor) for k, i in zip(keys, combo)}
        return _finish_three(image, geometry, found, hmat, score, qr_px, flat=True)
    if (missing or four is None) and bent is not None and bent[1] <= MAX_FIT_MM:
        # a mark really not there (or no four blobs that make a page), perspective (a phone photo):
        # the homography through three marks and the code. Only then: with four marks that make a
        # page, a code that disagrees with them is a code moved or stuck on, and bending the page
        # to fit it would read the wrong places.
        keys, score, combo, hmat = bent
        found = {k: (blobs[i].x * factor, blobs[i].y * factor) for k, i in zip(keys, combo)}
        return _finish_three(image, geometry, found, hmat, score, qr_px, flat=False)
    if four is not None and four[1] <= MAX_FIT_MM:
        found = {k: (blobs[i].x * factor, blobs[i].y * factor) for k, i in zip(MARK_ORDER, four[0])}
        return _finish(image, geometry, found, code.corners_px)
    if missing:
        raise MarksNotFound(detail("mark_missing", mark=missing[0]))
    if four is None:
        raise MarksNotFound(detail("no_outline"))
    raise MarksNotFound(detail("marks_disagree", mm=f"{four[1]:.1f}"))


def _best_four(blobs, candidates, factor, centres, qr_mm, qr_centre, code):
    """The four marks (candidate indices in MARK_ORDER) whose page transform puts the code's corners
    where the decoder found them, and that distance (mm) plus a size penalty; None: no set fits."""
    src = np.array([centres[k] for k in MARK_ORDER], np.float32)
    qr_px = np.asarray(code.corners_px, float)
    best, best_score = None, float("inf")
    for combo in itertools.product(*(candidates[k] for k in MARK_ORDER)):
        if len(set(combo)) < 4:
            continue
        dst = np.array([(blobs[i].x * factor, blobs[i].y * factor) for i in combo], np.float32)
        if not _convex(dst):
            continue
        hmat = cv2.getPerspectiveTransform(src, dst)
        local_qr = math.sqrt(abs(np.linalg.det(_jacobian(hmat, qr_centre))))
        residual = float(np.max(np.linalg.norm(project(hmat, qr_mm) - qr_px, axis=1))) / max(local_qr, 1e-6)
        penalty = 0.0
        for key, i in zip(MARK_ORDER, combo):
            ratio = blobs[i].side * factor / (MARK_SIZE_MM * math.sqrt(abs(np.linalg.det(
                _jacobian(hmat, centres[key])))))
            if not 0.85 < ratio < 1.15:  # measured on true marks: 0.93-1.01 (scanner, photocopy, phone)
                penalty = float("inf")
                break
            penalty += abs(math.log(ratio))
        score = residual + penalty
        if score < best_score:
            best, best_score = combo, score
    return None if best is None else (best, best_score)


def _mark_size_penalty(blobs, factor, hmat, centres, keys, combo) -> float:
    penalty = 0.0
    for key, i in zip(keys, combo):
        ratio = blobs[i].side * factor / (MARK_SIZE_MM * math.sqrt(abs(np.linalg.det(_jacobian(hmat, centres[key])))))
        if not 0.85 < ratio < 1.15:
            return float("inf")
        penalty += abs(math.log(ratio))
    return penalty


def _best_three(blobs, candidates, factor, centres, qr_mm, code, missing):
    """Three marks and the code. Two readings of them, each (keys, score, combo, transform) or None:
    flat: the three marks' affine transform (a scanner), checked by the code as four marks are: the
    largest distance (mm) of the code's corners from where it puts them, plus the size penalty;
    bent: the homography through the three marks and the code's four corners (perspective), scored
    by what is left over at those seven points."""
    qr_px = np.asarray(code.corners_px, float)
    flat = bent = None
    for omit in (missing or MARK_ORDER):
        keys = [k for k in MARK_ORDER if k != omit]
        marks_mm = np.array([centres[k] for k in keys], float)
        src = np.vstack([marks_mm, qr_mm])
        for combo in itertools.product(*(candidates[k] for k in keys)):
            if len(set(combo)) < 3:
                continue
            marks_px = np.array([(blobs[i].x * factor, blobs[i].y * factor) for i in combo], float)
            affine = _affine_h(marks_mm, marks_px)
            if abs(np.linalg.det(affine[:2, :2])) < 1e-9:
                continue
            local = math.sqrt(abs(np.linalg.det(affine[:2, :2])))
            score = float(np.max(np.linalg.norm(project(affine, qr_mm) - qr_px, axis=1))) / local
            score += _mark_size_penalty(blobs, factor, affine, centres, keys, combo)
            if flat is None or score < flat[1]:
                flat = (keys, score, combo, affine)
            dst = np.vstack([marks_px, qr_px])
            hmat, _ = cv2.findHomography(src, dst, 0)
            if hmat is None or not _convex(project(hmat, [centres[k] for k in MARK_ORDER])):
                continue
            local = math.sqrt(abs(np.linalg.det(_jacobian(hmat, qr_mm.mean(axis=0)))))
            score = float(np.max(np.linalg.norm(project(hmat, src) - dst, axis=1))) / max(local, 1e-6)
            score += _mark_size_penalty(blobs, factor, hmat, centres, keys, combo)
            if bent is None or score < bent[1]:
                bent = (keys, score, combo, hmat)
    return flat, bent


def locate_by_marks(image: np.ndarray, geometry: dict) -> Location:
    """No code: the four marks nearest the image corners; the holed one is bottom-right."""
    h, w = image.shape
    pw, ph = geometry["page_size_mm"]
    # assume the page fills most of the image
    px_per_mm = max(h, w) / max(pw, ph)
    work, factor = _work_copy(image, px_per_mm)
    blobs = []
    for scale in (1.0, 0.8, 0.65):
        blobs = _find_blobs(work, MARK_SIZE_MM * px_per_mm * scale / factor)
        if len(blobs) >= 4:
            break
    if len(blobs) < 4:
        raise MarksNotFound(detail("fewer_marks"))
    wh, ww = work.shape
    corners = [(0, 0), (ww, 0), (ww, wh), (0, wh)]
    picked: list[_Blob] = []
    for cx, cy in corners:
        b = min(blobs, key=lambda b: math.hypot(b.x - cx, b.y - cy))
        if b in picked:
            raise MarksNotFound(detail("marks_not_in_corners"))
        picked.append(b)
    sides = [b.side for b in picked]
    if max(sides) / min(sides) > 1.5:
        raise MarksNotFound(detail("marks_sizes"))
    # image-corner order tl, tr, br, bl; find which one has the hole
    pts_full = [(b.x * factor, b.y * factor) for b in picked]
    holes = []
    for i, (x, y) in enumerate(pts_full):
        r = picked[i].side * factor
        x0, y0 = int(x - r * 0.12), int(y - r * 0.12)
        x1, y1 = int(x + r * 0.12) + 1, int(y + r * 0.12) + 1
        centre = image[max(0, y0):y1, max(0, x0):x1]
        ox0, oy0 = int(x - r * 0.45), int(y - r * 0.45)
        around = image[max(0, oy0):int(y + r * 0.45) + 1, max(0, ox0):int(x + r * 0.45) + 1]
        holes.append(float(centre.mean()) - float(np.percentile(around, 10)) if centre.size else 0.0)
    holed = int(np.argmax(holes))
    if sorted(holes)[-2] > holes[holed] * 0.5 or holes[holed] < 40:
        raise MarksNotFound(detail("hole_unclear"))
    # rotate labels so that the holed image corner is 'br'
    shift = (holed - 2) % 4
    found = {MARK_ORDER[(i - shift) % 4]: pts_full[i] for i in range(4)}
    return _finish(image, geometry, found, None)


def _convex(quad: np.ndarray) -> bool:
    signs = []
    for i in range(4):
        a, b, c = quad[i], quad[(i + 1) % 4], quad[(i + 2) % 4]
        u, v = b - a, c - b
        signs.append(float(u[0] * v[1] - u[1] * v[0]))
    return all(x > 0 for x in signs) or all(x < 0 for x in signs)


def _finish(image: np.ndarray, geometry: dict, found: dict[str, tuple[float, float]],
            qr_px: np.ndarray | None) -> Location:
    centres = _mark_centres(geometry)
    keys = list(MARK_ORDER)
    src = np.array([centres[k] for k in keys], np.float32)
    dst = np.array([found[k] for k in keys], np.float32)
    hmat = cv2.getPerspectiveTransform(src, dst)
    notes = []
    # Fit error: how far the code's corners are from where the marks put them (mm).
    if qr_px is not None:
        pred = project(hmat, _qr_corners_mm(geometry))
        local = math.sqrt(abs(np.linalg.det(_jacobian(hmat, _qr_corners_mm(geometry).mean(axis=0)))))
        fit = float(np.max(np.linalg.norm(pred - qr_px, axis=1)) / max(local, 1e-6))
    else:
        fit = None  # four marks and no code: nothing left over to measure the fit with
    # the quadrilateral must be convex and the page not absurdly distorted
    quad = dst.reshape(-1, 2)
    if not _convex(quad):
        raise MarksNotFound(detail("not_an_outline"))
    pw, ph = geometry["page_size_mm"]
    scale = math.sqrt(abs(np.linalg.det(_jacobian(hmat, (pw / 2, ph / 2)))))
    # side ratios: perspective stronger than a phone photo held over the sheet is not a page
    sx = math.dist(quad[0], quad[1]) / max(1e-6, math.dist(quad[3], quad[2]))
    sy = math.dist(quad[0], quad[3]) / max(1e-6, math.dist(quad[1], quad[2]))
    if not (0.6 < sx < 1.67 and 0.6 < sy < 1.67):
        raise MarksNotFound(detail("page_shape"))
    # black and paper levels from the marks, hole check
    black, hole_vals = [], {}
    for k, (centre, ring) in zip(keys, _holes_darkness(image, hmat, [centres[k] for k in keys])):
        black.append(ring)
        hole_vals[k] = centre
    black_level = float(np.median(black))
    paper_level = _paper_level(image, hmat, geometry)
    contrast = max(1.0, paper_level - black_level)
    hole_ok = (hole_vals["br"] - black_level) > 0.45 * contrast and all(
        (hole_vals[k] - black_level) < 0.35 * contrast for k in ("tl", "tr", "bl"))
    if not hole_ok:
        other_holes = [k for k in ("tl", "tr", "bl") if (hole_vals[k] - black_level) > 0.45 * contrast]
        if other_holes:
            raise MarksNotFound(detail("hole_elsewhere", mark=other_holes[0]))
        notes.append("hole of the bottom-right mark not visible")
    return Location(hmat, found, fit, _orientation(hmat, (pw, ph)), scale * 25.4, black_level, paper_level,
                    hole_ok, notes)


def _finish_three(image: np.ndarray, geometry: dict, found: dict[str, tuple[float, float]], hmat: np.ndarray,
                  fit: float, qr_px: np.ndarray, flat: bool) -> Location:
    """A page located by three marks and the code. Flat (the three marks' affine transform, checked
    by the code): at the missing corner the transform is extrapolated, taken as about twice the
    code's error there. Bent (perspective, a phone photo: the homography through the marks and the
    code): at the missing corner it is only as good as its extrapolation, taken as how far it and
    the three marks' affine transform disagree there. That figure (mm) is kept as `weak_corner_mm`;
    the engine sends the fields in that corner's quarter of the page to review when it is large."""
    centres = _mark_centres(geometry)
    keys = [k for k in MARK_ORDER if k in found]
    missing = next(k for k in MARK_ORDER if k not in found)
    at = centres[missing]
    if flat:
        weak = 2 * fit
    else:
        affine = _affine_h(np.array([centres[k] for k in keys]), np.array([found[k] for k in keys]))
        local = math.sqrt(abs(np.linalg.det(_jacobian(hmat, at))))
        weak = float(np.linalg.norm(project(hmat, [at])[0] - project(affine, [at])[0])) / max(local, 1e-6)
    pw, ph = geometry["page_size_mm"]
    quad = project(hmat, [centres[k] for k in MARK_ORDER])
    sx = math.dist(quad[0], quad[1]) / max(1e-6, math.dist(quad[3], quad[2]))
    sy = math.dist(quad[0], quad[3]) / max(1e-6, math.dist(quad[1], quad[2]))
    if not (0.6 < sx < 1.67 and 0.6 < sy < 1.67):
        raise MarksNotFound(detail("page_shape"))
    black, hole_vals = [], {}
    for k, (centre, ring) in zip(keys, _holes_darkness(image, hmat, [centres[k] for k in keys])):
        black.append(ring)
        hole_vals[k] = centre
    black_level = float(np.median(black))
    paper_level = _paper_level(image, hmat, geometry)
    contrast = max(1.0, paper_level - black_level)
    other_holes = [k for k in keys if k != "br" and (hole_vals[k] - black_level) > 0.45 * contrast]
    if other_holes:
        raise MarksNotFound(detail("hole_elsewhere", mark=other_holes[0]))
    hole_ok = "br" in hole_vals and (hole_vals["br"] - black_level) > 0.45 * contrast
    notes = [f"corner mark '{missing}' not used (covered, blotched or torn): located by three marks and the code"]
    if not hole_ok and "br" in hole_vals:
        notes.append("hole of the bottom-right mark not visible")
    scale = math.sqrt(abs(np.linalg.det(_jacobian(hmat, (pw / 2, ph / 2)))))
    loc = Location(hmat, found, fit, _orientation(hmat, (pw, ph)), scale * 25.4, black_level, paper_level,
                   hole_ok, notes)
    loc.missing_mark, loc.weak_corner_mm = missing, round(weak, 3)
    return loc


def _paper_level(image: np.ndarray, hmat: np.ndarray, geometry: dict) -> float:
    """Paper grey near the marks (bright percentile of small patches just inside each mark)."""
    hh, ww = image.shape
    patches = []
    for x, y in project(hmat, [(20, 30), (geometry["page_size_mm"][0] - 20, geometry["page_size_mm"][1] / 2),
                               (geometry["page_size_mm"][0] / 2, geometry["page_size_mm"][1] - 12),
                               (12, geometry["page_size_mm"][1] / 2)]):
        xi, yi = int(x), int(y)
        patch = image[max(0, yi - 6):min(hh, yi + 7), max(0, xi - 6):min(ww, xi + 7)]
        if patch.size:
            patches.append(patch)
    if not patches:
        return 255.0
    if len({p.shape for p in patches}) == 1:  # one percentile call for all (the same numbers per row)
        vals = np.percentile(np.stack(patches).reshape(len(patches), -1), 90, axis=1).tolist()
    else:
        vals = [float(np.percentile(p, 90)) for p in patches]
    return float(np.median(vals))


def _jacobian(h: np.ndarray, pt) -> np.ndarray:
    x, y = pt
    d = 0.5
    p = project(h, [(x, y), (x + d, y), (x, y + d)])
    return np.array([(p[1] - p[0]) / d, (p[2] - p[0]) / d]).T
