"""Quarantine details as data (issue 12.7): each quarantined page's detail as its code and parameters
(JSON: {"code": ..., "params": {...}}, a {why} parameter a detail in turn; fallbackkit.scan.reasons.
detail_data), beside the English text kept in `detail`, so that the station, the scan summary and
`quarantine list` say it in the reader's language. Rows stored before are filled from their text
(reasons.parse_detail); a text no detail's sentence matches is kept as {"code": "other"}."""
from __future__ import annotations

import sqlite_utils


def apply(db: sqlite_utils.Database) -> None:
    from ...scan.reasons import detail_data
    conn = db.conn
    conn.execute("ALTER TABLE quarantine ADD COLUMN detail_codes TEXT")
    details = [r[0] for r in conn.execute("SELECT DISTINCT detail FROM quarantine WHERE detail IS NOT NULL")]
    for text in details:
        conn.execute("UPDATE quarantine SET detail_codes = ? WHERE detail = ?", [detail_data(text), text])
