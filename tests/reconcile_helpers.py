"""Row-level fixtures for reconciliation tests: captures and readings as the scanner stores them.

`fake_scan` writes what the scan stage writes for one page: an input file, a 'read' capture of a
printed sheet, and one reading per field of the sheet's printed geometry (marks with their JSON
value, handwriting with its ink flag, waiting for transcription). Real print -> simulate -> scan
scenarios live in test_reconcile_scan.py; these fixtures let each rule be tested on its own.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any, Iterable

from fallbackkit.payload import SheetPayload
from fallbackkit.store.decisions import record_review
from fallbackkit.store.kit import now_iso

HANDWRITTEN = {"number", "datetime", "text", "initials", "signature"}
_counter = itertools.count(1)


def sheets_of(kit, form_id: str) -> list[str]:
    return [r[0] for r in kit.db.conn.execute("SELECT sheet_id FROM sheets WHERE form_id = ? ORDER BY page", [form_id])]


def forms_of(kit, template: str, ward: str | None = None) -> list[str]:
    sql, params = "SELECT form_id FROM forms WHERE template = ?", [template]
    if ward:
        sql += " AND ward = ?"
        params.append(ward)
    return [r[0] for r in kit.db.conn.execute(sql + " ORDER BY rowid", params)]


def geometry(kit, sheet_id: str) -> list[dict[str, Any]]:
    row = kit.db.conn.execute("SELECT l.geometry FROM sheets s JOIN layouts l ON l.hash = s.layout_hash"
                              " WHERE s.sheet_id = ?", [sheet_id]).fetchone()
    return json.loads(row[0])["fields"]


def _input_file(conn, tag: str) -> str:
    sha = hashlib.sha256(tag.encode()).hexdigest()
    conn.execute("INSERT OR IGNORE INTO input_files (sha256, size, kind, pages, status, first_path, started_at,"
                 " finished_at) VALUES (?, 1, 'png', 1, 'done', ?, ?, ?)", [sha, f"scans/{tag}.png", now_iso(), now_iso()])
    return sha


def fake_scan(kit, sheet_id: str, values: dict[str, Any] | None = None, *, unsure: Iterable[str] = (),
              reasons: dict[str, str] | None = None, tag: str | None = None) -> int:
    """Store one read capture of `sheet_id`. `values`: marks (True, option, [options]) and
    handwriting (any value = ink present). `unsure`: fields the machine sends to review."""
    values = values or {}
    unsure = set(unsure)
    reasons = reasons or {}
    conn = kit.db.conn
    s = conn.execute("SELECT form_id, template, version, page, pages FROM sheets WHERE sheet_id = ?", [sheet_id]).fetchone()
    with conn:
        sha = _input_file(conn, tag or f"scan-{sheet_id}-{next(_counter)}")
        cur = conn.execute(
            "INSERT INTO captures (file_sha256, page_index, source, status, sheet_id, form_id, template, version, page,"
            " pages, orientation, captured_at) VALUES (?, 1, 'scan', 'read', ?, ?, ?, ?, ?, ?, 0, ?)",
            [sha, sheet_id, s[0], s[1], s[2], s[3], s[4], now_iso()])
        cid = cur.lastrowid
        for f in geometry(kit, sheet_id):
            name, ftype = f["name"], f["type"]
            given = values.get(name)
            if ftype in HANDWRITTEN:
                ink = 1 if given not in (None, False, "") else 0
                value, status = None, ("review" if ink else "accepted")
                reason = "handwriting: transcribe" if ink else None
            else:
                ink = None
                if ftype == "checkbox":
                    value = bool(given)
                elif ftype == "multichoice":
                    value = sorted(given or [])
                else:
                    value = given
                status, reason = "accepted", None
            if name in unsure:
                status, reason = "review", reasons.get(name, "unsure mark")
            conn.execute(
                "INSERT INTO readings (capture_id, sheet_id, field, type, raw, value, confidence, status, reason, ink)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [cid, sheet_id, name, ftype, json.dumps({"fill": 0.5 if given else 0.0}), json.dumps(value),
                 0.99 if status == "accepted" else 0.5, status, reason, ink])
    return cid


def transcribe(kit, capture_id: int, values: dict[str, Any], actor: str = "clerk") -> None:
    """A clerk transcribes (handwriting) or decides (marks) these fields of a capture."""
    conn = kit.db.conn
    for name, value in values.items():
        row = conn.execute("SELECT reading_id, type FROM readings WHERE capture_id = ? AND field = ?",
                           [capture_id, name]).fetchone()
        assert row is not None, name
        record_review(conn, row[0], "transcribe" if row[1] in HANDWRITTEN else "correct", value, actor)


def transcribe_pending(kit, capture_id: int, values: dict[str, Any], actor: str = "clerk") -> None:
    """Resolve every reading of the capture still waiting: from `values`, or confirm as is."""
    conn = kit.db.conn
    for rid, name, ftype in conn.execute(
            "SELECT reading_id, field, type FROM readings WHERE capture_id = ? AND status = 'review'"
            " AND reading_id NOT IN (SELECT reading_id FROM reviews)", [capture_id]).fetchall():
        if name in values:
            record_review(conn, rid, "transcribe" if ftype in HANDWRITTEN else "correct", values[name], actor)
        else:
            record_review(conn, rid, "confirm", None, actor)


def fake_quarantine(kit, sheet_id: str | None = None, reason: str = "no_marks", tag: str | None = None) -> int:
    """A page the scanner could not place; with sheet_id, its code was readable (poor marks)."""
    conn = kit.db.conn
    payload = None
    if sheet_id:
        s = conn.execute("SELECT template, version, page, pages FROM sheets WHERE sheet_id = ?", [sheet_id]).fetchone()
        payload = SheetPayload(kit.kit_id, s[0], s[1], sheet_id, s[2], s[3]).encode(kit.secret)
    with conn:
        sha = _input_file(conn, tag or f"quarantine-{next(_counter)}")
        cid = conn.execute("INSERT INTO captures (file_sha256, page_index, source, status, captured_at)"
                           " VALUES (?, 1, 'scan', 'quarantined', ?)", [sha, now_iso()]).lastrowid
        return conn.execute("INSERT INTO quarantine (capture_id, reason, payload, created_at) VALUES (?, ?, ?, ?)",
                            [cid, reason, payload, now_iso()]).lastrowid
