"""The page task: what a worker process does with one page of one archived file.

Decode the page, read it (`engine.read_page`), write the crops kept at scan time (the page image
is made on demand from the archived original: pageview.py), and return a small, picklable result that the parent stores (`store/captures.py`). A page
the engine cannot read comes back as `unreadable`, never as an exception: it is quarantined.
"""
from __future__ import annotations

import json
import os
import resource
import struct
import time
import traceback
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import PayloadError
from ..files import OutputFiles, file_name
from .ingest import PageReader, UnreadableFile
from ..store.captures import page_image_rel
from . import read
from .reasons import detail


_WORKER: dict[str, Any] = {}


def _reader_for(path: Path, kind: str) -> PageReader:
    """Keep the last file open: consecutive pages of a PDF or TIFF do not reopen it."""
    current = _WORKER.get("reader")
    if current is not None and current.path == path:
        return current
    if current is not None:
        current.close()
        _WORKER["reader"] = None
    reader = PageReader(path, kind)
    _WORKER["reader"] = reader
    return reader


def read_task(task: tuple[str, str, str, int]) -> dict[str, Any]:
    """Decode and read one page; write its kept crops; return a small, picklable result."""
    sha, archive_rel, kind, index = task
    kit_path: Path = _WORKER["kit_path"]
    t0 = time.perf_counter()
    try:
        page = _reader_for(kit_path / archive_rel, kind).page(index)
    except UnreadableFile as exc:
        return {"sha": sha, "index": index, "kind": "file_error", "error": f"{exc.problem} — {exc.hint}"}
    except Exception as exc:  # a decoder bug must not stop the batch: the file is reported
        return {"sha": sha, "index": index, "kind": "file_error",
                "error": f"page {index} cannot be decoded ({type(exc).__name__}: {exc})"}
    t1 = time.perf_counter()
    image = page.image
    notes = list(getattr(page, "notes", ()))
    try:
        from .engine import read_page
        result = read_page(image, kit_id=_WORKER["kit_id"], secret=_WORKER["secret"],
                           geometry_for=_WORKER["geometry_for"])
        out = _result_dict(result, page.dpi)
    except Exception as exc:  # an engine bug: the page goes to a person, it is never lost
        out = _unreadable(exc, page.dpi)
        result = None
    back_candidate = (out["status"] == "quarantined" and out["reason"] in BACK_CANDIDATES) or out["status"] == "cover"
    if back_candidate and index > 1:
        try:
            back = _back_of_the_front_before(kit_path / archive_rel, kind, sha, index, page, out)
        except Exception as exc:  # the check must never lose the page: it stays quarantined
            out.setdefault("quality", {})["show_through_error"] = f"{type(exc).__name__}: {exc}"
            back = None
        if back is not None:
            out, result = back, None
    _WORKER["last_page"] = (sha, index, _front_identity(out), image)
    t2 = time.perf_counter()
    # the page image is made from the archived original when someone asks for it (pageview.py);
    # the capture records where its cached copy goes
    out["image_path"] = page_image_rel(sha, index)
    _save_crops(kit_path, Path("crops") / sha[:2] / f"{sha}-p{index}", out)
    out.update(sha=sha, index=index, kind="page", width_px=int(image.shape[1]), height_px=int(image.shape[0]),
               decoder_notes=notes, decode_ms=round((t1 - t0) * 1000, 2), read_ms=round((t2 - t1) * 1000, 2),
               rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    return out


# A duplex scan's back can come out of the reader as one of these: its code unreadable, or read
# mirrored through the paper (then no marks where that sheet's marks would be, or "as dark as print"
# on a bilevel scan, where show-through is as black as ink). A cover's back can come out as a cover.
BACK_CANDIDATES = ("no_code", "no_marks")


def _back_of_the_front_before(path: Path, kind: str, sha: str, index: int, page: Any,
                              out: dict[str, Any]) -> dict[str, Any] | None:
    """Is this quarantined page the back of the sheet on the page just before it in the same file,
    showing nothing but its front through the paper (duplex.py)? Then it is a blank page, never
    matched to that sheet. Ink the front's mirror does not explain keeps it with a person, with a
    detail that says so. None: not shown to be a back (the page stays as the reader left it)."""
    from . import duplex
    front, front_image = _front_before(path, kind, sha, index)
    if front is None:
        return None
    cover = front.startswith(COVER)
    front_sheet = None if cover else front
    if out["status"] == "cover":  # a cover's code read through the paper (decoders read mirrored codes)?
        if front != COVER + (out.get("payload_text") or ""):
            return None  # not after that same cover: a cover, as the reader says
    else:
        seen = (out.get("quality") or {}).get("show_through", {}).get("sheet_seen_through") or out.get("sheet_id")
        if cover or (seen is not None and seen != front_sheet):
            return None  # the code read through the paper is another sheet's: not this front's back
    measures = duplex.compare(page.image, front_image, page.dpi, page.dpi)
    quality = dict(out.get("quality") or {})
    quality["show_through"] = {**quality.get("show_through", {}), "sheet_seen_through": front_sheet,
                               "front_page": index - 1, "mirror": measures}
    what = "the ward pack's cover sheet" if cover else f"sheet {front}"
    if not duplex.is_show_through(measures):
        if not duplex.is_mirror(measures):
            return None  # not that front's mirror at all: the reader's own reason stands
        ink = {"page": index - 1, "mm": measures["unexplained_longest_mm"]}
        return {**out, "status": "quarantined", "quality": quality, "reason": "no_code", "payload_text": None,
                "detail": detail("cover_back_with_ink", **ink) if cover else
                detail("back_with_ink", sheet=front, **ink)}
    return {**out, "status": "blank", "reason": "show_through", "quality": quality, "payload_text": None,
            "detail": f"the back of {what} (page {index - 1}): only its front shows through the paper",
            "sheet_id": None, "template": None, "version": None, "page": None, "pages": None,
            "readings": [], "_crops": []}


COVER = "cover:"  # + its code: the page before was a ward pack's cover (its signed code verified)


def _front_identity(out: dict[str, Any]) -> str | None:
    """What a page is as the front of the next page: a sheet of this kit whose code verified (read,
    or put aside for its marks), the pack's cover, or nothing to go by (None)."""
    if out["status"] == "read" or (out["status"] == "quarantined" and out["reason"] == "no_marks"):
        return out.get("sheet_id")
    return COVER + (out.get("payload_text") or "") if out["status"] == "cover" else None


def _front_before(path: Path, kind: str, sha: str, index: int) -> tuple[str | None, np.ndarray | None]:
    """What the page before `index` is as a front (_front_identity) and its image: from this worker's
    last page, else decoded and identified again (its code verified, as the reader does)."""
    last = _WORKER.get("last_page")
    if last is not None and last[0] == sha and last[1] == index - 1:
        return last[2], last[3]
    from .. import payload as payload_mod
    from . import locate
    from .engine import _is_ours
    image = _reader_for(path, kind).page(index - 1).image
    codes, _ = locate.find_codes(image, lambda text: _is_ours(text) or payload_mod.is_cover(text))
    for code in codes:
        try:
            if payload_mod.is_cover(code.text):
                payload_mod.verify_cover(code.text, _WORKER["secret"], _WORKER["kit_id"])
                return COVER + code.text, image
            sp = payload_mod.verify(code.text, _WORKER["secret"], _WORKER["kit_id"])
        except PayloadError:
            continue
        if _WORKER["geometry_for"](sp.sheet_id) is not None:
            return sp.sheet_id, image
    return None, None


def _result_dict(result: Any, file_dpi: float | None) -> dict[str, Any]:
    # Crops: the review station and learn.py cut them on demand from the archived original (crops.py);
    # only inked fields nobody types keep theirs (signatures, ink-only and image-only fields: the crop
    # is what stays of the writing).
    readings, crops = [], []
    for r in result.readings or []:
        readings.append({"field": r.field, "type": r.type, "raw": _raw_json(r.raw), "value": _jsonable(r.value),
                         "confidence": float(r.confidence), "status": r.status, "reason": r.reason,
                         "ink": None if r.ink is None else bool(r.ink), "crop_path": None})
        kept = r.type in read.HANDWRITTEN and read.transcribe_mode(r.raw, r.type) != "yes"
        crops.append(r.crop if kept and r.ink else None)
    transform = result.transform
    if transform is not None:
        transform = np.asarray(transform, dtype=float).tolist()
    return {"status": result.status, "reason": result.reason, "detail": result.detail,
            "payload_text": result.payload_text, "sheet_id": result.sheet_id, "template": result.template,
            "version": result.version, "page": result.page, "pages": result.pages,
            "orientation": result.orientation, "transform": transform,
            "fit_error_mm": None if result.fit_error_mm is None else float(result.fit_error_mm),
            "dpi": float(result.dpi) if result.dpi else file_dpi, "quality": _jsonable(result.quality or {}),
            "readings": readings, "_crops": crops}


def _unreadable(exc: BaseException, dpi: float | None) -> dict[str, Any]:
    tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return {"status": "quarantined", "reason": "unreadable", "detail": detail("reader_failed", error=tb),
            "payload_text": None, "sheet_id": None, "template": None, "version": None, "page": None,
            "pages": None, "orientation": None, "transform": None, "fit_error_mm": None, "dpi": dpi,
            "quality": {"error": tb}, "readings": [], "_crops": []}


def _save_crops(kit_path: Path, folder: Path, out: dict[str, Any]) -> None:
    """The crops kept at scan time: inked fields nobody types (transcribe ink-only or no). Every
    other field is cut from the archived original when a person opens it or when the kit learns its
    ward's digits (scan/crops.py)."""
    outputs = OutputFiles()
    for reading, crop in zip(out["readings"], out.pop("_crops")):
        if crop is not None:
            rel = outputs.claim(folder / file_name("", reading["field"], ".png"), f"field {reading['field']}")
            reading["crop_path"] = _save_png(kit_path, rel, crop)


# The page image is for a person to look at (made on demand by pageview.py; the engine measured the
# page on the original; review crops are cut from the archived original). On an office scan the paper's grain
# is most of what a PNG has to encode: 430 KiB and ~15 ms a page at 100 dpi. Paper within 8 % of
# the ink's contrast of the paper level is shown as white and the other greys are kept in steps of
# 4 levels (the eye sees neither; faint pencil, 18 % and darker, stays): ~110 KiB and ~6 ms.
PAPER_WHITE = 0.08
GREY_STEP = 4
MIN_PAGE_SPAN = 60.0  # paper minus ink, in grey levels, taken as at least this (a nearly blank page)


def viewing_copy(image: np.ndarray) -> np.ndarray:
    """The page image as stored for people: the paper's grain flattened to white, greys in steps."""
    return cv2.LUT(np.ascontiguousarray(image), _viewing_lut(image))


def viewing_png(image: np.ndarray) -> bytes:
    """encode_png(viewing_copy(image)) of a 2-D uint8 image, the viewing copy made straight into
    the PNG's rows (one page-sized copy less: ~0.5 ms a page image)."""
    if image.ndim != 2 or image.dtype != np.uint8 or not image.size:
        return encode_png(viewing_copy(image))
    h, w = image.shape
    rows = np.empty((h, w + 1), np.uint8)
    rows[:, 0] = 0  # filter type None on every row
    cv2.LUT(np.ascontiguousarray(image), _viewing_lut(image), dst=rows[:, 1:])
    return _png_of_rows(rows, w, h)


def _viewing_lut(image: np.ndarray) -> np.ndarray:
    sample = image[::8, ::8]
    paper, black = (float(v) for v in np.percentile(sample, [90, 0.5]))  # (each as np.percentile(sample, q))
    white_from = paper - PAPER_WHITE * max(paper - black, MIN_PAGE_SPAN)
    grey = np.arange(256)
    lut = np.where(grey >= white_from, 255, np.minimum(grey // GREY_STEP * GREY_STEP + GREY_STEP // 2, 255))
    return lut.astype(np.uint8)


# Measured on the viewing copies of 98 office ward-pack and MAR pages at 100 dpi (lossless, the same
# pixels): no filter + RLE 3.6 ms CPU and 89 KiB; the "up" filter 4.7 ms and 107 KiB; OpenCV's
# default filters 10 ms and 104 KiB (the flattened paper is long runs of white: nothing to predict).
# The same stream (no filter, deflate level 1, run-length matches) made with zlib-ng when it is
# installed: ~1.8 ms instead of ~3.7 ms a page image, the same pixels (stdlib zlib otherwise).
_MADE_DIRS: set[Path] = set()
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
try:
    from zlib_ng import zlib_ng as _deflate
except ImportError:  # zlib-ng is an install requirement; without it stdlib zlib: the same pixels, ~2x the CPU
    import zlib as _deflate
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def encode_png(image: np.ndarray) -> bytes:
    """A 2-D uint8 grey image as an 8-bit greyscale PNG (each row unfiltered, deflate level 1 with
    run-length matches: PNG_PARAMS). Other images go through OpenCV."""
    if image.ndim != 2 or image.dtype != np.uint8 or not image.size:
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(image), PNG_PARAMS)
        if not ok:
            raise RuntimeError("could not encode a PNG image")
        return buf.tobytes()
    h, w = image.shape
    rows = np.empty((h, w + 1), np.uint8)
    rows[:, 0] = 0  # filter type None on every row
    rows[:, 1:] = image
    return _png_of_rows(rows, w, h)


def _png_of_rows(rows: np.ndarray, w: int, h: int) -> bytes:
    """The PNG of h rows of a w-pixel grey image, each row its filter byte (0) and its pixels."""
    packer = _deflate.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    data = packer.compress(rows.data) + packer.flush()
    return b"".join((_PNG_SIGNATURE, _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)),
                     _png_chunk(b"IDAT", data), _png_chunk(b"IEND", b"")))


def _save_png(kit_path: Path, rel: Path, image: np.ndarray | bytes) -> str:
    """Write an image (or a PNG already encoded) to KIT/rel: temp file, then rename."""
    dest = kit_path / rel
    if dest.parent not in _MADE_DIRS:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _MADE_DIRS.add(dest.parent)
    buf = image if isinstance(image, bytes) else encode_png(image)
    tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
    try:
        try:
            tmp.write_bytes(buf)
        except FileNotFoundError:  # the folder went away since we made it (a restore, a cleanup)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(buf)
        os.replace(tmp, dest)
    except BaseException:  # a full disk: no half-written image stays behind
        tmp.unlink(missing_ok=True)
        raise
    return rel.as_posix()


def _raw_json(raw: Any) -> str:
    """The raw measurements as JSON text, made in the worker (numpy scalars and arrays allowed)."""
    return _RAW_ENCODER(raw if raw is not None else {})


def _numpy_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# json.dumps(x, ensure_ascii=False, sort_keys=True, default=_numpy_default) makes an encoder per call
# (~45 fields a page): one encoder for all, the same text
_RAW_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=_numpy_default).encode


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
