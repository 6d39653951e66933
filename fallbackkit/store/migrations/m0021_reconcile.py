"""Reconciliation: indexes for the set-based passes (current review per reading, read captures),
and the ledger of rows merged in from other scanning stations of the same kit."""

SCHEMA = """
CREATE INDEX IF NOT EXISTS reviews_undoes ON reviews (undoes);
CREATE INDEX IF NOT EXISTS captures_status ON captures (status, sheet_id);
CREATE INDEX IF NOT EXISTS identity_links_real ON identity_links (real_mrn);
CREATE INDEX IF NOT EXISTS audit_object ON audit (object);

-- Rows brought in by `merge`: which remote row (natural key) became which local row.
CREATE TABLE merge_log (
    id INTEGER PRIMARY KEY,
    source_kit TEXT NOT NULL,
    source_path TEXT NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    counts TEXT NOT NULL
)
"""
