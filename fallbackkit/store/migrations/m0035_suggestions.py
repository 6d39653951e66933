"""Digit suggestions: what the machine suggested for a comb field when a person decided it, and
whether the decision accepted it or corrected it (accuracy in real use, shown by `report`)."""

SCHEMA = """
ALTER TABLE reviews ADD COLUMN suggestion TEXT;          -- the suggestion shown, NULL when none
ALTER TABLE reviews ADD COLUMN suggestion_outcome TEXT;  -- accepted | corrected, NULL without suggestion
ALTER TABLE reviews ADD COLUMN prefilled INTEGER         -- 1 when the station pre-filled it
"""
