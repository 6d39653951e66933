"""Printing: census snapshots, ward packs, blank stock with downtime ids, PDF rendering."""
from .census import import_census
from .issue import (PrintResult, kit_templates, print_all_wards, print_blank, print_blank_set, print_patient, print_ward,
                    sheet_geometry)

__all__ = ["import_census", "PrintResult", "kit_templates", "print_all_wards", "print_blank", "print_blank_set",
           "print_patient", "print_ward", "sheet_geometry"]
