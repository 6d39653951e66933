"""Captures (one scanned image of one page) and the readings stored with them.

`scan` reads a page in a worker and hands the result here; this module alone writes `captures`,
`readings` and `quarantine` rows for a page, in one `atomic()` block, so that a page is stored
whole or not at all and a second scan of the same file stores nothing twice.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ..errors import NotFound
from .kit import now_iso
from .transactions import atomic, raw_connection
from ..scan.reasons import data as reason_data, detail_data  # the one owner of reason codes (a plain module)

PAGE_STATUSES = ("read", "blank", "cover")  # anything else the reader returns is quarantined


@dataclass(frozen=True, slots=True)
class NewReading:
    """What the reader measured for one field, before it is stored."""
    field: str
    type: str
    raw: str                    # JSON text of the measures
    value: Any
    confidence: float
    status: str                 # accepted | review
    reason: str | None
    ink: bool | None
    crop_path: str | None = None


@dataclass(frozen=True, slots=True)
class ScannedPage:
    """One page as the reader left it: what `store_page` writes."""
    sha: str                    # the input file's SHA-256
    index: int                  # 1-based page within the file
    status: str                 # read | blank | cover | a quarantine reason's status
    sheet_id: str | None
    template: str | None
    version: int | None
    page: int | None
    pages: int | None
    orientation: int | None
    transform: Any
    fit_error_mm: float | None
    dpi: float | None
    quality: Any
    image_path: str | None
    width_px: int | None
    height_px: int | None
    reason: str | None = None
    detail: str | None = None
    payload_text: str | None = None
    readings: tuple[NewReading, ...] = field(default_factory=tuple)

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> "ScannedPage":
        """From the page task's result (a plain dict: it crosses the worker process boundary)."""
        return cls(result["sha"], result["index"], result["status"], result["sheet_id"], result["template"],
                   result["version"], result["page"], result["pages"], result["orientation"],
                   result["transform"], result["fit_error_mm"], result["dpi"], result["quality"],
                   result["image_path"], result["width_px"], result["height_px"], result["reason"],
                   result["detail"], result["payload_text"],
                   tuple(NewReading(r["field"], r["type"], r["raw"], r["value"], r["confidence"], r["status"],
                                    r["reason"], r["ink"], r.get("crop_path")) for r in result["readings"]))


@dataclass(frozen=True, slots=True)
class StoredPage:
    """What storing a page made: its capture, and a quarantine row or readings."""
    capture_id: int
    quarantine_id: int | None
    sheet_id: str | None
    duplicate_of: int | None    # the first read capture of the same sheet, if any
    accepted: int
    review: int
    blank: bool


@dataclass(frozen=True, slots=True)
class CaptureSummary:
    """What a capture holds: its sheet, an earlier capture of the same sheet, fields read, to review."""
    capture_id: int
    sheet_id: str | None
    duplicate_of: int | None
    fields: int
    to_review: int


_ENCODE = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode  # json.dumps's text, one encoder for all


def _dumps(value: Any) -> str | None:
    return None if value is None else _ENCODE(value)


def store_page(conn: Any, page: ScannedPage, source: str = "scan",
               sheet_id: str | None = None) -> StoredPage | None:
    """One page, all or nothing: its capture, its readings, its quarantine row. None when this page
    of this file was already stored from this source.

    sheet_id: the sheet a person said the page is (a quarantined page assigned by a clerk). A cover
    sheet is stored as a capture with status 'cover' (nothing read); a blank page (or a back showing
    its front through the paper) as 'blank', never matched to a sheet."""
    try:
        return _store_page(raw_connection(conn), page, source, sheet_id)
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" not in str(exc):
            raise
        return None  # another scan of the same file, running at the same time, stored this page first


def _store_page(conn: sqlite3.Connection, page: ScannedPage, source: str,
                sheet_id: str | None) -> StoredPage | None:
    quarantined = page.status not in PAGE_STATUSES
    unread = page.status != "read"
    sheet = None if unread else (sheet_id or page.sheet_id)
    with atomic(conn):
        if conn.execute("SELECT 1 FROM captures WHERE file_sha256 = ? AND page_index = ? AND source = ?",
                        [page.sha, page.index, source]).fetchone():
            return None
        form_id = duplicate_of = None
        if sheet:
            row = conn.execute("SELECT form_id FROM sheets WHERE sheet_id = ?", [sheet]).fetchone()
            form_id = row[0] if row else None
            row = conn.execute("SELECT capture_id FROM captures WHERE sheet_id = ? AND status = 'read'"
                               " ORDER BY capture_id LIMIT 1", [sheet]).fetchone()
            duplicate_of = row[0] if row else None
        cur = conn.execute(
            "INSERT INTO captures (file_sha256, page_index, source, status, sheet_id, form_id, template, version,"
            " page, pages, orientation, transform, fit_error_mm, dpi, quality, image_path, width_px, height_px,"
            " duplicate_of, captured_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [page.sha, page.index, source, "quarantined" if quarantined else page.status, sheet,
             form_id, None if unread else page.template, None if unread else page.version,
             None if unread else page.page, None if unread else page.pages,
             page.orientation, _dumps(page.transform), page.fit_error_mm, page.dpi,
             _dumps(page.quality), page.image_path, page.width_px, page.height_px,
             duplicate_of, now_iso()])
        capture_id = cur.lastrowid
        accepted = review = 0
        if sheet:
            conn.executemany(
                "INSERT INTO readings (capture_id, sheet_id, field, type, raw, value, confidence, status, reason,"
                " reason_codes, ink, crop_path) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [[capture_id, sheet, r.field, r.type, r.raw, _dumps(r.value), r.confidence, r.status, r.reason,
                  reason_data(r.reason), None if r.ink is None else int(r.ink), r.crop_path]
                 for r in page.readings])
            accepted = sum(r.status == "accepted" for r in page.readings)
            review = len(page.readings) - accepted
        quarantine_id = None
        if quarantined:
            reason = page.reason or "unreadable"
            cur = conn.execute("INSERT INTO quarantine (capture_id, reason, reason_codes, detail, detail_codes,"
                               " payload, created_at) VALUES (?,?,?,?,?,?,?)",
                               [capture_id, reason, reason_data(reason, quarantine=True), page.detail,
                                detail_data(page.detail), page.payload_text, now_iso()])
            quarantine_id = cur.lastrowid
    return StoredPage(capture_id, quarantine_id, sheet, duplicate_of, accepted, review, page.status == "blank")


