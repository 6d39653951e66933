"""Reason codes as data (issue 12.7): each reading's and each quarantined page's reason as its codes
and parameters (JSON: [{"code": ..., "params": {...}}], fallbackkit.scan.reasons.data), beside the
English text kept in `reason`. Rows stored before are filled from their text (reasons.parse)."""
from __future__ import annotations

import sqlite_utils


def apply(db: sqlite_utils.Database) -> None:
    from ...scan.reasons import data
    conn = db.conn
    for table in ("readings", "quarantine"):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN reason_codes TEXT")
        reasons = [r[0] for r in conn.execute(f"SELECT DISTINCT reason FROM {table} WHERE reason IS NOT NULL")]
        for reason in reasons:
            conn.execute(f"UPDATE {table} SET reason_codes = ? WHERE reason = ?",
                         [data(reason, quarantine=table == "quarantine"), reason])
