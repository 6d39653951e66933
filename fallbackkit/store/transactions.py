"""One way to make a unit of work all-or-nothing: `atomic(conn)`.

Outside a transaction it opens one with BEGIN IMMEDIATE: the write lock is held from the first
statement, so a check ("this page is not stored yet", "nobody decided this meanwhile") and the
write it guards see the same store; another connection waits (busy timeout), never interleaves.
Inside a transaction (another `atomic()`, or a caller's own) it is a SAVEPOINT: it nests, a
failure rolls back only its own block, and the outermost block alone commits. Code that writes
through `atomic()` must not use the sqlite3 connection's `with conn:` inside it, which would
commit the caller's transaction half-way.
"""
from __future__ import annotations

import itertools
import sqlite3
from contextlib import contextmanager
from typing import Any, Iterator

_SAVEPOINTS = itertools.count(1)


def raw_connection(conn: Any) -> sqlite3.Connection:
    """The sqlite3 connection behind a sqlite_utils Database (or the connection itself)."""
    return conn.conn if hasattr(conn, "conn") else conn


@contextmanager
def atomic(conn: Any) -> Iterator[sqlite3.Connection]:
    """All of the block or none of it; nests (savepoints). Yields the sqlite3 connection."""
    conn = raw_connection(conn)
    if conn.in_transaction:
        name = f"fk_atomic_{next(_SAVEPOINTS)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
