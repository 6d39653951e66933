"""People's decisions on readings, identity links and re-entry marks: append-only, audited.

These are the functions the CLI, the review station and the exporters share, so that a decision
made anywhere means the same everywhere. Nothing is overwritten: an undo is a new row.
"""
from __future__ import annotations

import json
from typing import Any

from ..errors import BadInput, Conflict, NotFound
from . import readings
from .audit import append_audit
from .kit import now_iso
from .transactions import atomic, raw_connection

DECISIONS = ("confirm", "correct", "transcribe", "illegible")
NOTE_MAX = 500          # characters of a note on a decision
ANY = object()          # record_review(expect_review_id=ANY): decide whatever was decided before

# A decision's check ("nobody decided this meanwhile") and its insert are one `atomic()` block
# (store/transactions.py): BEGIN IMMEDIATE holds the write lock from the first statement, so two
# connections cannot both read before either writes; inside a caller's transaction it is a savepoint.


def _reading(conn, reading_id: int) -> readings.Reading:
    found = readings.effective_reading(conn, reading_id)
    if found is None:
        raise NotFound(f"no reading {reading_id}")
    return found


def current_review(conn, reading_id: int) -> dict[str, Any] | None:
    """The review that counts for a reading (`store.readings.current_review`), as the review
    station's JSON shows it."""
    review = readings.current_review(conn, reading_id)
    return review.as_dict() if review is not None else None


def record_review(conn, reading_id: int, decision: str, value: Any, actor: str,
                  note: str | None = None, expect_review_id: Any = ANY,
                  suggestion: dict[str, Any] | None = None) -> int:
    """A person confirms, corrects or transcribes a reading (or calls it illegible).

    expect_review_id is the review that counted when the person looked (None: none yet). If
    another decision counts by now, nothing is written and Conflict names who decided: the check
    and the insert are one atomic step, so of two people deciding at once exactly one wins.
    suggestion: the digit suggestion shown with the reading (`scan/suggest.py`: its text, whether it
    was pre-filled in full or in part, and `pattern`, what was in the box). The review records the
    suggestion, `prefilled` (0 none, 1 the whole suggestion, 2 only its sure boxes) and the outcome:
    `accepted` (the value is the suggestion), `completed` (partly pre-filled: the clerk kept every
    pre-filled box and typed other digits than suggested in the rest) or `corrected` (anything else:
    for a pre-fill, a pre-filled digit was changed)."""
    conn = raw_connection(conn)
    if decision not in DECISIONS:
        raise BadInput(f"decision must be one of {', '.join(DECISIONS)}")
    if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX):
        raise BadInput(f"a note is text of at most {NOTE_MAX} characters")
    with atomic(conn):
        reading = _reading(conn, reading_id)
        before = reading.review
        if expect_review_id is not ANY and reading.review_id != expect_review_id:
            raise AlreadyDecided(f"reading {reading_id} was decided meanwhile by "
                                 f"{before.actor if before else 'someone (since undone)'}",
                                 hint="look at it again before deciding", by=reading.reviewer)
        if decision == "confirm":
            value = reading.value
        at = now_iso()
        shown = suggestion.get("suggestion") if suggestion else None
        if shown is None and suggestion and suggestion.get("partial") and suggestion.get("pattern"):
            shown = suggestion["pattern"]  # a box held something else: no suggestion, its sure boxes were shown
        prefilled = None if shown is None else 1 if suggestion.get("prefill") else 2 if suggestion.get("partial") else 0
        outcome = None if shown is None else ("accepted" if value == shown else
                                              "completed" if prefilled == 2 and suggestion.get("kept") else "corrected")
        cur = conn.execute(
            "INSERT INTO reviews (reading_id, decision, value, actor, at, note, suggestion, suggestion_outcome,"
            " prefilled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [reading_id, decision, json.dumps(value, ensure_ascii=False), actor, at, note, shown, outcome,
             prefilled])
        append_audit(conn, actor, f"review.{decision}", f"reading:{reading_id}",
                     {"machine": reading.machine_value, "review": before.value if before else None},
                     {"value": value, "sheet_id": reading.sheet_id, "field": reading.field, "note": note})
        conn.execute("DELETE FROM review_claims WHERE reading_id = ?", [reading_id])  # a claim ends on decision
        return cur.lastrowid


class AlreadyDecided(Conflict):
    """Someone else's decision counts by now; carries who (None when the decision was undone)."""

    def __init__(self, message: str, *, hint: str | None = None, by: str | None = None):
        super().__init__(message, hint=hint)
        self.by = by


