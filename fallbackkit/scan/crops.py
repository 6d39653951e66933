"""A field's image for the review station, cut when a person asks for it, from the archived original.

Scanning used to encode a PNG crop for every field a person would look at (about 13 per page of a
ward pack, a quarter of the scan time). The original file is archived byte for byte and each
capture keeps its page transform, so the same crop (150 dpi, the engine's own framing) is cut again
on demand instead: a person looks at one field at a time, a decode costs tens of milliseconds.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import cv2
import numpy as np

from . import read
from .ingest import UnreadableFile, load_page


def field_crop_png(conn: sqlite3.Connection, kit_path: Path, reading_id: int) -> bytes | None:
    """PNG of a reading's field as the engine framed it, or None (no original, no transform)."""
    crop = field_crop_image(conn, kit_path, reading_id)
    if crop is None:
        return None
    ok, buf = cv2.imencode(".png", crop)
    return buf.tobytes() if ok else None


def field_crop_image(conn: sqlite3.Connection, kit_path: Path, reading_id: int,
                     pages: dict | None = None) -> np.ndarray | None:
    """A reading's field cut from the archived original, as the engine framed it at scan time (the
    same pixels: the same page, transform and patch), or None. pages: a dict the caller keeps to
    decode each archived page once when it cuts many fields (learn.py)."""
    row = conn.execute(
        "SELECT r.field, c.page_index, c.transform, f.archive_path, f.kind, l.geometry FROM readings r"
        " JOIN captures c ON c.capture_id = r.capture_id JOIN input_files f ON f.sha256 = c.file_sha256"
        " LEFT JOIN sheets s ON s.sheet_id = c.sheet_id LEFT JOIN layouts l ON l.hash = s.layout_hash"
        " WHERE r.reading_id = ?", [reading_id]).fetchone()
    if row is None or not row[2] or not row[3] or not row[5]:
        return None
    name, page_index, transform, archive, kind, geometry = row
    field = next((f for f in json.loads(geometry)["fields"] if f["name"] == name), None)
    path = (Path(kit_path) / archive).resolve()
    if field is None or Path(kit_path).resolve() not in path.parents:
        return None
    key = (str(path), page_index)
    image = pages.get(key) if pages is not None else None
    if image is None:
        from .pageview import DECODE_LOCK  # PDFium is not thread-safe; the station serves in threads
        try:
            with DECODE_LOCK:
                image = load_page(path, page_index, kind).image
        except (UnreadableFile, OSError):
            return None
        if pages is not None:
            pages.clear()  # one page at a time: readings are taken capture by capture
            pages[key] = image
    hmat = np.array(json.loads(transform), float)
    return field_crop(image, hmat, field)


def field_crop(image: np.ndarray, hmat: np.ndarray, field: dict) -> np.ndarray:
    """The engine's framing: a handwriting box with 1.5 mm around it, mark boxes with their labels."""
    if field["type"] in read.HANDWRITTEN:
        x, y, w, h = field["box_mm"]
        return read.patch(image, hmat, x - 1.5, y - 1.5, w + 3, h + 3, read.CROP_PX_PER_MM)
    from .engine import _boxes, _field_crop
    return _field_crop(image, hmat, [b["box_mm"] for b in _boxes(field)])


__all__ = ["field_crop", "field_crop_image", "field_crop_png"]
