"""Review station: several clerks at once. A reading handed to a clerk is claimed for a short time
so that the others' queues skip it (fallbackkit/review/queue.py claim_next)."""

SCHEMA = """
-- One row per claimed reading: who has it and until when (unix seconds). A claim is a hint for
-- handing out work, never a lock on deciding: the 409 "decided meanwhile" check still guards that.
CREATE TABLE review_claims (
    reading_id INTEGER PRIMARY KEY REFERENCES readings(reading_id),
    actor TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX review_claims_actor ON review_claims (actor)
"""
