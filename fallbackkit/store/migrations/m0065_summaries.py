"""Summaries kept up to date on write (issue 16): per-form state for the dashboard, the queue chips,
the report's first page, `reconcile` and the worklist screen, so that no view reads every reading.

Two parts:
- the summary tables, written by `fallbackkit.reconcile.summary` from exactly the code the full
  recompute uses (`reconcile --full`), one form at a time;
- `summary_dirty` and the triggers that fill it: every write that can change a form's summary
  (a capture, a reading's status, a decision or undo, an identity link, a worklist mark, a
  quarantined page or its assignment, a new form or sheet, a kit setting) marks the form in the
  same transaction as the write itself, whoever writes (scan, merge, the station, the CLI). The
  summary of a marked form is recomputed before anything reads it.
"""

STATEMENTS = [
    # One row per printed form: its entry of the reconciliation report and the counts views show.
    """CREATE TABLE form_summary (
        form_id TEXT PRIMARY KEY REFERENCES forms(form_id),
        ward TEXT,
        template TEXT NOT NULL,
        patient TEXT,                 -- real MRN (or linked), else the downtime MRN
        pages INTEGER NOT NULL,
        returned INTEGER NOT NULL,
        missing INTEGER NOT NULL,
        in_quarantine INTEGER NOT NULL,
        state TEXT NOT NULL,          -- complete | missing_pages | quarantine_only | never_returned
        duplicates INTEGER NOT NULL,  -- extra captures of its sheets
        conflicts INTEGER NOT NULL,   -- open conflicts
        to_review INTEGER NOT NULL,   -- readings of the chosen captures waiting for a person
        flags INTEGER NOT NULL,       -- consistency flags
        items_pending INTEGER NOT NULL,
        items_entered INTEGER NOT NULL,
        items_not_needed INTEGER NOT NULL
    )""",
    # Apart, so that summing the counts above reads small rows only.
    """CREATE TABLE form_reports (
        form_id TEXT PRIMARY KEY REFERENCES forms(form_id),
        report TEXT NOT NULL          -- the form's entry of `reconcile` (JSON)
    )""",
    "CREATE INDEX form_summary_ward ON form_summary (ward, template)",
    "CREATE INDEX form_summary_open_conflicts ON form_summary (form_id) WHERE conflicts > 0",
    # Readings waiting for a person, per form and reason (the queue's chips and "n of N").
    """CREATE TABLE form_reasons (
        form_id TEXT NOT NULL REFERENCES forms(form_id),
        reason TEXT NOT NULL,
        waiting INTEGER NOT NULL,
        PRIMARY KEY (form_id, reason)
    )""",
    # Sums of form_summary per ward, and of form_reasons per ward, template and reason, kept by
    # adding each recomputed form's change (the dashboard and the queue's chips read a few rows).
    """CREATE TABLE ward_totals (
        ward TEXT PRIMARY KEY,        -- '—' for forms without a ward
        forms INTEGER NOT NULL, pages INTEGER NOT NULL, returned INTEGER NOT NULL, missing INTEGER NOT NULL,
        never_returned INTEGER NOT NULL, complete INTEGER NOT NULL, duplicates INTEGER NOT NULL,
        conflicts INTEGER NOT NULL, to_review INTEGER NOT NULL, flags INTEGER NOT NULL,
        items_pending INTEGER NOT NULL, items_entered INTEGER NOT NULL
    )""",
    """CREATE TABLE reason_totals (
        ward TEXT NOT NULL,
        template TEXT NOT NULL,
        reason TEXT NOT NULL,
        waiting INTEGER NOT NULL,
        PRIMARY KEY (ward, template, reason)
    )""",
    # The re-entry items as the worklist builds them; sort_key orders them in back-load order.
    """CREATE TABLE worklist_items (
        item_id TEXT PRIMARY KEY,
        form_id TEXT NOT NULL REFERENCES forms(form_id),
        ward TEXT,
        patient TEXT,
        status TEXT NOT NULL,
        sort_key TEXT NOT NULL,
        item TEXT NOT NULL            -- WorkItem.as_dict() (JSON)
    )""",
    "CREATE INDEX worklist_items_form ON worklist_items (form_id)",
    "CREATE INDEX worklist_items_order ON worklist_items (status, sort_key)",
    "CREATE INDEX worklist_items_patient ON worklist_items (patient, sort_key)",
    "CREATE INDEX worklist_items_patient_counts ON worklist_items (patient, ward, status, sort_key)",
    # Per patient, ward and status: how many items and the first one's sort key (the worklist
    # screen pages by patient, in the order of each patient's first item).
    """CREATE TABLE worklist_patients (
        patient TEXT,
        ward TEXT,
        status TEXT NOT NULL,
        items INTEGER NOT NULL,
        first_key TEXT NOT NULL
    )""",
    "CREATE INDEX worklist_patients_patient ON worklist_patients (patient, ward, status)",
    "CREATE INDEX worklist_patients_order ON worklist_patients (status, first_key)",
    # Forms whose summary a write changed ('*': which sheets quarantined pages name may have
    # changed; '**': everything, e.g. a kit setting such as the time zone). The triggers test
    # NOT EXISTS rather than INSERT OR IGNORE: an upsert's conflict clause would override theirs.
    "CREATE TABLE summary_dirty (form_id TEXT PRIMARY KEY)",
    """CREATE TRIGGER summary_capture AFTER INSERT ON captures WHEN NEW.sheet_id IS NOT NULL BEGIN
        INSERT INTO summary_dirty (form_id) SELECT DISTINCT form_id FROM sheets x WHERE sheet_id = NEW.sheet_id
            AND NOT EXISTS (SELECT 1 FROM summary_dirty d WHERE d.form_id = x.form_id);
    END""",
    """CREATE TRIGGER summary_capture_changed AFTER UPDATE OF status, sheet_id ON captures BEGIN
        INSERT INTO summary_dirty (form_id) SELECT DISTINCT form_id FROM sheets x
            WHERE sheet_id IN (OLD.sheet_id, NEW.sheet_id)
            AND NOT EXISTS (SELECT 1 FROM summary_dirty d WHERE d.form_id = x.form_id);
    END""",
    """CREATE TRIGGER summary_reading_changed AFTER UPDATE OF value, status, reason, ink ON readings BEGIN
        INSERT INTO summary_dirty (form_id) SELECT DISTINCT form_id FROM sheets x WHERE sheet_id = NEW.sheet_id
            AND NOT EXISTS (SELECT 1 FROM summary_dirty d WHERE d.form_id = x.form_id);
    END""",
    """CREATE TRIGGER summary_review AFTER INSERT ON reviews BEGIN
        INSERT INTO summary_dirty (form_id) SELECT DISTINCT s.form_id FROM readings r
            JOIN sheets s ON s.sheet_id = r.sheet_id WHERE r.reading_id = NEW.reading_id
            AND NOT EXISTS (SELECT 1 FROM summary_dirty d WHERE d.form_id = s.form_id);
    END""",
    """CREATE TRIGGER summary_mark AFTER INSERT ON worklist_marks WHEN instr(NEW.item_id, ':') > 0 BEGIN
        INSERT INTO summary_dirty (form_id)
            SELECT form_id FROM forms x WHERE form_id = substr(NEW.item_id, 1, instr(NEW.item_id, ':') - 1)
            AND NOT EXISTS (SELECT 1 FROM summary_dirty d WHERE d.form_id = x.form_id);
    END""",
    """CREATE TRIGGER summary_link AFTER INSERT ON identity_links BEGIN
        INSERT INTO summary_dirty (form_id) SELECT form_id FROM forms x WHERE (downtime_mrn = NEW.downtime_mrn
            OR downtime_mrn IN (SELECT downtime_mrn FROM identity_links WHERE id = NEW.revokes))
            AND NOT EXISTS (SELECT 1 FROM summary_dirty d WHERE d.form_id = x.form_id);
    END""",
    """CREATE TRIGGER summary_form AFTER INSERT ON forms BEGIN
        INSERT INTO summary_dirty (form_id) SELECT NEW.form_id WHERE NOT EXISTS (SELECT 1 FROM summary_dirty WHERE form_id = NEW.form_id);
    END""",
    """CREATE TRIGGER summary_sheet AFTER INSERT ON sheets BEGIN
        INSERT INTO summary_dirty (form_id) SELECT NEW.form_id WHERE NOT EXISTS (SELECT 1 FROM summary_dirty WHERE form_id = NEW.form_id);
    END""",
    """CREATE TRIGGER summary_quarantine AFTER INSERT ON quarantine BEGIN
        INSERT INTO summary_dirty (form_id) SELECT '*' WHERE NOT EXISTS (SELECT 1 FROM summary_dirty WHERE form_id = '*');
    END""",
    """CREATE TRIGGER summary_quarantine_assigned AFTER INSERT ON quarantine_assignments BEGIN
        INSERT INTO summary_dirty (form_id) SELECT '*' WHERE NOT EXISTS (SELECT 1 FROM summary_dirty WHERE form_id = '*');
    END""",
    """CREATE TRIGGER summary_setting AFTER INSERT ON kit_meta BEGIN
        INSERT INTO summary_dirty (form_id) SELECT '**' WHERE NOT EXISTS (SELECT 1 FROM summary_dirty WHERE form_id = '**');
    END""",
    """CREATE TRIGGER summary_setting_changed AFTER UPDATE ON kit_meta BEGIN
        INSERT INTO summary_dirty (form_id) SELECT '**' WHERE NOT EXISTS (SELECT 1 FROM summary_dirty WHERE form_id = '**');
    END""",
    # An existing store: every form is computed once, before the first read.
    "INSERT INTO summary_dirty (form_id) VALUES ('**')",
]


def apply(db) -> None:
    for statement in STATEMENTS:
        db.conn.execute(statement)
