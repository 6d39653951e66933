"""`audit verify`: check the hash chain of the audit log."""
from __future__ import annotations

from typing import Any

from ..errors import IntegrityFailure
from ..store.audit import head_problem, verify_audit
from ..store.kit import Kit, read_kit_meta


def verify_chain(kit: Kit) -> dict[str, Any]:
    """Returns {"rows", "last_hash"} when the chain holds; raises IntegrityFailure naming the first
    row where it breaks (a row changed, inserted or deleted at or before that row)."""
    conn = kit.db.conn
    rows, broken = verify_audit(conn)
    if broken is not None:
        row = conn.execute("SELECT id, ts, actor, action, object FROM audit WHERE id = ?", [broken]).fetchone()
        what = f" ({row[3]} {row[4] or ''} by {row[2]} at {row[1]})".replace("  ", " ") if row else ""
        raise IntegrityFailure(
            f"audit log broken at row {broken}{what}: this row or the one before it was changed, "
            f"inserted or deleted after it was written",
            hint="do not trust the store's history from this row on; compare with a backup and tell IT")
    truncated = head_problem(conn, read_kit_meta(kit.path).get("audit_head"), "kit.json")
    if truncated:
        raise IntegrityFailure(truncated, hint="compare with a backup and tell IT")
    last = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    return {"rows": rows, "last_hash": last[0] if last else None}
