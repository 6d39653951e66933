"""Scan-back: read scanned sheets into the store.

ingest (files to page images), locate (QR code and corner marks), read (fields), engine (one page),
pipeline (a scan from end to end: `scan_paths`) with its parts files (find, hash, archive),
workers (pool, retry), page_task (one page in a worker) and assign (quarantined pages identified by
a clerk); the rows themselves are written by `store/captures.py`. Plus the digit recogniser (digits, suggest, learn), reasons,
crops and pageview (a field's and a page's image, made from the archived original when someone looks), and the simulator used by drills and tests (simulate, marks, degrade). Import the module
you need: `from fallbackkit.scan import pipeline`.
"""
