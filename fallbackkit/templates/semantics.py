"""What a form means, as its template declares it: re-entry items, FHIR codes and checks.

Stage code never tests a template's name: the worklist asks `Template.reentry` which items a form
makes, the consistency checks ask each field for its rules (`required`, `when_empty`, `range`) and
the medications section for its slot rules, and the FHIR export asks a field for its
`observation` code and an item for the resource it becomes. docs/templates.md is the reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ITEM_EACH = ("form", "column", "fields", "slot", "new-order")
ITEM_KINDS = ("registration", "order", "result", "medication", "vitals")  # back-load order
FHIR_RESOURCES = ("none", "observation", "medication-administration", "service-request", "registration")
SLOT_CHECKS = ("one_mark", "marked_needs_time_and_initials", "prn_given_needs_time", "new_order_written",
               "scheduled_dose_marked")
SERVICE_REQUEST_ROLES = ("tests", "other_tests", "priority", "specimen", "requester", "collected",
                         "collector", "flag_notes", "text_notes")
REGISTRATION_ROLES = ("family", "given", "birth_date", "gender", "encounter_start", "national_number", "address",
                      "phone", "contact", "attending", "reason", "allergies_known", "allergies", "alerts",
                      "arrival_mode", "admission_type", "recorder")
# medications section: roles name the part of a slot (m1.s2.held) or of a new-order row (n1.prescriber)
SLOT_ROLES = ("held_reason", "prn_reason", "effect")
NEW_ORDER_ROLES = ("prescriber", "ordered")
SLOT_PARTS = {"held_reason": "held", "prn_reason": "reason", "effect": "effect"}  # what the layout names them
ORDER_PARTS = {"prescriber": "prescriber", "ordered": "ordered"}
_CODE_RE_TEXT = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


CODE_SYSTEMS = {"loinc": "http://loinc.org", "snomed": "http://snomed.info/sct",
                "v2-0487": "http://terminology.hl7.org/CodeSystem/v2-0487",
                "v3-RouteOfAdministration": "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"}


@dataclass(frozen=True)
class Coding:
    system: str   # a URI (the short names of CODE_SYSTEMS are expanded)
    code: str
    display: str

    def as_fhir(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True)
class Observation:
    """A field exported as one FHIR Observation (LOINC code, UCUM unit, or coded options)."""
    display: str
    loinc: str | None = None
    unit: str | None = None        # UCUM code, e.g. Cel, /min, mm[Hg]
    unit_text: str | None = None   # what a person reads, e.g. °C (default: the UCUM code)
    codes: dict[str, str] = field(default_factory=dict)  # choice value -> display (valueCodeableConcept)
    category: str = "vital-signs"  # observation-category code
    more_codes: tuple[Coding, ...] = ()  # further codings of the same observation (SpO2: 2708-6 with 59408-5)
    panel: Coding | None = None    # a component of this panel (blood pressure 85354-9), one Observation per column

    def codings(self) -> list[dict[str, str]]:
        first = [{"system": "http://loinc.org", "code": self.loinc, "display": self.display}] if self.loinc else []
        return first + [c.as_fhir() for c in self.more_codes]


@dataclass(frozen=True)
class FhirMeaning:
    """Template-wide FHIR codes (`fhir:`): the document type of a scanned page, and standard codes
    for the options of choice fields (lab tests, specimen types, AVPU...), a table a hospital can
    override in its copy of the template. An option without a standard code keeps the kit's local
    code system (one URI per kind)."""
    document: Coding | None = None
    codes: dict[str, dict[str, tuple[Coding, ...]]] = field(default_factory=dict)  # field -> option -> codings
    routes: dict[str, tuple[Coding, ...]] = field(default_factory=dict)  # census route (upper case) -> codings
    drug_code_systems: dict[str, str] = field(default_factory=dict)      # census drug_code_system -> URI

    def route(self, text: Any) -> list[dict[str, str]]:
        return [c.as_fhir() for c in self.routes.get(str(text or "").strip().upper(), ())]

    def codings(self, field_name: str, option: str) -> list[dict[str, str]]:
        return [c.as_fhir() for c in self.codes.get(field_name, {}).get(option, ())]


@dataclass(frozen=True)
class WhenEmpty:
    """A flag of its own when the field is left empty (instead of the generic required_missing)."""
    flag: str
    message: str
    unless_written: str | None = None  # no flag when this other field is written


@dataclass(frozen=True)
class SummaryPart:
    """One piece of a form item's one-line summary: fixed text, or field values with text around."""
    text: str = ""
    fields: tuple[str, ...] = ()
    sep: str = ", "
    before: str = ""
    after: str = ""
    otherwise: str = ""   # shown when the fields are empty
    census_name: bool = False  # the census name when the fields are empty
    care_time: bool = False    # the item's care time instead of fields


