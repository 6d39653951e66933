"""The census may give the patient's national number (Belgian INSZ/NISS): the FHIR export sends it
as an identifier when its check digits are right (issue 11)."""

SCHEMA = """
ALTER TABLE patients ADD COLUMN national_number TEXT
"""
