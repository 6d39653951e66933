"""The worker processes that read pages: a pool, and retries when a worker dies.

Workers decode and read; the parent alone writes the store, as each result comes, so a crash loses
at most the pages in flight and a rerun skips the pages already stored.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import sqlite3
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable


from ..errors import IntegrityFailure, NotFound
from ..store.kit import Kit
from . import digits, learn
from .page_task import _WORKER, read_task


IN_FLIGHT_PER_WORKER = 3


# A function (and its arguments) every worker process runs once it is set up, or None. Production
# code sets none; the tests install their fault injection with it (tests/fault_injection.py). It
# is pickled by reference, so it must be a module-level function the workers can import.
WORKER_SETUP: tuple[Callable[..., None], tuple] | None = None


# Reading a page allocates and frees a few dozen arrays of 1-40 MB (the decoded scan, its warps and
# masks). glibc hands blocks that big to the OS on free (mmap/munmap, and trimming the heap's top),
# so every page faulted its arrays in again: ~1,700 page faults and ~6 ms of system CPU per ward-pack
# page in a fresh process (2026-12-01, 81 office pages: 63-75 -> 56-68 ms CPU per page). A reader
# keeps what it freed for the next page instead: blocks below 64 MiB come from the heap, and up to
# 128 MiB of free heap stays mapped. Its peak memory is the same (it is what one page needs).
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed page-sized blocks for reuse (see MMAP_THRESHOLD). False where
    there is no glibc mallopt (another C library, another system): nothing changed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _init_worker(kit_path: str, kit_id: str, secret: bytes,
                 setup: tuple[Callable[..., None], tuple] | None = None) -> None:
    """Each worker opens the store read-only for sheet geometry: it never writes the store."""
    keep_freed_memory()
    # the page and crop images it writes hold patient data: owner only, whatever umask the
    # forkserver was started with (it outlives the command that started it)
    os.umask(0o077)
    import sqlite_utils
    from ..generate import sheet_geometry
    conn = sqlite3.connect(f"file:{Path(kit_path) / 'store.sqlite'}?mode=ro", uri=True, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=30000")
    ro_kit = Kit(Path(kit_path), kit_id, secret, sqlite_utils.Database(conn), read_only=True)
    _WORKER.clear()
    _WORKER.update(kit_path=Path(kit_path), kit_id=kit_id, secret=secret,
                   geometry_for=_geometry_lookup(ro_kit, sheet_geometry), reader=None)
    digits.use_memory(learn.load(kit_path))
    if setup is not None:
        setup[0](*setup[1])


def _geometry_lookup(kit: Kit, sheet_geometry: Callable) -> Callable[[str], dict | None]:
    cache: dict[str, dict | None] = {}

    def geometry_for(sheet_id: str) -> dict | None:
        if sheet_id not in cache:
            try:
                cache[sheet_id] = sheet_geometry(kit, sheet_id)
            except NotFound:
                cache[sheet_id] = None
        return cache[sheet_id]
    return geometry_for


def _in_process_worker(kit: Kit) -> None:
    from ..generate import sheet_geometry
    keep_freed_memory()
    _WORKER.clear()
    _WORKER.update(kit_path=Path(kit.path), kit_id=kit.kit_id, secret=kit.secret,
                   geometry_for=_geometry_lookup(kit, sheet_geometry), reader=None)
    digits.use_memory(learn.load(kit.path))


def _run_in_process(kit: Kit, tasks: list, handle: Callable[[dict], None]) -> None:
    _in_process_worker(kit)
    try:
        for task in tasks:
            handle(read_task(task))
    finally:
        reader = _WORKER.get("reader")
        if reader is not None:
            reader.close()
        _WORKER.clear()


# Each worker is one reader: NumPy's BLAS must not start a thread per core in every worker (on two
# cores, two workers with two BLAS threads each made a digit forward pass ~10x slower). Read by the
# BLAS libraries when NumPy is first imported in the forkserver or a spawned worker.
_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _context():
    """forkserver where there is one: workers fork from a server that imported the reader once."""
    for name, value in _ONE_THREAD.items():
        os.environ.setdefault(name, value)
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["fallbackkit.scan.pipeline", "fallbackkit.scan.engine"])
        return ctx
    return mp.get_context("spawn")


def _run_pool(kit: Kit, tasks: list, handle: Callable[[dict], None], workers: int) -> None:
    """Workers read; this process stores each result as it comes.

    A worker that dies (out of memory, a crash in a decoder) breaks the pool and loses the pages in
    flight. Those pages are then read again one at a time, so that the page that kills a worker is
    told apart from its innocent neighbours; a page that kills a worker twice on its own is reported
    as a failed page of its file, and everything else is read."""
    queue = list(reversed(tasks))  # a stack
    suspects: list[tuple] = []
    deaths: dict[tuple, int] = {}
    setup = WORKER_SETUP
    fruitless = 0
    while queue or suspects:
        solo = bool(suspects)
        stack = [suspects.pop()] if solo else queue
        broken, handled = _pool_pass(kit, stack, handle, workers, 1 if solo else workers * IN_FLIGHT_PER_WORKER,
                                     setup)
        if not solo:
            suspects.extend(reversed(broken))
        for task in broken if solo else []:
            deaths[task] = deaths.get(task, 0) + 1
            if deaths[task] >= 2:
                handle({"sha": task[0], "index": task[3], "kind": "file_error",
                        "error": f"page {task[3]} made the reader process crash twice — scan that page again, "
                                 "or tell IT"})
                handled += 1
            else:
                suspects.append(task)
        fruitless = 0 if handled or (solo and broken) else fruitless + 1
        if fruitless >= 3:
            raise IntegrityFailure("the reader processes keep failing to start",
                                   hint="run the same command again with --workers 0 (slower, one process)")


def _pool_pass(kit: Kit, stack: list, handle: Callable[[dict], None], workers: int, cap: int,
               setup: tuple[Callable[..., None], tuple] | None) -> tuple[list[tuple], int]:
    """Read tasks off the stack with a pool until it is empty or the pool breaks.
    Returns the tasks lost with a broken pool and how many results were handled."""
    broken: list[tuple] = []
    handled = 0
    with ProcessPoolExecutor(max_workers=min(workers, cap), mp_context=_context(), initializer=_init_worker,
                             initargs=(str(kit.path), kit.kit_id, kit.secret, setup)) as pool:
        pending: dict = {}

        def refill() -> None:
            while stack and len(pending) < cap:
                future = pool.submit(read_task, stack[-1])  # raises BrokenProcessPool when broken
                pending[future] = stack.pop()

        try:
            refill()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken.append(task)
                        continue
                    handle(result)
                    handled += 1
                if broken:
                    break
                refill()
        except BrokenProcessPool:
            pass
        broken.extend(pending.values())  # in flight when the pool broke: their results never came
    return broken, handled
