"""One page image in, one PageResult out: identify (QR + HMAC), align (corner marks), read fields.

Fail closed: a page is either identified by a verified code and aligned by its four corner marks,
or it is quarantined with a reason; a field value that is not clearly one thing goes to review
with a reason. The pipeline (ingest, store, workers) calls `read_page`; a clerk's identification
of a quarantined page goes through `read_page_as`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np

from .. import payload as payload_mod
from ..errors import PayloadError
from ..templates.contract import PAGE_IMAGE_DPI
from . import digits, locate, read
from .reasons import detail, english

POOR_FIT_MM = 1.5        # code corners vs the marks' transform; above: every reading to review
LOW_CONTRAST = 60.0      # paper minus mark black, grey levels
DARK_PAGE = 0.35         # fraction of the page (its 100 dpi viewing grid, sampled: DARK_STRIDE) that is dark
PRINTED_REF_MAX = 0.60   # and at most this: printed lines on a clean scan (pen ink over a frame can be darker)
PRINTED_REF_MIN = 0.15   # the page's typical printed-outline darkness is taken as at least this
PAGE_COVERED_SHARE = 0.5  # this share of the fields with their outline not seen: the whole page to review
PAGE_COVERED = "part of the page covered or folded"  # the start of english("page_covered", ...)
PAGE_DPI = PAGE_IMAGE_DPI  # the page image's grid, on which the page's darkness is sampled
DARK_STRIDE = 3  # every 3rd point of that grid each way (~107,000 points on A4; within 0.4 point of the whole grid
#                 on the ward pack's pages, tests/test_pageview.py), 1/9 of the warp


@dataclass
class FieldReading:
    field: str
    type: str
    raw: dict
    value: Any
    confidence: float
    status: str
    reason: str | None
    ink: bool | None
    crop: np.ndarray | None = None


@dataclass
class PageResult:
    status: str
    reason: str | None
    detail: str | None
    payload_text: str | None
    sheet_id: str | None = None
    template: str | None = None
    version: int | None = None
    page: int | None = None
    pages: int | None = None
    orientation: int | None = None
    transform: list[list[float]] | None = None
    fit_error_mm: float | None = None
    dpi: float | None = None
    quality: dict = field(default_factory=dict)
    readings: list[FieldReading] = field(default_factory=list)


def _quarantine(reason: str, detail: str, text: str | None = None, quality: dict | None = None,
                sp: payload_mod.SheetPayload | None = None) -> PageResult:
    r = PageResult("quarantined", reason, detail, text, quality=quality or {})
    if sp is not None:
        r.sheet_id, r.template, r.version, r.page, r.pages = sp.sheet_id, sp.template, sp.version, sp.page, sp.pages
    return r


def _is_ours(text: str) -> bool:
    try:
        payload_mod.parse(text)
        return True
    except PayloadError:
        return False


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 2:
        raise ValueError("read_page wants a 2-D grey image (the pipeline converts colour and bilevel)")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def read_page(image: np.ndarray, *, kit_id: str, secret: bytes,
              geometry_for: Callable[[str], dict | None]) -> PageResult:
    """Identify, align and read one page. image: 2-D uint8 grey. geometry_for(sheet_id) returns the
    dict of fallbackkit.generate.sheet_geometry or None when the sheet is unknown to this kit."""
    t0 = time.perf_counter()
    image = _check_image(image)
    quality: dict[str, Any] = {"image_px": [int(image.shape[1]), int(image.shape[0])], "timings_ms": {}}
    codes, decoder = locate.find_codes(image, lambda text: _is_ours(text) or payload_mod.is_cover(text))
    quality["decoder"] = decoder
    quality["timings_ms"]["code"] = round((time.perf_counter() - t0) * 1000, 2)
    ours = [c for c in codes if _is_ours(c.text)]
    covers = [c for c in codes if payload_mod.is_cover(c.text)]
    if covers and not ours:
        return _cover(covers[0].text, kit_id, secret, quality)
    if not ours:
        blank, measures = blank_page(image)
        quality["blank"] = measures
        if blank:
            return PageResult("blank", "blank", "a blank page (the back of a sheet?)", None, quality=quality)
        why = detail("no_code_found") if not codes else detail("not_our_qr", text=repr(codes[0].text[:24]))
        return _quarantine("no_code", why, codes[0].text if codes else None, quality)
    # Several of our codes on one page (a code pasted over another): verify each; one good one wins
    # only if no other code of ours disagrees.
    verified, failures = [], []
    for c in ours:
        sp = payload_mod.parse(c.text)
        if sp.kit_id != kit_id:
            failures.append(("foreign_kit", detail("other_kit", kit=sp.kit_id, this_kit=kit_id), c, sp))
            continue
        try:
            verified.append((payload_mod.verify(c.text, secret, kit_id), c))
        except PayloadError as exc:
            failures.append(("bad_signature", f"{exc}", c, sp))
    sheet_ids = {sp.sheet_id for sp, _ in verified}
    if not verified or len(sheet_ids) > 1 or failures:
        if failures:
            reason, why, c, sp = failures[0]
        else:
            reason, why, c, sp = ("bad_signature", detail("two_codes"), verified[0][1], verified[0][0])
        return _quarantine(reason, why, c.text, quality, sp)
    sp, code = verified[0]
    geometry = geometry_for(sp.sheet_id)
    if geometry is None:
        return _quarantine("unknown_sheet", detail("not_registered", sheet=sp.sheet_id),
                           code.text, quality, sp)
    t1 = time.perf_counter()
    try:
        loc = locate.locate_with_code(image, code, geometry)
    except locate.MarksNotFound as exc:
        quality["timings_ms"]["marks"] = round((time.perf_counter() - t1) * 1000, 2)
        back = _through_the_paper(image, code, sp, geometry, quality)
        if back is not None:
            return back
        return _quarantine("no_marks", detail("marks_after_code", why=exc.detail),
                           code.text, quality, sp)
    quality["timings_ms"]["marks"] = round((time.perf_counter() - t1) * 1000, 2)
    result = _read_located(image, loc, geometry, quality, t0)
    result.payload_text = code.text
    result.sheet_id, result.template, result.version, result.page, result.pages = (
        sp.sheet_id, sp.template, sp.version, sp.page, sp.pages)
    return result


BLANK_INK = 0.40          # contrast against the local paper that counts as ink on a blank-looking page
SHOW_THROUGH_MAX = 0.55   # a mirrored code fainter than this (contrast) was read through the paper
STRONG_INK = 0.60         # ink this strong on a show-through back was written on it
BLANK_STROKE_MM = 2.0     # a dark mark this long is writing or print, not speckle


def _ink_marks(image: np.ndarray, min_contrast: float) -> dict[str, Any]:
    """What is dark on a page that carries no code: on a copy at about 100 dpi (speckle removed),
    pixels with at least min_contrast against the local paper; the longest dark mark (mm)."""
    h, w = image.shape
    f = max(1.0, max(h, w) / 1170)
    small = image if f <= 1.05 else cv2.resize(image, (max(1, round(w / f)), max(1, round(h / f))),
                                               interpolation=cv2.INTER_AREA)
    small = cv2.medianBlur(small, 3)
    paper = cv2.dilate(small, np.ones((15, 15), np.uint8)).astype(np.float32)
    contrast = (paper - small) / np.maximum(paper, 1.0)
    sh, sw = small.shape
    by, bx = int(sh * 0.03), int(sw * 0.03)  # scanner edge shadows at the border are not content
    dark = (contrast[by:sh - by, bx:sw - bx] >= min_contrast).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    px_per_mm = max(sh, sw) / 297.0
    longest = max((max(stats[i, 2], stats[i, 3]) for i in range(1, n)), default=0) / px_per_mm
    return {"dark_share": round(float(dark.mean()), 5), "longest_mark_mm": round(float(longest), 1),
            "contrast": min_contrast}


def blank_page(image: np.ndarray) -> tuple[bool, dict[str, Any]]:
    """Is a page without a code blank (or only showing the front through the paper)? Nothing
    darker than BLANK_INK against the paper longer than BLANK_STROKE_MM: a single pen stroke,
    a word written on a back page, keeps it out of the blank pages."""
    m = _ink_marks(image, BLANK_INK)
    return m["longest_mark_mm"] < BLANK_STROKE_MM, m


def _through_the_paper(image: np.ndarray, code: locate.FoundCode, sp: payload_mod.SheetPayload, geometry: dict,
                       quality: dict) -> PageResult | None:
    """The back of a sheet, the front showing through the paper? Its code is read (decoders read
    mirrored codes), but the marks are not where a sheet's marks would be. It is a show-through when
    the page seen in a mirror is located as that sheet, or when the whole page is too faint to be
    print (nothing as dark as ink: a sheet's own code and marks are black). It is counted with the
    blank pages and never matched to the front's sheet, unless its code is as dark as print (a
    front scanned mirrored) or something was written on the back: then a person looks at it
    (no_code). None: not a back page (the caller quarantines it as no_marks)."""
    mirror = np.ascontiguousarray(image[:, ::-1])
    mirrored = False
    codes, _ = locate.find_codes(mirror, lambda t: t == code.text)
    if codes:
        try:
            locate.locate_with_code(mirror, codes[0], geometry)
            mirrored = True
        except locate.MarksNotFound:
            pass
    faint, _ = blank_page(image)
    if not (mirrored or faint):
        return None
    h, w = image.shape
    x0, y0 = np.maximum(code.corners_px.min(axis=0).astype(int), 0)
    x1, y1 = code.corners_px.max(axis=0).astype(int)
    region = image[y0:min(h, y1 + 1), x0:min(w, x1 + 1)]
    paper = float(np.percentile(image, 95))
    code_contrast = (paper - float(np.percentile(region, 5))) / max(paper, 1.0) if region.size else 1.0
    strong = _ink_marks(image, STRONG_INK)
    quality["show_through"] = {"mirrored": mirrored, "code_contrast": round(code_contrast, 3),
                               "strong_ink": strong, "sheet_seen_through": sp.sheet_id}
    if code_contrast >= SHOW_THROUGH_MAX:
        return _quarantine("no_code", detail("scanned_mirrored", sheet=sp.sheet_id), None, quality)
    if strong["longest_mark_mm"] >= BLANK_STROKE_MM:
        return _quarantine("no_code", detail("back_with_writing", sheet=sp.sheet_id), None, quality)
    return PageResult("blank", "show_through", f"the back of sheet {sp.sheet_id}: the front shows through the "
                      "paper", None, quality=quality)


def _cover(text: str, kit_id: str, secret: bytes, quality: dict) -> PageResult:
    """A ward pack's cover sheet: recognised by its signed code, nothing to read on it. A cover of
    another kit, or one whose signature fails, is quarantined like such a sheet."""
    try:
        cover = payload_mod.verify_cover(text, secret, kit_id)
    except PayloadError as exc:
        reason = "foreign_kit" if payload_mod.parse_cover(text).kit_id != kit_id else "bad_signature"
        return _quarantine(reason, str(exc), text, quality)
    return PageResult("cover", None, f"cover sheet of the pack that starts with sheet {cover.first_sheet_id}"
                      f" ({cover.sheets} sheets)", text, quality=quality)


def read_page_as(image: np.ndarray, geometry: dict) -> PageResult:
    """Read a page a clerk identified (its code could not be read): locate by the corner marks
    alone, orientation from the holed mark, then read the fields."""
    t0 = time.perf_counter()
    image = _check_image(image)
    quality: dict[str, Any] = {"image_px": [int(image.shape[1]), int(image.shape[0])], "timings_ms": {},
                               "decoder": "identified by a person"}
    try:
        loc = locate.locate_by_marks(image, geometry)
    except locate.MarksNotFound as exc:
        r = _quarantine("no_marks", detail("marks_not_found", why=exc.detail), None, quality)
    else:
        quality["timings_ms"]["marks"] = round((time.perf_counter() - t0) * 1000, 2)
        r = _read_located(image, loc, geometry, quality, t0)
    r.sheet_id = geometry.get("sheet_id")
    r.template, r.version = geometry.get("template"), geometry.get("version")
    r.page, r.pages = geometry.get("page"), geometry.get("pages")
    return r


def page_image(image: np.ndarray, hmat: np.ndarray, geometry: dict) -> np.ndarray:
    """The located page warped upright to the sheet's own frame at PAGE_DPI: what people look at
    (scan/pageview.py makes it when someone asks for it, not the scan)."""
    ppm = PAGE_DPI / 25.4
    w, h = geometry["page_size_mm"]
    return read.patch(image, hmat, 0, 0, w, h, ppm)


def dark_fraction(image: np.ndarray, hmat: np.ndarray, geometry: dict, threshold: float) -> float:
    """The share of the page darker than threshold, measured on the original: the points of the
    page image's grid (page_image) every DARK_STRIDE-th row and column, each interpolated from the
    original as page_image does (the same points of the same warp; only the others are skipped)."""
    ppm = PAGE_DPI / 25.4 / DARK_STRIDE
    w, h = geometry["page_size_mm"]
    sample = read.patch(image, hmat, 0, 0, w, h, ppm)
    return np.count_nonzero(sample < threshold) / sample.size


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
    boxes = [b["box_mm"] for f in geometry["fields"] if f["type"] in read.MARK_TYPES
             for b in ((f,) if f["type"] == "checkbox" else f["options"])]  # each field's _boxes, in order
    measures = iter(read.measure_boxes(image, hmat, boxes, loc.black_level))
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


def _field_crop(image: np.ndarray, hmat: np.ndarray, boxes: list) -> np.ndarray:
    x0 = min(b[0] for b in boxes) - 2
    y0 = min(b[1] for b in boxes) - 2
    x1 = max(b[0] + b[2] for b in boxes) + 15  # the last option's label is right of its box
    y1 = max(b[1] + b[3] for b in boxes) + 2
    return read.patch(image, hmat, x0, y0, x1 - x0, y1 - y0, read.CROP_PX_PER_MM)


def _boxes(f: dict) -> list[dict]:
    """The mark boxes of a field, in order (none for other field types)."""
    if f["type"] == "checkbox":
        return [{"value": None, "box_mm": f["box_mm"]}]
    if f["type"] in read.MARK_TYPES:
        return [{"value": o["value"], "box_mm": o["box_mm"]} for o in f["options"]]
    return []


def _measure_field(image: np.ndarray, hmat: np.ndarray, f: dict, black: float, measures,
                   cells: digits.Batch | None = None, hand=None) -> tuple[dict, np.ndarray | None]:
    """Raw measures of one field (and the handwriting crop). measures: an iterator over this and the
    following fields' box measures (measure_boxes); hand: the same over the handwriting fields'
    (measure_handwritten_many), None to measure this one here; cells: the page's comb cells to classify."""
    ftype = f["type"]
    if ftype == "checkbox":  # its one box's measures as they are (a checkbox's box has no value)
        return {"boxes": [next(measures)]}, None
    if ftype in read.MARK_TYPES:  # each option's value, then its box's measures (_boxes order)
        return {"boxes": [{"value": o["value"], **next(measures)} for o in f["options"]]}, None
    if ftype in read.HANDWRITTEN:
        raw, crop = next(hand) if hand is not None else read.measure_handwritten(image, hmat, f, black)
        if f.get("transcribe"):  # as printed on this sheet; decide() is re-run from the raw measures
            raw["transcribe"] = f["transcribe"]
        if read.decide_ink(raw) and f.get("cells_mm") and cells is not None \
                and read.transcribe_mode(raw, ftype) == "yes":  # comb field: each cell, for a suggestion
            raw["cells"] = cells.add(image, hmat, f, black, raw["shift_mm"])
        return raw, crop
    return {}, None  # an unknown field type is never guessed at


