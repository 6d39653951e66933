"""Schema migrations, applied in order of their module names (m0001_..., m0002_...).

Each module defines `SCHEMA` (SQL statements separated by ';'; no ';' inside string literals) or an
`apply(db)` function; it runs inside one explicit transaction (BEGIN IMMEDIATE ... COMMIT) together
with the row that records it in `_migrations`, so a store is never left half-migrated. The explicit
BEGIN matters: Python's sqlite3 only opens a transaction before INSERT/UPDATE/DELETE, so CREATE
TABLE would otherwise run on its own and stay behind when a later statement fails. An `apply(db)`
must therefore use `db.conn.execute` only: sqlite-utils' table methods commit on their own. Numbers reserved per stage:
0001-0009 foundation and printing, 0010-0019 scan, 0020-0029 reconcile, 0030-0039 review,
0040-0049 export.
"""
from __future__ import annotations

import datetime as _dt
import importlib
import logging
import pkgutil
import re
import sqlite3

import sqlite_utils

from ...errors import FallbackkitError

log = logging.getLogger(__name__)


class MigrationFailed(FallbackkitError):
    """A schema migration failed; it was rolled back as a whole (exit 70: a bug to report)."""


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("m"))


def _statements(script: str) -> list[str]:
    """Split a schema script on ';' after dropping '--' comments (which may hold a ';')."""
    code = "\n".join(re.sub(r"--.*$", "", line) for line in script.splitlines())
    return [s for s in code.split(";") if s.strip()]


def _is_storage(exc: BaseException) -> bool:
    """A full or read-only disk, or a damaged file: the caller names those, not as a failed migration."""
    text = str(exc)
    return "full" in text or "readonly" in text or "disk I/O" in text or "malformed" in text


def pending(db: sqlite_utils.Database) -> list[str]:
    """The migrations this store still lacks (read only)."""
    try:
        done = {row[0] for row in db.conn.execute("SELECT name FROM _migrations")}
    except sqlite3.OperationalError:  # no _migrations table: nothing applied yet
        done = set()
    return [name for name in available() if name not in done]


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply every migration not yet applied, each in its own transaction; returns the names applied."""
    conn = db.conn
    if not pending(db):
        return []
    if conn.in_transaction:
        conn.commit()
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    conn.commit()
    applied = []
    for name in available():
        module = importlib.import_module(f"{__name__}.{name}")
        isolation, conn.isolation_level = conn.isolation_level, None  # we open and close the transaction
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # checked under the write lock: another process may have just applied it
                if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                    conn.execute("ROLLBACK")
                    continue
                log.debug("applying migration %s", name)
                if hasattr(module, "apply"):
                    module.apply(db)
                else:
                    for statement in _statements(module.SCHEMA):
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                    (name, _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
                )
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.DatabaseError) and not _is_storage(exc):
                    raise MigrationFailed(f"could not upgrade the store: migration {name} failed ({exc});"
                                          " the store is as it was before",
                                          hint="report this; the version of fallbackkit that made the kit"
                                               " still opens it") from exc
                raise
        finally:
            conn.isolation_level = isolation
        applied.append(name)
    return applied
