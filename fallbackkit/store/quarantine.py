"""Quarantined pages: the one listing the CLI, the review station, reconcile and the report share,
and the record of a clerk identifying a page (`quarantine_assignments`)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import Conflict, NotFound
from .kit import now_iso
from .transactions import raw_connection


@dataclass(frozen=True, slots=True)
class QuarantineItem:
    """A page the scan could not place, with why, where it came from and who identified it (if anyone)."""
    quarantine_id: int
    capture_id: int
    reason: str
    detail: str | None
    payload: str | None         # the sheet code's text when it was readable (forged, foreign, poor marks)
    created_at: str
    file: str | None            # the input file's first path
    sha256: str | None
    page_index: int             # 1-based page within the input file
    image_path: str | None      # the page image, relative to the kit
    archive_path: str | None    # the archived original, relative to the kit
    kind: str | None            # the input file's kind (pdf, tiff, ...)
    assigned_sheet_id: str | None
    assigned_capture_id: int | None
    detail_codes: dict[str, Any] | None = None  # the detail's code and parameters (scan.reasons.parse_detail)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_SELECT = (
    "SELECT q.quarantine_id, q.capture_id, q.reason, q.detail, q.payload, q.created_at, f.first_path, f.sha256,"
    " c.page_index, c.image_path, f.archive_path, f.kind, a.sheet_id, a.capture_id, q.detail_codes"
    " FROM quarantine q JOIN captures c ON c.capture_id = q.capture_id"
    " LEFT JOIN input_files f ON f.sha256 = c.file_sha256"
    " LEFT JOIN quarantine_assignments a ON a.quarantine_id = q.quarantine_id")


def list_quarantine(conn: Any, include_assigned: bool = False) -> list[QuarantineItem]:
    """Quarantined pages nobody has identified yet (with include_assigned, every one), oldest first."""
    where = "" if include_assigned else " WHERE a.quarantine_id IS NULL"
    return [_item(row) for row in raw_connection(conn).execute(_SELECT + where + " ORDER BY q.quarantine_id")]


def _item(row: tuple) -> QuarantineItem:
    return QuarantineItem(*row[:-1], json.loads(row[-1]) if row[-1] else None)


def get_quarantined(conn: Any, quarantine_id: int) -> QuarantineItem | None:
    row = raw_connection(conn).execute(_SELECT + " WHERE q.quarantine_id = ?", [quarantine_id]).fetchone()
    return _item(row) if row else None


def record_assignment(conn: Any, item: QuarantineItem, sheet_id: str, capture_id: int, actor: str) -> None:
    """A clerk identified the page as sheet_id; capture_id is the page read as that sheet. Call it
    inside the `atomic()` block that stored that capture."""
    conn = raw_connection(conn)
    done = conn.execute("SELECT sheet_id, capture_id FROM quarantine_assignments WHERE quarantine_id = ?",
                        [item.quarantine_id]).fetchone()
    if done is not None:
        raise Conflict(f"quarantined page {item.quarantine_id} is already assigned to sheet {done[0]} "
                       f"(capture {done[1]})")
    conn.execute("INSERT INTO quarantine_assignments (quarantine_id, sheet_id, capture_id, actor, at)"
                 " VALUES (?,?,?,?,?)", [item.quarantine_id, sheet_id, capture_id, actor, now_iso()])


def require_quarantined(conn: Any, quarantine_id: int) -> QuarantineItem:
    item = get_quarantined(conn, quarantine_id)
    if item is None:
        raise NotFound(f"no quarantined page {quarantine_id}", hint="see `fallbackkit quarantine list`")
    return item
