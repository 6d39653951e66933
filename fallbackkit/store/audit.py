"""Append-only audit log, chained with an HMAC keyed by the kit secret.

Every row's hash covers its content and the previous row's hash, so changing, inserting or
deleting a row in the middle of history breaks the chain from that row on. The hash is an HMAC
(key derived from the kit's secret.key), so whoever edits the store without the secret cannot
recompute a valid chain. Deleting the last rows leaves a valid but shorter chain: the chain's head
(row count, last id and hash) is therefore also kept outside the store, in kit.json, in every
backup and in the report, and `check` compares them (see `audit_head`).

Kits made before the HMAC keep their first rows as plain SHA-256 (kit_meta 'audit_hmac_from' says
where the HMAC starts, migration m0004); those rows are verified as they were written.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import sqlite3
from typing import Any

GENESIS = "0" * 64
MAC_FUNCTION = "fallbackkit_audit_mac"
_KEY_LABEL = b"fallbackkit audit chain v1"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _encode(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def audit_key(secret: bytes) -> bytes:
    """The chain's key: derived from the kit secret, so it differs from the key that signs sheets."""
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def register_audit_key(conn: sqlite3.Connection, secret: bytes) -> None:
    """Bind the kit's audit key to this connection (as an SQL function, so the key travels with the
    connection and never sits in the store)."""
    key = audit_key(secret)
    conn.create_function(MAC_FUNCTION, 1, lambda material: hmac.new(key, material.encode("utf-8"),
                                                                    hashlib.sha256).hexdigest(),
                         deterministic=True)


def _material(prev_hash: str, ts: str, actor: str, action: str, obj: str | None,
              before: str | None, after: str | None) -> str:
    return json.dumps([prev_hash, ts, actor, action, obj, before, after], ensure_ascii=False)


def row_hash(prev_hash: str, ts: str, actor: str, action: str, obj: str | None,
             before: str | None, after: str | None) -> str:
    """Plain SHA-256 of a row: how kits before the HMAC chained their rows."""
    return hashlib.sha256(_material(prev_hash, ts, actor, action, obj, before, after).encode("utf-8")).hexdigest()


def _mac(conn: sqlite3.Connection, key: bytes | None, material: str) -> str:
    if key is not None:
        return hmac.new(key, material.encode("utf-8"), hashlib.sha256).hexdigest()
    try:
        return conn.execute(f"SELECT {MAC_FUNCTION}(?)", [material]).fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "no such function" in str(exc):
            raise RuntimeError("audit chain used on a connection without the kit's key "
                               "(open the store with store.kit.connect)") from None
        raise


def append_audit(conn, actor: str, action: str, obj: str | None = None,
                 before: Any = None, after: Any = None, ts: str | None = None) -> str:
    """Append one row. Call inside the transaction that makes the change it records."""
    if hasattr(conn, "conn"):  # a sqlite_utils.Database
        conn = conn.conn
    row = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    prev = row[0] if row else GENESIS
    ts = ts or _now()
    b, a = _encode(before), _encode(after)
    digest = _mac(conn, None, _material(prev, ts, actor, action, obj, b, a))
    conn.execute(
        "INSERT INTO audit (ts, actor, action, object, before, after, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (ts, actor, action, obj, b, a, prev, digest),
    )
    return digest


def hmac_from(conn: sqlite3.Connection) -> int:
    """Id of the first HMAC row. A store without migration m0004 has only plain rows; one that has
    it but lost the marker is held to the HMAC throughout (deleting the marker cannot downgrade it)."""
    try:
        row = conn.execute("SELECT value FROM kit_meta WHERE key = 'audit_hmac_from'").fetchone()
        if row is not None:
            return int(row[0])
        applied = conn.execute("SELECT 1 FROM _migrations WHERE name = 'm0004_audit_hmac'").fetchone()
    except (sqlite3.OperationalError, ValueError):
        applied = None
    return 1 if applied else 1 << 62


def verify_audit(conn, key: bytes | None = None) -> tuple[int, int | None]:
    """Check the chain. Returns (rows checked, id of the first broken row or None). KEY is the audit
    key (audit_key(secret)); without it the one bound to the connection is used."""
    if hasattr(conn, "conn"):
        conn = conn.conn
    first_mac = hmac_from(conn)
    prev = GENESIS
    count = 0
    for rid, ts, actor, action, obj, b, a, prev_hash, digest in conn.execute(
        "SELECT id, ts, actor, action, object, before, after, prev_hash, hash FROM audit ORDER BY id"
    ):
        count += 1
        material = _material(prev, ts, actor, action, obj, b, a)
        expected = (_mac(conn, key, material) if rid >= first_mac
                    else hashlib.sha256(material.encode("utf-8")).hexdigest())
        if prev_hash != prev or not hmac.compare_digest(expected, digest or ""):
            return count, rid
        prev = digest
    return count, None


def audit_head(conn) -> dict[str, Any]:
    """The chain's head: how many rows, and the last row's id and hash. Kept outside the store
    (kit.json, backups, the report) so that deleting the last rows shows."""
    if hasattr(conn, "conn"):
        conn = conn.conn
    count = conn.execute("SELECT count(*) FROM audit").fetchone()[0]
    last = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    first_mac = hmac_from(conn)
    return {"rows": count, "last_id": last[0] if last else None, "last_hash": last[1] if last else None,
            "hmac_from": first_mac if first_mac < 1 << 62 else None}


def head_problem(conn, head: dict[str, Any] | None, where: str, *, thorough: bool = True) -> str | None:
    """Why the store's audit log does not reach HEAD recorded in WHERE (None when it does). Not
    thorough: only that the head's row is there with its hash (one lookup; rows deleted before it
    break the chain, which verify_audit sees)."""
    if not head or not head.get("last_id"):
        return None
    if hasattr(conn, "conn"):
        conn = conn.conn
    if head.get("hmac_from") and hmac_from(conn) > head["hmac_from"]:
        # moving the marker up would let plain SHA-256 (no secret needed) pass for the rows below it
        return (f"the audit log's HMAC starts at row {hmac_from(conn)}, {where} records row {head['hmac_from']}:"
                " the marker was moved")
    row = conn.execute("SELECT hash FROM audit WHERE id = ?", [head["last_id"]]).fetchone()
    if not thorough:
        if row is None:
            return f"audit log shorter than {where} records: row {head['last_id']} is gone"
        return None if row[0] == head["last_hash"] else f"audit row {head['last_id']} differs from {where}"
    upto = conn.execute("SELECT count(*) FROM audit WHERE id <= ?", [head["last_id"]]).fetchone()[0]
    if row is None or upto < head["rows"]:
        now = audit_head(conn)
        return (f"audit log shorter than {where} records: {where} says {head['rows']} rows up to row "
                f"{head['last_id']}, the store has {upto} of them ({now['rows']} in all): rows were deleted")
    if row[0] != head["last_hash"] or upto != head["rows"]:
        return f"audit row {head['last_id']} differs from the head {where} records: the log was rewritten"
    return None