@dataclass(frozen=True)
class ItemRule:
    """Which re-entry items a form makes, and what each becomes in FHIR."""
    each: str                 # form | column (grid) | fields (a named set) | slot | new-order (medications)
    kind: str                 # registration | order | result | medication | vitals
    fhir: str = "none"
    id: str = ""              # item id suffix for form and fields items
    label: str = ""           # first words of the summary
    fields: tuple[str, ...] = ()
    date: str | None = None   # the field holding the day (columns, slots, fields)
    date_words: str = "date"  # how an export reason names it: "the observation date (obs_date) is blank"
    time: str | None = None   # column: the grid row holding the time of the column
    performer: str | None = None  # column: the grid row holding the initials of who observed;
    #                               slot: the slot's part holding them (initials), put to a name by the legend
    care_time: tuple[str, ...] = ()  # form: fields giving the care time, the first written wins
    summary: tuple[SummaryPart, ...] = ()
    roles: dict[str, Any] = field(default_factory=dict)  # FHIR role -> field(s) (service-request, registration)
    codes: tuple[tuple[str, str, str], ...] = ()  # slot: (role, code, meaning in en), from the medications section


def summary_text(parts: tuple[SummaryPart, ...], values: dict[str, Any], care: str | None,
                 census_name: str | None) -> str:
    out = []
    for p in parts:
        if p.text:
            out.append(p.text)
            continue
        if p.care_time:
            shown = care
        else:
            got = []
            for n in p.fields:
                v = values.get(n)
                if isinstance(v, list):
                    got.extend(str(x) for x in v)
                elif v:
                    got.append(str(v))
            shown = p.sep.join(got) or (census_name if p.census_name else None)
        if shown:
            out.append(f"{p.before}{shown}{p.after}")
        elif p.otherwise:
            out.append(p.otherwise)
    return "".join(out)


