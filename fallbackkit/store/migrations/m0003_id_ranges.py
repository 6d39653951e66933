"""Downtime identifier ranges reserved in the hospital's own system (EHR) and loaded into a kit:
blank stock prints those numbers instead of the kit's own DTM/DTE/DTA pools."""

SCHEMA = """
CREATE TABLE id_ranges (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,              -- mrn | encounter | accession
    first_value INTEGER NOT NULL,
    last_value INTEGER NOT NULL,
    width INTEGER NOT NULL,          -- digits as the hospital writes them (leading zeros kept)
    next_value INTEGER NOT NULL,     -- only ever grows: a number is never handed out twice
    loaded_at TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT
);
CREATE INDEX id_ranges_kind ON id_ranges (kind, first_value)
"""
