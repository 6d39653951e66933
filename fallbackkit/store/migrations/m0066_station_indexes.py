"""Indexes the review station's bounded queries need at 100,000 captures (issue 16): a clerk's own
recent decisions (progress, undo-my-last) without walking everyone's; the forms of a downtime MRN
(a link marks them, the worklist names them); the reasons readings were sent to review for and the
forms' templates (the filters' choices); forms carrying a pool accession or encounter number
(the identities screen)."""

SCHEMA = """
CREATE INDEX IF NOT EXISTS reviews_actor ON reviews (actor, review_id);
CREATE INDEX IF NOT EXISTS forms_downtime_mrn ON forms (downtime_mrn) WHERE downtime_mrn IS NOT NULL;
CREATE INDEX IF NOT EXISTS readings_review_reason ON readings (reason) WHERE status = 'review';
CREATE INDEX IF NOT EXISTS forms_template ON forms (template);
CREATE INDEX IF NOT EXISTS forms_accession ON forms (accession) WHERE accession IS NOT NULL;
CREATE INDEX IF NOT EXISTS forms_encounter ON forms (encounter)
"""
