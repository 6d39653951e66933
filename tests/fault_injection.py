"""Fault injection for the scan's worker processes (tests only; production code has no fault hook).

`kill_worker_on_page(monkeypatch, page, tokens)` makes every worker the scan starts die at once
(as on out-of-memory) right after decoding page `page`, while the folder `tokens` still holds a
token file: one token is used up per death. The workers are separate processes, so this is
installed through `scan.workers.WORKER_SETUP`, the function each worker runs once it is set up;
it is pickled by reference, so `_install` is found in this module by the worker (tests/ is on the
workers' sys.path: they start from the test process).
"""
from __future__ import annotations

import os
from pathlib import Path


def _install(page: int, tokens: str) -> None:
    """Runs in a worker: wrap page decoding so that decoding `page` may end the process."""
    from fallbackkit.scan.ingest import PageReader
    decode = PageReader.page

    def page_then_maybe_die(self, index):
        got = decode(self, index)
        if index == page:
            for token in sorted(Path(tokens).glob("*")):
                try:
                    token.unlink()
                except FileNotFoundError:
                    continue
                os._exit(70)
        return got

    PageReader.page = page_then_maybe_die


def kill_worker_on_page(monkeypatch, page: int, tokens: Path) -> None:
    from fallbackkit.scan import workers
    monkeypatch.setattr(workers, "WORKER_SETUP", (_install, (page, str(tokens))))


def no_faults(monkeypatch) -> None:
    from fallbackkit.scan import workers
    monkeypatch.setattr(workers, "WORKER_SETUP", None)
