"""What was exported is remembered: one row per export, one row per item it sent or withdrew
(fallbackkit/store/exports.py). A later export compares with these rows: `--since LAST` sends only
what changed, and a value sent before that the paper no longer holds is withdrawn (entered-in-error)."""

SCHEMA = """
CREATE TABLE exports (
    export_id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    format TEXT NOT NULL,               -- fhir | csv | json
    ward TEXT,
    since TEXT,                         -- as given (an ISO time, or LAST)
    files TEXT NOT NULL,                -- JSON: [{name, sha256, size}] (names only, never a path)
    resources TEXT NOT NULL,            -- JSON: {resourceType: count}
    sha256 TEXT NOT NULL,               -- of the files' names and hashes, in order
    items INTEGER NOT NULL DEFAULT 0
);
-- What one export sent per item: the resources (type, conditional identifier, the resource as sent)
-- and a hash of their content; status 'withdrawn' when it sent them as entered-in-error.
CREATE TABLE export_items (
    export_id INTEGER NOT NULL REFERENCES exports(export_id),
    item_id TEXT NOT NULL,
    patient_mrn TEXT,
    status TEXT NOT NULL,               -- sent | withdrawn
    content_sha256 TEXT NOT NULL,
    resources TEXT NOT NULL,            -- JSON: [{resourceType, system, value, resource}]
    PRIMARY KEY (export_id, item_id)
);
CREATE INDEX export_items_item ON export_items (item_id, export_id)
"""
