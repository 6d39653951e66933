"""Indexes the review station's bounded queries need at 100,000 captures (issue 16): a clerk's own
recent decisions (progress, undo-my-last) without walking everyone's; the forms of a downtime MRN
(a link marks them, the worklist names them)."""

SCHEMA = """
CREATE INDEX IF NOT EXISTS reviews_actor ON reviews (actor, review_id);
CREATE INDEX IF NOT EXISTS forms_downtime_mrn ON forms (downtime_mrn) WHERE downtime_mrn IS NOT NULL
"""
