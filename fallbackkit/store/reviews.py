"""Reads of people's decisions for the screens that show them (history, undo notes, recent
decisions). The rule for which decision counts is `store/readings.py`; writing one is
`store/decisions.py`."""
from __future__ import annotations

import json
from typing import Any

from .transactions import raw_connection


def history(conn: Any, reading_id: int) -> list[dict[str, Any]]:
    """Every review row of a reading, undos included, oldest first."""
    return [{"review_id": h[0], "decision": h[1], "value": json.loads(h[2]) if h[2] is not None else None,
             "actor": h[3], "at": h[4], "undoes": h[5]}
            for h in raw_connection(conn).execute(
                "SELECT review_id, decision, value, actor, at, undoes FROM reviews"
                " WHERE reading_id = ? ORDER BY review_id", [reading_id])]


def returned_by_undo(conn, reading_id: int) -> dict[str, Any] | None:
    """The undo that sent a reading back to the queue (who, when, why), if one did."""
    row = raw_connection(conn).execute(
        "SELECT u.actor, u.at, u.note, r.actor, r.decision, r.value FROM reviews u JOIN reviews r"
        " ON r.review_id = u.undoes WHERE u.reading_id = ? AND u.decision = 'undo' ORDER BY u.review_id DESC LIMIT 1",
        [reading_id]).fetchone()
    if row is None:
        return None
    return {"by": row[0], "at": row[1], "note": row[2], "decided_by": row[3], "decision": row[4],
            "value": json.loads(row[5]) if row[5] is not None else None}


def standing_decision_times(conn, actor: str, limit: int = 2000) -> list[str]:
    """When actor's standing decisions (not undos, not undone) were made, newest first."""
    return [r[0] for r in raw_connection(conn).execute(
        "SELECT at FROM reviews WHERE actor = ? AND decision != 'undo' AND NOT EXISTS"
        " (SELECT 1 FROM reviews u WHERE u.undoes = reviews.review_id) ORDER BY review_id DESC LIMIT ?",
        [actor, limit])]


def recent_decisions(conn, limit: int = 200) -> list[dict[str, Any]]:
    """The latest decisions of everyone, newest first, with the field they were about and the digit
    suggestion shown (whether it was pre-filled in full or in part, and the outcome)."""
    rows = raw_connection(conn).execute(
        "SELECT r.review_id, r.reading_id, r.decision, r.value, r.actor, r.at, r.undoes, rd.sheet_id, rd.field,"
        " EXISTS (SELECT 1 FROM reviews x WHERE x.undoes = r.review_id), c.template, c.version,"
        " r.suggestion, r.suggestion_outcome, r.prefilled FROM reviews r"
        " JOIN readings rd ON rd.reading_id = r.reading_id JOIN captures c ON c.capture_id = rd.capture_id"
        " ORDER BY r.review_id DESC LIMIT ?", [limit]).fetchall()
    return [{"review_id": r[0], "reading_id": r[1], "decision": r[2],
             "value": json.loads(r[3]) if r[3] is not None else None, "actor": r[4], "at": r[5],
             "undoes": r[6], "sheet_id": r[7], "field": r[8], "undone": bool(r[9]),
             "template": r[10], "version": r[11], "suggestion": r[12], "suggestion_outcome": r[13],
             "prefilled": r[14]} for r in rows]