def undo_review(conn, review_id: int, actor: str, note: str | None = None) -> int:
    """Undo a decision (a supervisor's action in the review station): a new row, never a delete."""
    conn = raw_connection(conn)
    if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX):
        raise BadInput(f"a note is text of at most {NOTE_MAX} characters")
    with atomic(conn):
        row = conn.execute("SELECT reading_id, decision, value, actor FROM reviews WHERE review_id = ?",
                           [review_id]).fetchone()
        if row is None:
            raise NotFound(f"no review {review_id}")
        if row[1] == "undo":
            raise BadInput(f"review {review_id} is itself an undo")
        if conn.execute("SELECT 1 FROM reviews WHERE undoes = ?", [review_id]).fetchone():
            raise Conflict(f"review {review_id} is already undone")
        cur = conn.execute(
            "INSERT INTO reviews (reading_id, decision, value, actor, at, note, undoes) VALUES (?, 'undo', NULL, ?, ?, ?, ?)",
            [row[0], actor, now_iso(), note, review_id])
        append_audit(conn, actor, "review.undo", f"review:{review_id}",
                     {"decision": row[1], "value": json.loads(row[2]) if row[2] else None, "by": row[3]},
                     {"reading_id": row[0], "note": note})
        return cur.lastrowid


def _own_undoable(conn, actor: str, since: Any, review_id: int | None = None) -> dict[str, Any] | None:
    import datetime as _dt
    sql = ("SELECT review_id, reading_id, decision, value, at FROM reviews WHERE actor = ? AND decision != 'undo'"
           " AND NOT EXISTS (SELECT 1 FROM reviews u WHERE u.undoes = reviews.review_id)")
    params: list[Any] = [actor]
    if review_id is not None:
        sql += " AND review_id = ?"
        params.append(review_id)
    rows = conn.execute(sql + " ORDER BY review_id DESC LIMIT 20", params).fetchall()
    counting = readings.current_reviews(conn, [row[1] for row in rows])
    for rid, reading_id, decision, value, at in rows:
        if _dt.datetime.fromisoformat(at) < since:
            return None
        counts = counting.get(reading_id)
        if counts is not None and counts.review_id == rid:
            return {"review_id": rid, "reading_id": reading_id, "decision": decision,
                    "value": json.loads(value) if value is not None else None, "at": at}
        if review_id is not None:
            return None
    return None


def last_own_review(conn, actor: str, since: Any) -> dict[str, Any] | None:
    """The actor's latest decision made at or after `since` (an aware datetime: the session's start)
    that still counts for its reading, or None. Nobody else has decided that reading after it."""
    conn = raw_connection(conn)
    return _own_undoable(conn, actor, since)


SELF_UNDO_NOTE = "undone by the person who decided it"  # the audit's note of an undo of one's own decision


def undo_own_review(conn, actor: str, since: Any, review_id: int | None = None,
                    note: str | None = None) -> dict[str, Any]:
    """A person takes back their own decision of this session (the latest one, or review_id):
    audited like a supervisor's undo. Refused (Conflict) when it is not theirs, older than the
    session, already undone, or someone decided the reading since."""
    conn = raw_connection(conn)
    with atomic(conn):
        own = _own_undoable(conn, actor, since, review_id)
        if own is None:
            raise Conflict("there is no decision of yours from this session left to undo"
                           if review_id is None else
                           f"review {review_id} is not a decision of yours from this session that still counts",
                           hint="a supervisor can undo older decisions on the Decisions screen")
        undo_review(conn, own["review_id"], actor, note or SELF_UNDO_NOTE)
    return own


def effective_reading(conn, reading_id: int) -> dict[str, Any]:
    """Machine reading plus the review that counts: value, whether it is resolved, and by whom."""
    conn = raw_connection(conn)
    r = _reading(conn, reading_id)
    return {"reading_id": r.reading_id, "sheet_id": r.sheet_id, "field": r.field, "type": r.type,
            "value": r.value, "status": r.status, "resolved": r.resolved, "source": r.source,
            "reviewer": r.reviewer, "reviewed_at": r.reviewed_at}


def current_links(conn) -> dict[str, dict[str, Any]]:
    """downtime MRN -> the identity link that counts (the latest one not revoked)."""
    conn = raw_connection(conn)
    revoked = {r[0] for r in conn.execute("SELECT revokes FROM identity_links WHERE revokes IS NOT NULL")}
    links: dict[str, dict[str, Any]] = {}
    for lid, dt, real, actor, reason, at in conn.execute(
            "SELECT id, downtime_mrn, real_mrn, actor, reason, at FROM identity_links"
            " WHERE revokes IS NULL ORDER BY id"):
        if lid in revoked:
            continue
        links[dt] = {"id": lid, "downtime_mrn": dt, "real_mrn": real, "actor": actor, "reason": reason, "at": at}
    return links
