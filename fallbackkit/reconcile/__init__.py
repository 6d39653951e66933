"""Reconciliation: grouping captures into forms, gaps, duplicates, conflicts, consistency flags,
identity links, the re-entry worklist, audit verification and merging scanning stations."""
from .auditlog import verify_chain
from .core import form_readings, reconcile, resolve_conflict, resolve_sheet_from_capture, ward_progress
from .identity import (census_names, identity_preview, link_identity, list_identities, no_suggestion_reason, patient_name, suggest_identities,
                       unlink_identity, unlinked_count)
from .merge import merge_store
from .worklist import STATUSES, WorkItem, check_status, get_item, mark_item, worklist

__all__ = ["reconcile", "form_readings", "resolve_conflict", "resolve_sheet_from_capture", "list_identities", "link_identity",
           "unlink_identity", "suggest_identities", "identity_preview", "no_suggestion_reason", "worklist", "WorkItem", "get_item", "mark_item",
           "verify_chain", "merge_store", "ward_progress", "census_names", "patient_name", "unlinked_count", "STATUSES", "check_status"]
