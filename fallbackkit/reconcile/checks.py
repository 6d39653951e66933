"""Clinical consistency checks a nurse would want flagged on a returned form.

Checks only look at readings that are resolved (accepted by the machine or decided by a person):
a value still waiting for review is unknown, and it is already counted as 'to review'. Each flag
has a stable code (for reports and tests) and a message for a person.
"""
from __future__ import annotations

from typing import Any

from .state import Layout, Val

FLAG_CODES = {
    "mar_multiple_marks": "more than one of given / held / refused is marked",
    "mar_slot_incomplete": "a dose is marked but its time or initials are missing",
    "mar_dose_unmarked": "a scheduled dose has no mark at all on a day the chart was used",
    "mar_prn_no_time": "an as-needed (PRN) dose is ticked given without a time",
    "mar_new_order_unreadable": "a new-order row has doses marked but no order written",
    "lab_no_test": "no test is ticked and no other test is written",
    "lab_no_collection_time": "the collection date and time are not written",
    "allergy_not_recorded": "the allergy question is left empty",
    "identity_missing": "blank stock without the patient's name or birth date",
    "required_missing": "a required field is left empty",
}

# Fields whose emptiness has its own, more specific flag.
_SPECIFIC = {"tests", "collected_at", "allergies_known"}
_PREPRINTED = {"last_name", "first_name", "birth_date"}


def _flag(code: str, field: str | None, message: str) -> dict[str, Any]:
    return {"code": code, "field": field, "message": message}


def required_fields(templates: dict, template: str, version: int) -> set[str]:
    t = templates.get(f"{template}@{version}") or templates.get(template)
    if t is None:
        return set()
    return {f.name for s in t.sections for f in s.fields if f.required}


def _slot_label(layout: Layout, prefix: str, medications: dict[int, dict]) -> str:
    geo = layout.fields.get(f"{prefix}.status") or layout.fields.get(f"{prefix}.given") or {}
    med = medications.get(geo.get("medication"))
    parts = [prefix]
    if med:
        parts.append(" ".join(p for p in (med.get("medication"), med.get("dose"), med.get("route")) if p))
    if geo.get("scheduled"):
        parts.append(f"scheduled {geo['scheduled']}")
    return " — ".join(parts)


class PageCheck:
    """Flags for one page (the chosen capture of one sheet), plus what a form-level check needs."""

    def __init__(self) -> None:
        self.flags: list[dict[str, Any]] = []
        self.used = False                      # MAR: some dose marked on this page
        self.unmarked: list[tuple[str, str]] = []  # MAR: (field, label) of scheduled slots with no mark


def check_page(form: dict[str, Any], layout: Layout, values: dict[str, Val], required: set[str]) -> PageCheck:
    out = PageCheck()
    template = form["template"]
    flags = out.flags
    medications = {m.get("line"): m for m in form["context"].get("medications", [])} if form["context"] else {}

    def ok(name: str) -> Val | None:
        v = values.get(name)
        return v if v is not None and v.resolved else None

    if template == "mar":
        orders_flagged: set[str] = set()
        for prefix in layout.slots:
            status = values.get(f"{prefix}.status")
            given = values.get(f"{prefix}.given")
            mark = status or given
            if mark is None:
                continue
            if status is not None and not status.resolved and status.multiple_marks:
                label = _slot_label(layout, prefix, medications)
                flags.append(_flag("mar_multiple_marks", f"{prefix}.status",
                                   f"{label}: more than one of given / held / refused is marked — check the paper"))
                out.used = True
                continue
            if not mark.resolved:
                continue
            time_v, init_v = ok(f"{prefix}.time"), ok(f"{prefix}.initials")
            if mark.present:
                out.used = True
                label = _slot_label(layout, prefix, medications)
                missing = [what for what, v in (("time", time_v), ("initials", init_v))
                           if v is not None and not v.present]
                if given is not None and time_v is not None and not time_v.present:
                    flags.append(_flag("mar_prn_no_time", f"{prefix}.time",
                                       f"{label}: PRN dose ticked given without a time"))
                    missing = [m for m in missing if m != "time"]
                if missing:
                    flags.append(_flag("mar_slot_incomplete", f"{prefix}.{missing[0]}",
                                       f"{label}: marked {mark.value if status is not None else 'given'}"
                                       f" but no {' and no '.join(missing)}"))
                row = prefix.split(".")[0]
                order = ok(f"{row}.order")
                if order is not None and not order.present and row not in orders_flagged:
                    orders_flagged.add(row)
                    flags.append(_flag("mar_new_order_unreadable", f"{row}.order",
                                       f"{row}: doses are marked on a new-order row with no order written"))
            elif prefix.startswith("m") and layout.fields.get(f"{prefix}.status", {}).get("scheduled"):
                out.unmarked.append((f"{prefix}.status", _slot_label(layout, prefix, medications)))
    elif template == "lab-request":
        tests, other = ok("tests"), values.get("other_tests")
        if tests is not None and not tests.present and (other is None or (other.resolved and not other.present)):
            flags.append(_flag("lab_no_test", "tests", "lab request with no test ticked and no other test written"))
        collected = ok("collected_at")
        if collected is not None and not collected.present:
            flags.append(_flag("lab_no_collection_time", "collected_at",
                               "lab request without the collection date and time"))
    elif template == "registration":
        allergy = ok("allergies_known")
        if allergy is not None and not allergy.present:
            flags.append(_flag("allergy_not_recorded", "allergies_known",
                               "registration with the allergy question (yes / no / unknown) left empty"))
    if form.get("downtime_mrn") and "patient_name" in layout.fields:
        for name, what in (("patient_name", "name"), ("patient_birth_date", "birth date")):
            v = ok(name)
            if v is not None and not v.present:
                flags.append(_flag("identity_missing", name,
                                   f"blank-stock form {form['downtime_mrn']}: the patient's {what} is not written"))
    for name in sorted(required):
        if name in _SPECIFIC or name not in layout.fields:
            continue
        if form.get("patient_mrn") and name in _PREPRINTED:
            continue  # the census name and birth date are printed in the header of a patient's form
        v = ok(name)
        if v is not None and not v.present:
            flags.append(_flag("required_missing", name, f"required field {name} is empty"))
    return out


def form_flags(pages: list[PageCheck]) -> list[dict[str, Any]]:
    flags = [f for p in pages for f in p.flags]
    if any(p.used for p in pages):
        for p in pages:
            for name, label in p.unmarked:
                flags.append(_flag("mar_dose_unmarked", name,
                                   f"{label}: no mark (given / held / refused) on a day the chart was used"))
    return flags
