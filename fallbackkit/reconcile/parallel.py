"""Batches of a long read-only recompute worked out in two processes, handed back in order.

A full reconcile of 100,000 captures is CPU work in Python over a few million readings, one batch
of forms at a time, each batch independent of the others (issue 16). Two worker processes (the
machines this runs on have two cores or more) each compute whole batches against the store; the
caller gets the batches back in their order, so what it writes is byte for byte what one process
writes. Each worker reads in one read transaction for its whole life (one consistent snapshot per
worker: a station writing meanwhile is seen by both or, at a batch boundary, by a later batch, as
when one process reads batch after batch).

Workers are forked (the parent's templates and imports come for free) and never touch the
parent's connection: each opens the store read-only. A small kit, one core, a process with other
threads (the review station) or FALLBACKKIT_WORKERS=1 stays in the calling process.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import sqlite_utils

from ..store.kit import Kit

log = logging.getLogger(__name__)

WORKERS = 2
PARALLEL_FROM = 6000  # forms: below this the workers' start costs more than they save

_READER: dict[str, Any] = {}


def workers_for(n_forms: int) -> int:
    """How many worker processes a recompute of n_forms gets (1: do it here)."""
    wanted = os.environ.get("FALLBACKKIT_WORKERS")
    limit = int(wanted) if wanted and wanted.isdigit() else WORKERS
    if n_forms < PARALLEL_FROM or (os.cpu_count() or 1) < 2 or limit < 2:
        return 1
    if threading.active_count() > 1:  # e.g. the review station's server: forking a threaded process is unsafe
        return 1
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return limit


def reader_kit(path: Path, kit_id: str, secret: bytes) -> Kit:
    """Another connection to a kit's store, read-only, inside one read transaction (a snapshot)."""
    store = (path / "store.sqlite").resolve()
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("BEGIN")
    conn.execute("SELECT COUNT(*) FROM kit_meta").fetchone()  # the snapshot starts at the first read
    return Kit(path, kit_id, secret, sqlite_utils.Database(conn), read_only=True)


def _start(where: tuple[Path, str, bytes], setup: Callable[[Kit, bool], Any]) -> None:
    reader = reader_kit(*where)
    _READER["kit"], _READER["state"] = reader, setup(reader, True)


def _run(work: Callable[[Kit, Any, Any], Any], batch: Any) -> tuple[bool, Any]:
    try:
        return True, work(_READER["kit"], _READER["state"], batch)
    except BaseException as exc:  # named to the caller, which does the batch itself (see in_order)
        return False, f"{type(exc).__name__}: {exc}"


def in_order(kit: Kit, batches: Iterable[Any], work: Callable[[Kit, Any, Any], Any],
             setup: Callable[[Kit, bool], Any], workers: int) -> Iterator[Any]:
    """work(reader, setup(reader, in_worker), batch) for each batch, in the batches' order,
    computed by `workers` processes (a few batches ahead at most, so memory stays bounded); with
    workers=1 here, on kit itself (in_worker False). work and setup are module-level functions:
    a worker is told their names, and sends back what work returns (pickled).

    A batch that fails in a worker, or a worker that dies (killed for memory, say), is done again
    here: the same answer, or the real error raised where the caller can see it."""
    batches = list(batches)
    here: list[Any] = []

    def locally(batch: Any) -> Any:
        if not here:
            here.append(setup(kit, False))
        return work(kit, here[0], batch)
    if workers < 2:
        for batch in batches:
            yield locally(batch)
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_start,
                               initargs=((kit.path, kit.kit_id, kit.secret), setup))
    broken = False

    def submit(batch: Any):
        """The batch's future, or None once the pool is broken (a worker died: the pool refuses
        new work, even between a batch that came back and the next submit)."""
        nonlocal broken
        if not broken:
            try:
                return pool.submit(_run, work, batch)
            except BrokenProcessPool:
                log.warning("a worker process died: the rest is computed in this process")
                broken = True
        return None
    try:
        waiting: deque = deque()
        todo = iter(batches)
        for batch in todo:
            waiting.append((batch, submit(batch)))
            if len(waiting) >= 2 * workers:
                break
        while waiting:
            batch, future = waiting.popleft()
            done, result = False, None
            if future is not None and not broken:
                try:
                    done, result = future.result()
                except BrokenProcessPool:
                    log.warning("a worker process died: the rest is computed in this process")
                    broken = True
            if not done:
                if not broken:
                    log.debug("a batch failed in a worker (%s): computed here", result)
                result = locally(batch)
            for more in todo:  # one more in the queue for the one taken out (all of them, once broken)
                waiting.append((more, submit(more)))
                if not broken:
                    break
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
