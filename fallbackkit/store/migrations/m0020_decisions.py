"""People's decisions: reviews of readings, identity links, re-entry marks. All append-only."""

SCHEMA = """
-- A person's decision on a reading. The latest row per reading that is not undone counts.
CREATE TABLE reviews (
    review_id INTEGER PRIMARY KEY,
    reading_id INTEGER NOT NULL REFERENCES readings(reading_id),
    decision TEXT NOT NULL,         -- confirm | correct | transcribe | illegible | undo
    value TEXT,                     -- JSON: the value the person decided
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    note TEXT,
    undoes INTEGER REFERENCES reviews(review_id)
);
CREATE INDEX reviews_reading ON reviews (reading_id);

-- Downtime MRN -> real MRN. A revocation is a new row with revokes = the link's id.
CREATE TABLE identity_links (
    id INTEGER PRIMARY KEY,
    downtime_mrn TEXT NOT NULL,
    real_mrn TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT,
    at TEXT NOT NULL,
    revokes INTEGER REFERENCES identity_links(id)
);
CREATE INDEX identity_links_dt ON identity_links (downtime_mrn);

-- Re-entry progress: the latest mark per item counts.
CREATE TABLE worklist_marks (
    id INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL,
    status TEXT NOT NULL,           -- pending | entered | not-needed
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    note TEXT
);
CREATE INDEX worklist_marks_item ON worklist_marks (item_id);
"""

