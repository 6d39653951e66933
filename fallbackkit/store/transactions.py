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
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_SAVEPOINTS = itertools.count(1)
_WRITE_LOCKS: dict[str, threading.RLock] = {}
_GUARD = threading.Lock()


class StoreConnection(sqlite3.Connection):
    """A connection to a store file that knows the file's write lock in this process.

    SQLite lets one connection write at a time; the others wait in its busy handler, which polls
    with growing sleeps (up to 100 ms each): with several threads of one process writing (the
    review station's clerks), the lock is often free while every waiter sleeps, and a short write
    waits hundreds of ms. `atomic()` takes this in-process lock first, so threads of one process
    queue for the write and each starts the moment the previous one commits; other processes
    (a scan, a command) still meet at SQLite's own lock."""
    write_lock: threading.RLock | None = None


def write_lock(path: Path | str) -> threading.RLock:
    """The in-process write lock of the store file at path (one per file)."""
    key = str(Path(path).resolve())
    with _GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.RLock())


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
    lock = getattr(conn, "write_lock", None)
    if lock is not None:
        lock.acquire()
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
    finally:
        if lock is not None:
            lock.release()