class SemanticsChecker:
    """Validation of the meaning keys, with the template checker's file/field/problem messages."""

    def __init__(self, check) -> None:
        self.check = check

    def _str(self, data: dict, key: str, where: str, default: str | None = None, choices=None) -> str | None:
        value = data.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.check.fail(where, f"'{key}' must be a text")
        if choices and value not in choices:
            raise self.check.fail(where, f"'{key}' must be one of {', '.join(choices)}")
        return value

    def observation(self, data: Any, where: str, spec_type: str, options: tuple) -> Observation:
        where = f"{where} observation"
        if not isinstance(data, dict):
            raise self.check.fail(where, "must be a mapping (display, loinc, unit, codes)")
        self.check.keys(data, {"display", "loinc", "unit", "unit_text", "codes", "category", "more_codes", "panel"},
                        where)
        import re
        loinc = data.get("loinc")
        if loinc is not None:
            loinc = str(loinc)
            if not re.fullmatch(r"\d{1,7}-\d", loinc):
                raise self.check.fail(where, f"loinc {loinc!r} is not a LOINC code like 8310-5")
        display = self._str(data, "display", where)
        if display is None:
            raise self.check.fail(where, "'display' (the code's name, e.g. Body temperature) is missing")
        codes: dict[str, str] = {}
        if spec_type in ("choice",):
            raw = data.get("codes")
            values = [o.value for o in options]
            if not isinstance(raw, dict) or sorted(raw) != sorted(values):
                raise self.check.fail(where, f"'codes' must give a display for each option: {', '.join(values)}")
            codes = {v: str(raw[v]) for v in values}
        elif "codes" in data:
            raise self.check.fail(where, f"'codes' is for choice fields, not a {spec_type}")
        unit = self._str(data, "unit", where)
        if spec_type == "number" and unit is None:
            raise self.check.fail(where, "a number needs its UCUM 'unit' (e.g. Cel, /min, mm[Hg], {score})")
        if spec_type not in ("number", "choice"):
            raise self.check.fail(where, f"a {spec_type} cannot be exported as an observation value")
        more = data.get("more_codes", [])
        if not isinstance(more, list):
            raise self.check.fail(where, "'more_codes' must be a list of codings")
        panel = self.coding(data["panel"], f"{where} panel") if "panel" in data else None
        if panel is not None and spec_type != "number":
            raise self.check.fail(where, "a panel component must be a number")
        return Observation(display, loinc, unit, self._str(data, "unit_text", where, unit), codes,
                           self._str(data, "category", where, "vital-signs",
                                     ("vital-signs", "exam", "survey", "laboratory")),
                           tuple(self.coding(c, f"{where} more_codes") for c in more), panel)

    def coding(self, data: Any, where: str) -> Coding:
        if not isinstance(data, dict):
            raise self.check.fail(where, "must be a mapping with system, code and display")
        self.check.keys(data, {"system", "code", "display"}, where)
        system = self._str(data, "system", where)
        code = data.get("code")
        display = self._str(data, "display", where)
        if system is None or code is None or display is None:
            raise self.check.fail(where, "needs system, code and display")
        system = CODE_SYSTEMS.get(system, system)
        if ":" not in system:
            raise self.check.fail(where, f"system {system!r} must be a URI or one of {', '.join(CODE_SYSTEMS)}")
        import re
        if system == CODE_SYSTEMS["loinc"] and not re.fullmatch(r"(LA)?\d{1,7}-\d", str(code)):
            raise self.check.fail(where, f"loinc {code!r} is not a LOINC code like 8310-5 or LA9340-6")
        return Coding(system, str(code), display)

    def fhir(self, data: Any, where: str, options: dict[str, tuple[str, ...]]) -> FhirMeaning:
        """`fhir: {document: {...}, codes: {field: {option: coding or [codings]}}}`; options: the
        option values of each choice field, so that a code table names only what exists."""
        if not isinstance(data, dict):
            raise self.check.fail(where, "must be a mapping (document, codes)")
        self.check.keys(data, {"document", "codes", "routes", "drug_code_systems"}, where)
        document = self.coding(data["document"], f"{where} document") if "document" in data else None
        codes: dict[str, dict[str, tuple[Coding, ...]]] = {}
        raw = data.get("codes", {})
        if not isinstance(raw, dict):
            raise self.check.fail(f"{where} codes", "must map field names to option tables")
        for name, table in raw.items():
            w = f"{where} codes {name}"
            if name not in options:
                raise self.check.fail(w, f"{name!r} is not a choice field of the template")
            if not isinstance(table, dict):
                raise self.check.fail(w, "must map option values to codings")
            codes[name] = {}
            for option, got in table.items():
                if str(option) not in options[name]:
                    raise self.check.fail(w, f"{option!r} is not an option of {name}: {', '.join(options[name])}")
                got = got if isinstance(got, list) else [got]
                codes[name][str(option)] = tuple(self.coding(c, f"{w} {option}") for c in got)
        raw_routes = data.get("routes", {})
        if not isinstance(raw_routes, dict):
            raise self.check.fail(f"{where} routes", "must map census route texts (PO, IV...) to codings")
        routes = {str(k).strip().upper(): tuple(self.coding(c, f"{where} routes {k}")
                                                for c in (v if isinstance(v, list) else [v]))
                  for k, v in raw_routes.items()}
        systems = data.get("drug_code_systems", {})
        if not isinstance(systems, dict) or any(not isinstance(v, str) or ":" not in v for v in systems.values()):
            raise self.check.fail(f"{where} drug_code_systems", "must map a census drug_code_system to a URI")
        return FhirMeaning(document, codes, routes, {str(k).upper(): v for k, v in systems.items()})

    def when_empty(self, data: Any, where: str) -> WhenEmpty:
        where = f"{where} when_empty"
        if not isinstance(data, dict):
            raise self.check.fail(where, "must be a mapping with flag and message")
        self.check.keys(data, {"flag", "message", "unless_written"}, where)
        import re
        flag = data.get("flag")
        if not isinstance(flag, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", flag):
            raise self.check.fail(where, "'flag' must be a code of lower-case letters, digits and _")
        message = self._str(data, "message", where)
        if message is None:
            raise self.check.fail(where, "'message' (what a person reads) is missing")
        return WhenEmpty(flag, message, self._str(data, "unless_written", where))

    def slot_checks(self, data: Any, where: str) -> tuple[str, ...]:
        if not isinstance(data, list) or any(c not in SLOT_CHECKS for c in data):
            raise self.check.fail(f"{where} checks", f"must be a list drawn from {', '.join(SLOT_CHECKS)}")
        return tuple(data)

    def summary(self, data: Any, where: str) -> tuple[SummaryPart, ...]:
        if not isinstance(data, list):
            raise self.check.fail(f"{where} summary", "must be a list of parts")
        parts = []
        for i, raw in enumerate(data, 1):
            w = f"{where} summary part {i}"
            if isinstance(raw, str):
                parts.append(SummaryPart(text=raw))
                continue
            if not isinstance(raw, dict):
                raise self.check.fail(w, "must be a text or a mapping")
            self.check.keys(raw, {"fields", "sep", "before", "after", "otherwise", "census_name", "care_time"}, w)
            fields = raw.get("fields", [])
            if isinstance(fields, str):
                fields = [fields]
            if not isinstance(fields, list) or any(not isinstance(f, str) for f in fields):
                raise self.check.fail(w, "'fields' must be a field name or a list of them")
            if not fields and not raw.get("care_time"):
                raise self.check.fail(w, "needs 'fields' or 'care_time: true'")
            parts.append(SummaryPart("", tuple(fields), str(raw.get("sep", ", ")), str(raw.get("before", "")),
                                     str(raw.get("after", "")), str(raw.get("otherwise", "")),
                                     bool(raw.get("census_name", False)), bool(raw.get("care_time", False))))
        return tuple(parts)

    def item(self, data: Any, where: str) -> ItemRule:
        if not isinstance(data, dict):
            raise self.check.fail(where, "a re-entry item must be a mapping")
        self.check.keys(data, {"each", "kind", "fhir", "id", "label", "fields", "date", "date_words", "time",
                               "performer", "care_time", "summary", "roles"}, where)
        each = self._str(data, "each", where, None, ITEM_EACH)
        if each is None:
            raise self.check.fail(where, f"'each' must be one of {', '.join(ITEM_EACH)}")
        kind = self._str(data, "kind", where, None, ITEM_KINDS)
        if kind is None:
            raise self.check.fail(where, f"'kind' must be one of {', '.join(ITEM_KINDS)}")
        fhir = self._str(data, "fhir", where, "none", FHIR_RESOURCES)
        item_id = self._str(data, "id", where) or ""
        if each in ("form", "fields") and not item_id:
            raise self.check.fail(where, f"an item made once per {each} needs an 'id' (e.g. {kind})")
        if item_id:
            import re
            if not re.fullmatch(r"[a-z][a-z0-9_-]*", item_id):
                raise self.check.fail(where, "'id' must be lower-case letters, digits, '-' and '_'")
        names = data.get("fields", [])
        if not isinstance(names, list) or any(not isinstance(n, str) for n in names):
            raise self.check.fail(where, "'fields' must be a list of field names")
        if each == "fields" and not names:
            raise self.check.fail(where, "an item of named fields needs 'fields'")
        care = data.get("care_time", [])
        care = [care] if isinstance(care, str) else care
        if not isinstance(care, list):
            raise self.check.fail(where, "'care_time' must be a field name or a list of them")
        roles = data.get("roles", {})
        allowed = {"service-request": SERVICE_REQUEST_ROLES, "registration": REGISTRATION_ROLES}.get(fhir, ())
        if each == "slot":
            allowed = SLOT_ROLES
        elif each == "new-order":
            allowed = NEW_ORDER_ROLES
        if not isinstance(roles, dict) or any(r not in allowed for r in roles):
            raise self.check.fail(f"{where} roles", f"for fhir {fhir} the roles are: {', '.join(allowed) or 'none'}")
        if fhir == "service-request" and not {"tests", "collected"} <= set(roles):
            raise self.check.fail(f"{where} roles", "a service-request needs the roles 'tests' and 'collected'")
        rule = ItemRule(each, kind, fhir, item_id, str(data.get("label", "")), tuple(names),
                        self._str(data, "date", where), self._str(data, "date_words", where, "date"),
                        self._str(data, "time", where), self._str(data, "performer", where), tuple(care),
                        self.summary(data["summary"], where) if "summary" in data else (),
                        {k: (v if isinstance(v, (str, list, dict)) else str(v)) for k, v in roles.items()})
        if fhir in ("observation", "medication-administration") and not rule.date:
            raise self.check.fail(where, f"fhir {fhir} needs 'date' (the field with the day)")
        if fhir == "observation" and each not in ("column", "fields"):
            raise self.check.fail(where, "fhir observation is for 'each: column' or 'each: fields'")
        if fhir == "medication-administration" and each != "slot":
            raise self.check.fail(where, "fhir medication-administration is for 'each: slot'")
        if each == "column" and fhir == "observation" and not rule.time:
            raise self.check.fail(where, "an observation column needs 'time' (the grid row with the time)")
        return rule

    def cross_check(self, rules: tuple[ItemRule, ...], names: set[str], has_grid: bool, has_meds: bool,
                    parts: set[str] = frozenset()) -> None:
        """Every field an item names exists; column items need a grid, slots a medications section.
        parts: what the medications section prints per slot or row (status, time, initials, held, ...)."""
        for i, r in enumerate(rules, 1):
            where = f"reentry item {i}"
            if r.each == "column" and not has_grid:
                raise self.check.fail(where, "'each: column' needs a grid section")
            if r.each in ("slot", "new-order") and not has_meds:
                raise self.check.fail(where, f"'each: {r.each}' needs a medications section")
            wanted = list(r.fields) + list(r.care_time) + [n for n in (r.date, r.time) if n]
            if r.performer and r.each != "slot":
                wanted.append(r.performer)
            wanted += [n for p in r.summary for n in p.fields]
            if r.each in ("slot", "new-order"):
                for role, part in list(r.roles.items()) + ([("performer", r.performer)] if r.performer else []):
                    if part not in parts:
                        raise self.check.fail(where, f"role {role} names {part!r}, which the medications section"
                                              f" does not print (it prints: {', '.join(sorted(parts))})")
            else:
                for v in r.roles.values():
                    wanted += list(v) if isinstance(v, (list, dict)) else [v]
            for n in wanted:
                if n not in names:
                    raise self.check.fail(where, f"names field {n!r}, which the template does not have")
