"""Kit metadata, census snapshots, identifier pools, printed sheets and the audit log."""

SCHEMA = """
CREATE TABLE kit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE census_snapshots (
    id INTEGER PRIMARY KEY,
    imported_at TEXT NOT NULL,
    source_file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    meds_file TEXT,
    patients INTEGER NOT NULL,
    medications INTEGER NOT NULL
);

CREATE TABLE patients (
    snapshot_id INTEGER NOT NULL REFERENCES census_snapshots(id),
    mrn TEXT NOT NULL,
    encounter TEXT,
    last_name TEXT NOT NULL,
    first_name TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    sex TEXT,
    ward TEXT NOT NULL,
    bed TEXT NOT NULL,
    allergies TEXT,
    PRIMARY KEY (snapshot_id, mrn)
);
CREATE INDEX patients_ward ON patients (snapshot_id, ward);

CREATE TABLE medications (
    snapshot_id INTEGER NOT NULL REFERENCES census_snapshots(id),
    mrn TEXT NOT NULL,
    line INTEGER NOT NULL,
    medication TEXT NOT NULL,
    dose TEXT,
    route TEXT,
    frequency TEXT,
    scheduled_times TEXT,
    prn INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (snapshot_id, mrn, line)
);

-- Pools of downtime identifiers: next_value only ever grows, so a number is never reused.
CREATE TABLE id_pools (kind TEXT PRIMARY KEY, prefix TEXT NOT NULL, next_value INTEGER NOT NULL);

CREATE TABLE downtime_ids (
    value TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    form_id TEXT NOT NULL,
    batch_id INTEGER NOT NULL,
    allocated_at TEXT NOT NULL
);

CREATE TABLE print_batches (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,          -- ward | blank | patient
    ward TEXT,
    template TEXT,
    snapshot_id INTEGER,
    paper TEXT NOT NULL,
    lang TEXT NOT NULL,
    out_path TEXT,
    sheets INTEGER NOT NULL,
    actor TEXT NOT NULL
);

-- Field geometry is shared by every sheet printed from the same layout, so it is stored once.
CREATE TABLE layouts (
    hash TEXT PRIMARY KEY,
    template TEXT NOT NULL,
    version INTEGER NOT NULL,
    page INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    paper TEXT NOT NULL,
    geometry TEXT NOT NULL        -- JSON: page size and fields in mm from the top-left corner
);

-- One printed form (all its pages): the unit that reconciliation reasons about.
CREATE TABLE forms (
    form_id TEXT PRIMARY KEY,
    batch_id INTEGER NOT NULL REFERENCES print_batches(id),
    template TEXT NOT NULL,
    version INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    patient_mrn TEXT,             -- census MRN for pre-filled forms
    downtime_mrn TEXT,            -- pool MRN for blank stock
    encounter TEXT,
    accession TEXT,
    ward TEXT,
    bed TEXT,
    snapshot_id INTEGER,
    printed_at TEXT NOT NULL,
    context TEXT                  -- JSON: what was pre-printed (e.g. the MAR's medications)
);
CREATE INDEX forms_batch ON forms (batch_id);
CREATE INDEX forms_ward ON forms (ward);

CREATE TABLE sheets (
    sheet_id TEXT PRIMARY KEY,
    form_id TEXT NOT NULL REFERENCES forms(form_id),
    template TEXT NOT NULL,
    version INTEGER NOT NULL,
    page INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    layout_hash TEXT NOT NULL REFERENCES layouts(hash),
    batch_id INTEGER NOT NULL,
    printed_at TEXT NOT NULL
);
CREATE INDEX sheets_form ON sheets (form_id, page);

-- Append-only, hash-chained: each row carries the hash of the previous one.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT,
    before TEXT,
    after TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);
"""

