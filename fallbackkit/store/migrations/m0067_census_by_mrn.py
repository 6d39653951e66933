"""A patient's name by MRN in the newest census snapshot that has them, by index (issue 16): the
reading screen names the patient of every item it shows, and a month of daily census imports
holds thirty snapshots of every bed; without it the lookup walks every snapshot's patients."""

SCHEMA = """
CREATE INDEX IF NOT EXISTS patients_mrn ON patients (mrn, snapshot_id)
"""
