"""Clinical consistency checks a nurse would want flagged on a returned form.

Checks only look at readings that are resolved (accepted by the machine or decided by a person):
a value still waiting for review is unknown, and it is already counted as 'to review'. Each flag
has a stable code (for reports and tests) and a message for a person. Which checks a form gets is
its template's to say (required fields, `when_empty` flags, ranges, the medications section's slot
rules); nothing here tests a template's name.
"""
from __future__ import annotations

import re
from typing import Any

from ..templates.model import Template
from ..templates.values import ValueProblem, parse_number
from .state import Layout, Val

GENERIC_FLAGS = {
    "identity_missing": "blank stock without the patient's name or birth date",
    "required_missing": "a required field is left empty",
    "out_of_range": "a number outside the plausible range its template gives",
}
# The medications section's slot rules (a template lists the ones its chart uses).
SLOT_FLAGS = {
    "one_mark": ("mar_multiple_marks", "more than one of given / held / refused is marked"),
    "marked_needs_time_and_initials": ("mar_slot_incomplete", "a dose is marked but its time or initials are missing"),
    "scheduled_dose_marked": ("mar_dose_unmarked", "a scheduled dose has no mark at all on a day the chart was used"),
    "prn_given_needs_time": ("mar_prn_no_time", "an as-needed (PRN) dose is ticked given without a time"),
    "new_order_written": ("mar_new_order_unreadable", "a new-order row has doses marked but no order written"),
}


_CELL = re.compile(r"c\d+\.")
_DIGITS = re.compile(r"(\d+)")


def _natural(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in _DIGITS.split(name)]


def _flag(code: str, field: str | None, message: str) -> dict[str, Any]:
    return {"code": code, "field": field, "message": message}


def template_of(templates: dict, template: str, version: int) -> Template | None:
    return templates.get(f"{template}@{version}") or templates.get(template)


def _slot_label(layout: Layout, prefix: str, medications: dict[int, dict]) -> str:
    geo = layout.fields.get(f"{prefix}.status") or layout.fields.get(f"{prefix}.given") or {}
    med = medications.get(geo.get("medication"))
    parts = [prefix]
    if med:
        parts.append(" ".join(p for p in (med.get("medication"), med.get("dose"), med.get("route")) if p))
    if geo.get("scheduled"):
        parts.append(f"scheduled {geo['scheduled']}")
    return " — ".join(parts)


_RULES: dict[int, tuple] = {}


def _template_rules(template: Template) -> tuple:
    """What check_page asks of a template on every page, worked out once per template: the fields
    with a `when_empty` flag, the required fields in name order, and the spec of a field name (a
    grid cell c3.pulse has the spec of 'pulse')."""
    found = _RULES.get(id(template))
    if found is not None and found[0] is template:
        return found[1]
    specs = [f for f in template.all_specs() if f.when_empty]
    required = sorted((f for s in template.sections for f in s.fields if f.required and not f.when_empty),
                      key=lambda f: f.name)
    known: dict[str, Any] = {}

    def spec_of(name: str) -> Any:
        if name not in known:
            known[name] = template.spec(name.split(".", 1)[1] if _CELL.match(name) else name)
        return known[name]
    if len(_RULES) > 256:
        _RULES.clear()
    _RULES[id(template)] = (template, (specs, required, spec_of))
    return specs, required, spec_of


class PageCheck:
    """Flags for one page (the chosen capture of one sheet), plus what a form-level check needs."""

    def __init__(self) -> None:
        self.flags: list[dict[str, Any]] = []
        self.used = False                      # MAR: some dose marked on this page
        # MAR: (field, (layout, prefix, medications)) of scheduled slots with no mark: their label is
        # written only if the form was used (a flag then), not for every unmarked slot of every page
        self.unmarked: list[tuple[str, tuple]] = []


