"""Scan-back: read scanned sheets into the store.

ingest (files to page images), locate (QR code and corner marks), read (fields), engine (one page),
pipeline (files, workers, storage), plus the digit recogniser (digits, suggest, learn), reasons,
crops, and the simulator used by drills and tests (simulate, marks, degrade). Import the module
you need: `from fallbackkit.scan import pipeline`.
"""
