"""The audit chain becomes an HMAC keyed by the kit secret from this row on (issue 9).

Rows written before (plain SHA-256, kits made by earlier versions) are kept as they are and still
verified as plain SHA-256: rewriting history would itself be an unaudited change. The first HMAC row
id is recorded here; a store that has this migration but no marker is verified as HMAC throughout.
"""

SCHEMA = """
INSERT OR IGNORE INTO kit_meta (key, value) SELECT 'audit_hmac_from', COALESCE(MAX(id), 0) + 1 FROM audit;
"""