def check_page(form: dict[str, Any], layout: Layout, values: dict[str, Val], template: Template | None) -> PageCheck:
    """The flags the template asks for: its medications section's slot rules, each field's
    `when_empty` flag, `required` and `range`, and the blank-stock identity fields."""
    out = PageCheck()
    flags = out.flags
    medications = {m.get("line"): m for m in form["context"].get("medications", [])} if form["context"] else {}
    if template is None:
        return out

    def ok(name: str) -> Val | None:
        v = values.get(name)
        return v if v is not None and v.resolved else None

    meds = template.medications
    rules = set(meds.checks) if meds else set()
    if meds:
        orders_flagged: set[str] = set()
        for prefix in layout.slots:
            status = values.get(f"{prefix}.status")
            given = values.get(f"{prefix}.given")
            mark = status or given
            if mark is None:
                continue
            if status is not None and not status.resolved and status.multiple_marks:
                if "one_mark" in rules:
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
                missing = [what for what, v in (("time", time_v), ("initials", init_v))
                           if v is not None and not v.present]
                if given is not None and time_v is not None and not time_v.present:
                    if "prn_given_needs_time" in rules:
                        flags.append(_flag("mar_prn_no_time", f"{prefix}.time",
                                           f"{_slot_label(layout, prefix, medications)}: PRN dose ticked given"
                                           " without a time"))
                    missing = [m for m in missing if m != "time"]
                if missing and "marked_needs_time_and_initials" in rules:
                    flags.append(_flag("mar_slot_incomplete", f"{prefix}.{missing[0]}",
                                       f"{_slot_label(layout, prefix, medications)}: marked {mark.value if status is not None else 'given'}"
                                       f" but no {' and no '.join(missing)}"))
                row = prefix.split(".")[0]
                order = ok(f"{row}.order")
                if order is not None and not order.present and row not in orders_flagged \
                        and "new_order_written" in rules:
                    orders_flagged.add(row)
                    flags.append(_flag("mar_new_order_unreadable", f"{row}.order",
                                       f"{row}: doses are marked on a new-order row with no order written"))
            elif prefix.startswith("m") and layout.fields.get(f"{prefix}.status", {}).get("scheduled") \
                    and "scheduled_dose_marked" in rules:
                out.unmarked.append((f"{prefix}.status", (layout, prefix, medications)))
    specs, required, spec_of = _template_rules(template)
    for spec in specs:
        v = ok(spec.name)
        if v is None or v.present:
            continue
        other = values.get(spec.when_empty.unless_written) if spec.when_empty.unless_written else None
        if other is not None and (not other.resolved or other.present):
            continue
        flags.append(_flag(spec.when_empty.flag, spec.name, spec.when_empty.message))
    if form.get("downtime_mrn") and "patient_name" in layout.fields:
        for name, what in (("patient_name", "name"), ("patient_birth_date", "birth date")):
            v = ok(name)
            if v is not None and not v.present:
                flags.append(_flag("identity_missing", name,
                                   f"blank-stock form {form['downtime_mrn']}: the patient's {what} is not written"))
    for spec in required:
        if spec.name not in layout.fields:
            continue
        if form.get("patient_mrn") and spec.required_on == "blank-stock":
            continue  # the census name and birth date are printed in the header of a patient's form
        v = ok(spec.name)
        if v is not None and not v.present:
            flags.append(_flag("required_missing", spec.name, f"required field {spec.name} is empty"))
    # ranges check people's values (Val: v[12] is v.source, v[11] v.resolved)
    decided = [n for n, v in values.items() if v[12] != "machine" and v[11]]
    for name in sorted(decided, key=_natural):
        v = values[name]
        if not v.present:
            continue
        spec = spec_of(name)
        if spec is None or spec.range is None:
            continue
        try:
            number = parse_number(v.value)
        except ValueProblem:
            continue  # not a number: the export says so; a range says nothing about it
        low, high = spec.range
        if not low <= number <= high:
            flags.append(_flag("out_of_range", name, f"{name} is {v.value}: outside the plausible "
                                                     f"{low:g}-{high:g} — check the paper"))
    return out


IDENTITY_FIELDS = ("patient_name", "patient_birth_date")


def checked_fields(layout: Layout, template: Template | None) -> set[str]:
    """The fields check_page looks up by name on a page of this layout. It also reads every
    decided reading (ranges check people's values); nothing else. A full reconcile fetches a
    page's readings of these fields, the decided ones and those still waiting for a person, not
    all of them (issue 16: a vitals grid's cells are most of a store's readings and no check
    reads an undecided one). Keep it in step with check_page: test_summary compares the kept
    summaries (every reading) with the full recompute (these) after random work."""
    if template is None:
        return set()
    names: set[str] = set(IDENTITY_FIELDS)
    if template.medications:
        for prefix in layout.slots:
            names.update(f"{prefix}.{part}" for part in ("status", "given", "time", "initials"))
            names.add(f"{prefix.split('.')[0]}.order")
    specs, required, _spec_of = _template_rules(template)
    for spec in specs:
        names.add(spec.name)
        if spec.when_empty.unless_written:
            names.add(spec.when_empty.unless_written)
    names.update(spec.name for spec in required)
    return names


def form_flags(pages: list[PageCheck]) -> list[dict[str, Any]]:
    flags = [f for p in pages for f in p.flags]
    if any(p.used for p in pages):
        for p in pages:
            for name, slot in p.unmarked:
                flags.append(_flag("mar_dose_unmarked", name,
                                   f"{_slot_label(*slot)}: no mark (given / held / refused) on a day the chart was used"))
    return flags
