"""A large merge inserts its readings without their secondary indexes and builds them once at the
end (issue 16: inserting 3.7 M readings into four indexes was half of a merge's time at 100,000
captures). `indexes_set_aside` holds the definition of each index set aside, written in the
same transaction as its DROP, so that a merge killed midway builds them again when run again.
`readings_status (status)` goes: it held exactly what `readings_queue (status, reading_id)` holds
(reading_id is the rowid), and every query that used it uses the other."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS indexes_set_aside (
    name TEXT PRIMARY KEY,
    sql TEXT NOT NULL
);
DROP INDEX IF EXISTS readings_status
"""
