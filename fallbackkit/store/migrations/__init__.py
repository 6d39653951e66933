"""Schema migrations, applied in order of their module names (m0001_..., m0002_...).

Each module defines `SCHEMA` (SQL statements separated by ';'; no ';' inside string literals) or an
`apply(db)` function; it runs inside one transaction together with the row that records
it in `_migrations`, so a store is never left half-migrated. Numbers reserved per stage:
0001-0009 foundation and printing, 0010-0019 scan, 0020-0029 reconcile, 0030-0039 review,
0040-0049 export.
"""
from __future__ import annotations

import datetime as _dt
import importlib
import pkgutil
import re

import sqlite_utils


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("m"))


def _statements(script: str) -> list[str]:
    """Split a schema script on ';' after dropping '--' comments (which may hold a ';')."""
    code = "\n".join(re.sub(r"--.*$", "", line) for line in script.splitlines())
    return [s for s in code.split(";") if s.strip()]


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply every migration not yet applied; returns the names applied."""
    conn = db.conn
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name in available():
        if name in done:
            continue
        module = importlib.import_module(f"{__name__}.{name}")
        with conn:  # one transaction per migration
            if hasattr(module, "apply"):
                module.apply(db)
            else:
                for statement in _statements(module.SCHEMA):
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (name, _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
            )
        applied.append(name)
    return applied
