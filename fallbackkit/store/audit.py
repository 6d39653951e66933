"""Append-only, hash-chained audit log.

Every row's hash covers its content and the previous row's hash, so changing, inserting or
deleting a row in the middle of history breaks the chain from that row on.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from typing import Any

GENESIS = "0" * 64


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _encode(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def row_hash(prev_hash: str, ts: str, actor: str, action: str, obj: str | None,
             before: str | None, after: str | None) -> str:
    material = json.dumps([prev_hash, ts, actor, action, obj, before, after], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def append_audit(conn, actor: str, action: str, obj: str | None = None,
                 before: Any = None, after: Any = None, ts: str | None = None) -> str:
    """Append one row. Call inside the transaction that makes the change it records."""
    if hasattr(conn, "conn"):  # a sqlite_utils.Database
        conn = conn.conn
    row = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    prev = row[0] if row else GENESIS
    ts = ts or _now()
    b, a = _encode(before), _encode(after)
    digest = row_hash(prev, ts, actor, action, obj, b, a)
    conn.execute(
        "INSERT INTO audit (ts, actor, action, object, before, after, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (ts, actor, action, obj, b, a, prev, digest),
    )
    return digest


def verify_audit(conn) -> tuple[int, int | None]:
    """Check the chain. Returns (rows checked, id of the first broken row or None)."""
    if hasattr(conn, "conn"):
        conn = conn.conn
    prev = GENESIS
    count = 0
    for rid, ts, actor, action, obj, b, a, prev_hash, digest in conn.execute(
        "SELECT id, ts, actor, action, object, before, after, prev_hash, hash FROM audit ORDER BY id"
    ):
        count += 1
        if prev_hash != prev or row_hash(prev, ts, actor, action, obj, b, a) != digest:
            return count, rid
        prev = digest
    return count, None
