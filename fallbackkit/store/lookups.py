"""Small typed reads of captures, readings and reviews that the review station's screens make:
why a reading came back, a person's decision times, the latest decisions, where an image is.

They live here, with the tables (store/ owns captures, readings, reviews and quarantine), so that
no screen queries those tables itself."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .readings import loads
from .transactions import raw_connection


@dataclass(frozen=True, slots=True)
class Returned:
    """The undo that sent a reading back to the queue, and the decision it took back."""
    by: str
    at: str
    note: str | None
    decided_by: str
    decision: str
    value: Any


def returned_by_undo(conn: Any, reading_id: int) -> Returned | None:
    row = raw_connection(conn).execute(
        "SELECT u.actor, u.at, u.note, r.actor, r.decision, r.value FROM reviews u JOIN reviews r"
        " ON r.review_id = u.undoes WHERE u.reading_id = ? AND u.decision = 'undo' ORDER BY u.review_id DESC LIMIT 1",
        [reading_id]).fetchone()
    return Returned(row[0], row[1], row[2], row[3], row[4], loads(row[5])) if row else None


def standing_decision_times(conn: Any, actor: str, limit: int = 2000) -> list[str]:
    """When actor's decisions that still count (not undos, not undone) were made, newest first."""
    return [r[0] for r in raw_connection(conn).execute(
        "SELECT at FROM reviews WHERE actor = ? AND decision != 'undo' AND NOT EXISTS"
        " (SELECT 1 FROM reviews u WHERE u.undoes = reviews.review_id) ORDER BY review_id DESC LIMIT ?",
        [actor, limit])]


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One row of `reviews` (undos included) with the field and form it was about."""
    review_id: int
    reading_id: int
    decision: str
    value: Any
    actor: str
    at: str
    undoes: int | None
    sheet_id: str
    field: str
    undone: bool
    template: str | None
    version: int | None


def recent_decisions(conn: Any, limit: int = 200) -> list[DecisionRow]:
    """Everyone's latest decisions, newest first."""
    rows = raw_connection(conn).execute(
        "SELECT r.review_id, r.reading_id, r.decision, r.value, r.actor, r.at, r.undoes, rd.sheet_id, rd.field,"
        " EXISTS (SELECT 1 FROM reviews x WHERE x.undoes = r.review_id), c.template, c.version FROM reviews r"
        " JOIN readings rd ON rd.reading_id = r.reading_id JOIN captures c ON c.capture_id = rd.capture_id"
        " ORDER BY r.review_id DESC LIMIT ?", [limit]).fetchall()
    return [DecisionRow(r[0], r[1], r[2], loads(r[3]), r[4], r[5], r[6], r[7], r[8], bool(r[9]), r[10], r[11])
            for r in rows]


def reading_crop(conn: Any, reading_id: int) -> tuple[bool, str | None]:
    """(the reading exists, the crop written at scan time, relative to the kit, or None)."""
    row = raw_connection(conn).execute("SELECT crop_path FROM readings WHERE reading_id = ?", [reading_id]).fetchone()
    return (row is not None, row[0] if row else None)


def capture_image(conn: Any, capture_id: int) -> tuple[bool, str | None]:
    """(the capture exists, its archived page image, relative to the kit)."""
    row = raw_connection(conn).execute("SELECT image_path FROM captures WHERE capture_id = ?", [capture_id]).fetchone()
    return (row is not None, row[0] if row else None)


def capture_times(conn: Any, capture_ids: Iterable[int]) -> dict[int, str]:
    """capture id -> when it was scanned."""
    ids = list(capture_ids)
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    return dict(raw_connection(conn).execute(
        f"SELECT capture_id, captured_at FROM captures WHERE capture_id IN ({marks})", ids).fetchall())
