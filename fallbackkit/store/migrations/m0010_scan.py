"""Scan-back: input files, page captures, field readings, quarantine."""

SCHEMA = """
-- One row per distinct input file (by content). Re-scanning the same bytes is a no-op.
CREATE TABLE input_files (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    kind TEXT,                      -- pdf | tiff | png | jpeg | unknown
    pages INTEGER,                  -- known once opened
    status TEXT NOT NULL,           -- started | done | failed
    error TEXT,                     -- what went wrong and what to do
    archive_path TEXT,              -- original bytes, relative to the kit: archive/ab/abcdef...ext
    first_path TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT
);

-- Every time a path is handed to `scan`, with what happened (new, already scanned, failed).
CREATE TABLE input_sightings (
    id INTEGER PRIMARY KEY,
    sha256 TEXT,
    path TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    outcome TEXT NOT NULL
);

-- One scanned image of one page. source: scan | assigned (a clerk identified a quarantined page).
CREATE TABLE captures (
    capture_id INTEGER PRIMARY KEY,
    file_sha256 TEXT NOT NULL REFERENCES input_files(sha256),
    page_index INTEGER NOT NULL,    -- 1-based page within the input file
    source TEXT NOT NULL DEFAULT 'scan',
    status TEXT NOT NULL,           -- read | quarantined
    sheet_id TEXT,                  -- NULL while quarantined
    form_id TEXT,
    template TEXT,
    version INTEGER,
    page INTEGER,
    pages INTEGER,
    orientation INTEGER,            -- 0/90/180/270: how the page lay in the image
    transform TEXT,                 -- JSON 3x3 homography: page mm -> image px
    fit_error_mm REAL,
    dpi REAL,
    quality TEXT,                   -- JSON: decoder, marks found, contrast, ...
    image_path TEXT,                -- normalised page image for review, relative to the kit
    width_px INTEGER,
    height_px INTEGER,
    duplicate_of INTEGER,           -- an earlier capture of the same sheet
    captured_at TEXT NOT NULL,
    UNIQUE (file_sha256, page_index, source)
);
CREATE INDEX captures_sheet ON captures (sheet_id);
CREATE INDEX captures_form ON captures (form_id);

-- What the machine read for one field of one capture. Raw measures kept: decide late.
CREATE TABLE readings (
    reading_id INTEGER PRIMARY KEY,
    capture_id INTEGER NOT NULL REFERENCES captures(capture_id),
    sheet_id TEXT NOT NULL,
    field TEXT NOT NULL,
    type TEXT NOT NULL,
    raw TEXT NOT NULL,              -- JSON measurements
    value TEXT,                     -- JSON: true/false | option | sorted list | null
    confidence REAL NOT NULL,
    status TEXT NOT NULL,           -- accepted | review
    reason TEXT,                    -- why a person must look
    ink INTEGER,                    -- handwritten types: 1 when there is ink
    crop_path TEXT,                 -- image crop for review, relative to the kit
    UNIQUE (capture_id, field)
);
CREATE INDEX readings_sheet ON readings (sheet_id, field);
CREATE INDEX readings_status ON readings (status);

CREATE TABLE quarantine (
    quarantine_id INTEGER PRIMARY KEY,
    capture_id INTEGER NOT NULL UNIQUE REFERENCES captures(capture_id),
    reason TEXT NOT NULL,           -- no_code | bad_signature | foreign_kit | unknown_sheet | no_marks | poor_fit
    detail TEXT,
    payload TEXT,                   -- the decoded text, if any
    created_at TEXT NOT NULL
);

-- A clerk identified a quarantined page by its printed sheet id (append-only).
CREATE TABLE quarantine_assignments (
    id INTEGER PRIMARY KEY,
    quarantine_id INTEGER NOT NULL REFERENCES quarantine(quarantine_id),
    sheet_id TEXT NOT NULL,
    capture_id INTEGER REFERENCES captures(capture_id),
    actor TEXT NOT NULL,
    at TEXT NOT NULL
);
"""

