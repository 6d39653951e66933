"""Scan-back: read scanned sheets into the store (ingest, engine, pipeline).

The pipeline's public functions are importable from here; they are loaded on first use so that
importing the engine alone (e.g. in a worker or by `simulate`) stays light.
"""
from __future__ import annotations

from typing import Any

_PIPELINE = ("scan_paths", "ScanSummary", "format_summary", "list_readings", "list_quarantine",
             "assign_quarantined")
_INGEST = ("iter_pages", "load_page", "count_pages", "sniff", "Page", "UnreadableFile")


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        from . import pipeline
        return getattr(pipeline, name)
    if name in _INGEST:
        from . import ingest
        return getattr(ingest, name)
    raise AttributeError(f"module 'fallbackkit.scan' has no attribute {name!r}")


__all__ = [*_PIPELINE, *_INGEST]
