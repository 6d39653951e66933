"""export stage: CSV/JSON, FHIR R4 re-entry bundles, the reconciliation report, backups."""
from .backup import backup, check, inspect_store, restore
from .collect import write_private
from .fhir import export_fhir
from .report import report_data, write_report
from .tabular import export_table

__all__ = ["backup", "check", "inspect_store", "restore", "write_private", "export_fhir", "report_data",
           "write_report", "export_table"]