def capture_summary(conn: Any, capture_id: int) -> CaptureSummary:
    row = raw_connection(conn).execute(
        "SELECT sheet_id, duplicate_of, (SELECT COUNT(*) FROM readings WHERE capture_id = c.capture_id),"
        " (SELECT COUNT(*) FROM readings WHERE capture_id = c.capture_id AND status = 'review')"
        " FROM captures c WHERE capture_id = ?", [capture_id]).fetchone()
    if row is None:
        raise NotFound(f"no capture {capture_id}")
    return CaptureSummary(capture_id, row[0], row[1], row[2], row[3])


def pages_stored(conn: Any, sha: str, source: str = "scan") -> set[int]:
    """The page indexes of a file already stored (a re-run reads only the rest)."""
    return {r[0] for r in raw_connection(conn).execute(
        "SELECT page_index FROM captures WHERE file_sha256 = ? AND source = ?", [sha, source])}


def count_pages_stored(conn: Any, sha: str, source: str = "scan") -> int:
    return raw_connection(conn).execute(
        "SELECT COUNT(*) FROM captures WHERE file_sha256 = ? AND source = ?", [sha, source]).fetchone()[0]


def crop_path(conn, reading_id: int) -> tuple[bool, str | None]:
    """(the reading exists, the crop written at scan time or None)."""
    row = raw_connection(conn).execute("SELECT crop_path FROM readings WHERE reading_id = ?", [reading_id]).fetchone()
    return (row is not None, row[0] if row else None)


def page_image_path(conn, capture_id: int) -> tuple[bool, str | None]:
    """(the capture exists, where its page image is cached relative to the kit: scan/pageview.py
    makes the file from the archived original the first time someone asks for it)."""
    row = raw_connection(conn).execute("SELECT image_path FROM captures WHERE capture_id = ?", [capture_id]).fetchone()
    return (row is not None, row[0] if row else None)


def page_image_rel(sha: str, index: int, assigned: bool = False) -> str:
    """Where a capture's page image is (or would be) cached, relative to the kit: content-addressed
    by the input file and page, so re-imports and merged stations name the same file."""
    return f"pages/{sha[:2]}/{sha}-p{index}{'-assigned' if assigned else ''}.png"


@dataclass(frozen=True, slots=True)
class PageImageSource:
    """What it takes to make a capture's page image: the archived original's page and, for a page
    the reader located, its transform and sheet geometry (else the page is shown as stored)."""
    capture_id: int
    image_path: str | None      # the cached copy, relative to the kit
    transform: list | None      # 3x3, page mm -> original px
    dpi: float | None
    page_index: int
    archive_path: str | None
    kind: str | None
    geometry: dict | None
    width_px: int | None
    height_px: int | None


def page_image_source(conn, capture_id: int) -> PageImageSource:
    row = raw_connection(conn).execute(
        "SELECT c.capture_id, c.image_path, c.transform, c.dpi, c.page_index, f.archive_path, f.kind, l.geometry,"
        " c.width_px, c.height_px FROM captures c LEFT JOIN input_files f ON f.sha256 = c.file_sha256"
        " LEFT JOIN sheets s ON s.sheet_id = c.sheet_id LEFT JOIN layouts l ON l.hash = s.layout_hash"
        " WHERE c.capture_id = ?", [capture_id]).fetchone()
    if row is None:
        raise NotFound(f"no capture {capture_id}")
    cid, image, transform, dpi, index, archive, kind, geometry, w, h = row
    return PageImageSource(cid, image, json.loads(transform) if transform else None, dpi, index, archive, kind,
                           json.loads(geometry) if geometry else None, w, h)


def capture_times(conn, capture_ids: list[int]) -> dict[int, str]:
    """capture id -> when it was scanned."""
    marks = ",".join("?" * len(capture_ids))
    return dict(raw_connection(conn).execute(f"SELECT capture_id, captured_at FROM captures WHERE capture_id IN ({marks})",
                                    list(capture_ids)).fetchall())