def _visibility(measured: list[tuple[dict, np.ndarray | None]]) -> dict[str, Any]:
    """Compare each field's printed outline with the rest of the page's, and record the page's
    typical outline darkness in every field's raw measures ("printed_ref"), so that decide() can be
    re-run from stored readings. Mark boxes and handwriting frames are sampled differently, so
    each kind has its own reference: a high percentile of its fields (robust to a good part of the
    page being covered), never below PRINTED_REF_MIN (a page whose outlines are all faint is not
    trusted either)."""
    kinds: dict[str, list[dict]] = {"boxes": [], "frames": []}
    printed: dict[str, list[float]] = {"boxes": [], "frames": []}  # each raw's read.field_printed
    for raw, _ in measured:
        p = read.field_printed(raw)
        if p is not None:
            kind = "boxes" if "boxes" in raw else "frames"
            kinds[kind].append(raw)
            printed[kind].append(p)
    refs = {}
    pooled = printed["boxes"] + printed["frames"]
    for kind, raws in kinds.items():
        if not raws:
            continue
        # a kind with few fields on the page borrows the whole page's outlines (one heavily inked
        # frame must not set the bar for the other two)
        values = printed[kind] if len(raws) >= 5 else pooled
        refs[kind] = round(min(PRINTED_REF_MAX, max(PRINTED_REF_MIN, float(np.percentile(values, 75)))), 3)
        for r in raws:
            r["printed_ref"] = refs[kind]
    n = len(pooled)
    covered = sum(read.is_covered(r) for raws in kinds.values() for r in raws)
    return {"fields": n, "covered": covered, "covered_share": round(covered / n, 3) if n else 0.0,
            "printed_ref": refs}


def _near_corner(f: dict, corner: str, page_mm) -> bool:
    """Is the field in the quarter of the page at this corner (where a transform fitted without
    that corner's mark is extrapolated)?"""
    rects = [o["box_mm"] for o in f.get("options", [])] or [f["box_mm"]]
    pw, ph = page_mm
    right, bottom = corner in ("tr", "br"), corner in ("bl", "br")
    for x, y, w, h in rects:
        in_x = x + w > pw / 2 if right else x < pw / 2
        in_y = y + h > ph / 2 if bottom else y < ph / 2
        if in_x and in_y:
            return True
    return False


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
    if status == "review" and crop is None:
        boxes = _boxes(f)
        if boxes:
            crop = _field_crop(image, hmat, [b["box_mm"] for b in boxes])
    return FieldReading(f["name"], ftype, raw, value, conf, status, reason, ink, crop)


__all__ = ["FieldReading", "PageResult", "read_page", "read_page_as", "blank_page", "page_image", "POOR_FIT_MM"]
