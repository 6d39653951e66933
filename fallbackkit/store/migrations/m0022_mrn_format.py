"""Reconcile: the format of the hospital's real MRNs, checked before a downtime MRN is linked to one.

A regular expression the whole MRN must match, kept in kit_meta under `real_mrn_pattern`; digits
only by default. IT changes it with `fallbackkit identities mrn-format PATTERN` (audited).
"""

SCHEMA = """
INSERT OR IGNORE INTO kit_meta (key, value) VALUES ('real_mrn_pattern', '[0-9]+')
"""
