"""Census from real hospital exports: what changed since the previous snapshot (for the import and
the ward cover sheet), a content hash (an unchanged census adds no snapshot), and the medication
order details later exports need (drug code, order id, start/stop dates)."""

SCHEMA = """
ALTER TABLE census_snapshots ADD COLUMN content_sha256 TEXT;
ALTER TABLE census_snapshots ADD COLUMN changes TEXT;          -- JSON: admitted, discharged, moved, allergies
ALTER TABLE census_snapshots ADD COLUMN previous_id INTEGER;
ALTER TABLE medications ADD COLUMN drug_code TEXT;             -- CNK (7 digits) or ATC
ALTER TABLE medications ADD COLUMN drug_code_system TEXT;      -- CNK | ATC
ALTER TABLE medications ADD COLUMN order_id TEXT;
ALTER TABLE medications ADD COLUMN start_date TEXT;            -- YYYY-MM-DD
ALTER TABLE medications ADD COLUMN stop_date TEXT;             -- YYYY-MM-DD; not printed after this day
"""
