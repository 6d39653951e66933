"""Template model and validation.

A template is a YAML file: name, version, title, and sections. A section holds either a flow of
`fields`, a `grid` (rows of fields repeated over columns, e.g. vital signs over time), or a
`medications` block (the MAR's rows: one per active medication, PRN rows, blank rows). Nobody
writes coordinates: `layout.py` places everything.

Validation errors name the file, the field and the problem.
"""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import NotFound, TemplateError
from .semantics import FhirMeaning, ItemRule, Observation, SemanticsChecker, WhenEmpty

LANGS = ("en", "fr", "nl")
FIELD_TYPES = ("checkbox", "choice", "multichoice", "number", "datetime", "text", "initials",
               "signature")
MARK_TYPES = ("checkbox", "choice", "multichoice")
HANDWRITTEN_TYPES = ("number", "datetime", "text", "initials", "signature")
DATETIME_FORMATS = ("date", "time", "datetime")
POOL_KINDS = ("mrn", "encounter", "accession")
TRANSCRIBE = ("yes", "ink-only", "no")  # a person types the writing / only confirms ink is there / neither
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: every command loads the templates
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_TEMPLATE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


@dataclass(frozen=True)
class Option:
    value: str
    label: dict[str, str]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    label: dict[str, str]
    options: tuple[Option, ...] = ()
    digits: int = 0          # number: digits before the decimal point
    decimals: int = 0        # number: digits after it
    format: str = "datetime"  # datetime: date | time | datetime
    lines: int = 1           # text: writing lines
    width: float = 0.0       # fraction of the content width; 0 = as narrow as the content allows
    columns: int = 0         # choice/multichoice: options per row (0 = as many as fit)
    required: bool = False
    range: tuple[float, float] | None = None  # number: plausible values (low, high), inclusive
    transcribe: str = ""     # yes | ink-only | no; "" = the type's default (default_transcribe)
    required_on: str = "every-form"  # or blank-stock: a census patient's form has it printed in the header
    when_empty: WhenEmpty | None = None  # a flag of its own when left empty
    observation: Observation | None = None  # FHIR: exported as this Observation

    def __post_init__(self) -> None:
        if not self.transcribe:
            object.__setattr__(self, "transcribe", default_transcribe(self.type))


def default_transcribe(ftype: str) -> str:
    if ftype == "signature":
        return "ink-only"
    return "yes" if ftype in HANDWRITTEN_TYPES else "no"


@dataclass(frozen=True)
class Grid:
    columns: int
    per_band: int
    column_label: dict[str, str]
    rows: tuple[FieldSpec, ...]


@dataclass(frozen=True)
class Medications:
    slots_per_line: int
    max_slots: int
    prn_rows: int
    prn_slots: int
    blank_rows: int
    blank_rows_stock: int
    status: FieldSpec       # the given/held/refused choice
    labels: dict[str, dict[str, str]]
    checks: tuple[str, ...] = ()  # slot rules (semantics.SLOT_CHECKS) flagged on a returned chart
    held_codes: tuple[Option, ...] = ()  # why a dose was held: the digit written in the slot's code box
    prn_effect: FieldSpec | None = None  # a PRN dose's effect, marked (better / same / worse)
    prn_reasons: tuple[Option, ...] = ()  # why a PRN dose was given: the digit written in its code box
    prn_hours: int = 24      # the hours one sheet covers: a q4h PRN gets prn_hours / 4 slots
    prn_max_slots: int = 6

    def prn_slot_count(self, frequency: str | None) -> int:
        """As many slots as the frequency allows over the sheet's hours ("q4h" over 24 h: 6; "every
        8 hours": 3; "max 4x daily": 4); prn_slots when the frequency gives no interval."""
        return prn_slot_count(frequency, self.prn_hours, self.prn_slots, self.prn_max_slots)

    def part_specs(self) -> dict[str, FieldSpec]:
        """The fields printed in each slot or new-order row beyond status, time and initials, as
        specs (their type and range: digit suggestions check a held code against the code list)."""
        out: dict[str, FieldSpec] = {}
        if self.held_codes:
            out["held"] = FieldSpec("held", "number", self.labels["held"], digits=1,
                                    range=(1.0, float(len(self.held_codes))))
        if self.prn_reasons:
            out["reason"] = FieldSpec("reason", "number", self.labels["prn_reason"], digits=1,
                                      range=(1.0, float(len(self.prn_reasons))))
        if self.prn_effect is not None:
            out["effect"] = self.prn_effect
        if "prescriber" in self.labels:
            out["prescriber"] = FieldSpec("prescriber", "text", self.labels["prescriber"])
            out["ordered"] = FieldSpec("ordered", "datetime", self.labels["ordered"], format="time")
        return out

    def held_code_label(self, code: str | None, lang: str = "en") -> str | None:
        opt = next((o for o in self.held_codes if o.value == code), None)
        return opt.label[lang] if opt else None


_EVERY_HOURS = re.compile(r"(?:\bq\s*|every\s+|toutes les\s+|elke\s+|om de\s+)(\d{1,2})\s*(?:h\b|hours?|heures?|uur)",
                          re.IGNORECASE)
_TIMES_A_DAY = re.compile(r"(?:max(?:imum)?\s*)?(\d{1,2})\s*(?:x|times)\s*(?:daily|a day|per day|/\s*(?:d|day|24\s*h))",
                          re.IGNORECASE)


def medication_parts(meds: "Medications") -> set[str]:
    """What the layout prints per slot (m1.s2.<part>) and per new-order row (n1.<part>)."""
    parts = {"status", "given", "time", "initials", "order"}
    if meds.held_codes:
        parts.add("held")
    if meds.prn_reasons:
        parts.add("reason")
    if meds.prn_effect is not None:
        parts.add("effect")
    if "prescriber" in meds.labels:
        parts |= {"prescriber", "ordered"}
    return parts


def prn_slot_count(frequency: str | None, hours: int = 24, default: int = 3, most: int = 6) -> int:
    text = frequency or ""
    every = _EVERY_HOURS.search(text)
    if every and int(every.group(1)) > 0:
        return max(1, min(most, hours // int(every.group(1))))
    times = _TIMES_A_DAY.search(text)
    if times and int(times.group(1)) > 0:
        return max(1, min(most, int(times.group(1)) * hours // 24))
    return default


@dataclass(frozen=True)
class Legend:
    """The initials legend paper MARs carry: one row per nurse who signs on the sheet (initials,
    name, signature), so that initials in a slot can be put to a person."""
    rows: int
    labels: dict[str, dict[str, str]]  # initials, name, signature, note


@dataclass(frozen=True)
class Section:
    title: dict[str, str]
    fields: tuple[FieldSpec, ...] = ()
    grid: Grid | None = None
    medications: Medications | None = None
    legend: Legend | None = None


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    title: dict[str, str]
    patient_bound: bool
    pool_ids: tuple[str, ...]
    sections: tuple[Section, ...]
    source: Path = field(compare=False)
    pack_order: int = 100  # position in a ward pack (registration first, ...)
    reentry: tuple[ItemRule, ...] = ()  # the re-entry items a returned form makes
    fhir: FhirMeaning = field(default_factory=FhirMeaning, compare=False)  # document type, code tables

    @property
    def document(self) -> dict[str, str] | None:
        """The coded type of a scanned page of this form (LOINC), when the template gives one."""
        return self.fhir.document.as_fhir() if self.fhir.document else None

    def spec(self, name: str) -> FieldSpec | None:
        """The field or grid row of this name (a grid cell c3.pulse asks for 'pulse')."""
        for s in self.sections:
            for f in s.fields:
                if f.name == name:
                    return f
            if s.grid:
                for r in s.grid.rows:
                    if r.name == name:
                        return r
        return None

    def all_specs(self) -> list[FieldSpec]:
        return [f for s in self.sections for f in s.fields] + \
            [r for s in self.sections if s.grid for r in s.grid.rows]

    @property
    def medications(self) -> Medications | None:
        return next((s.medications for s in self.sections if s.medications), None)

    @property
    def legend(self) -> Legend | None:
        return next((s.legend for s in self.sections if s.legend), None)

    @property
    def grid(self) -> Grid | None:
        return next((s.grid for s in self.sections if s.grid), None)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def field_names(self) -> list[str]:
        return [f.name for s in self.sections for f in s.fields]


class _Checker:
    def __init__(self, source: Path):
        self.source = source

    def fail(self, where: str, problem: str) -> TemplateError:
        return TemplateError(f"{self.source}: {where}: {problem}",
                             hint="fix the template file and try again")

    def text(self, value: Any, where: str) -> dict[str, str]:
        """A label: a mapping with en, fr and nl (a plain string is refused: forms are multilingual)."""
        if not isinstance(value, dict):
            raise self.fail(where, "label must be a mapping with en, fr and nl")
        missing = [lang for lang in LANGS if not isinstance(value.get(lang), str) or not value[lang].strip()]
        if missing:
            raise self.fail(where, f"label is missing language(s): {', '.join(missing)}")
        extra = set(value) - set(LANGS)
        if extra:
            raise self.fail(where, f"unknown language(s): {', '.join(sorted(extra))}")
        return {lang: value[lang] for lang in LANGS}

    def keys(self, data: dict, allowed: set[str], where: str) -> None:
        unknown = set(data) - allowed
        if unknown:
            raise self.fail(where, f"unknown key(s): {', '.join(sorted(unknown))}")

    def positive_int(self, data: dict, key: str, where: str, default: int | None = None,
                     low: int = 1, high: int = 64) -> int:
        value = data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.fail(where, f"'{key}' must be a whole number from {low} to {high}")
        return value

    def field(self, data: Any, where: str) -> FieldSpec:
        if not isinstance(data, dict):
            raise self.fail(where, "a field must be a mapping")
        name = data.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise self.fail(where, f"field name {name!r} must be lower-case letters, digits and _")
        where = f"{where} '{name}'"
        self.keys(data, {"name", "type", "label", "options", "digits", "decimals", "format",
                         "lines", "width", "columns", "required", "range", "transcribe", "when_empty",
                         "observation"}, where)
        ftype = data.get("type")
        if ftype not in FIELD_TYPES:
            raise self.fail(where, f"type {ftype!r} is not one of {', '.join(FIELD_TYPES)}")
        label = self.text(data.get("label"), f"{where} label")
        options: tuple[Option, ...] = ()
        if ftype in ("choice", "multichoice"):
            raw = data.get("options")
            if not isinstance(raw, list) or len(raw) < 2:
                raise self.fail(where, f"a {ftype} needs a list of at least two options")
            seen = set()
            opts = []
            for i, opt in enumerate(raw, 1):
                if not isinstance(opt, dict) or not isinstance(opt.get("value"), str) \
                        or not _NAME_RE.match(opt["value"]):
                    raise self.fail(f"{where} option {i}", "needs a 'value' of lower-case letters, digits and _")
                if opt["value"] in seen:
                    raise self.fail(f"{where} option {i}", f"duplicate value {opt['value']!r}")
                seen.add(opt["value"])
                opts.append(Option(opt["value"], self.text(opt.get("label"), f"{where} option '{opt['value']}' label")))
            options = tuple(opts)
        elif "options" in data:
            raise self.fail(where, f"a {ftype} field takes no options")
        digits = decimals = 0
        if ftype == "number":
            digits = self.positive_int(data, "digits", where, None, 1, 12)
            decimals = self.positive_int(data, "decimals", where, 0, 0, 4)
        fmt = "datetime"
        if ftype == "datetime":
            fmt = data.get("format", "datetime")
            if fmt not in DATETIME_FORMATS:
                raise self.fail(where, f"format must be one of {', '.join(DATETIME_FORMATS)}")
        lines = self.positive_int(data, "lines", where, 1, 1, 12) if ftype == "text" else 1
        width = data.get("width", 0.0)
        if not isinstance(width, (int, float)) or not 0 <= width <= 1:
            raise self.fail(where, "'width' must be a fraction from 0 to 1")
        columns = self.positive_int(data, "columns", where, 0, 0, 12)
        required = data.get("required", False)
        required_on = "every-form"
        if required == "blank-stock":
            required, required_on = True, "blank-stock"
        if not isinstance(required, bool):
            raise self.fail(where, "'required' must be true, false or blank-stock")
        value_range = None
        if "range" in data:
            raw_range = data["range"]
            if ftype != "number":
                raise self.fail(where, f"'range' is for number fields, not a {ftype}")
            if not isinstance(raw_range, list) or len(raw_range) != 2 or any(
                    not isinstance(x, (int, float)) or isinstance(x, bool) for x in raw_range) \
                    or not raw_range[0] < raw_range[1]:
                raise self.fail(where, "'range' must be [low, high] with two numbers, low below high")
            limit = 10 ** digits
            if raw_range[1] >= limit or raw_range[0] < 0:
                raise self.fail(where, f"'range' {raw_range} does not fit {digits} digit box(es)")
            value_range = (float(raw_range[0]), float(raw_range[1]))
        transcribe = data.get("transcribe", default_transcribe(ftype))
        if transcribe is True:
            transcribe = "yes"  # YAML 1.1 reads a bare yes/no as a boolean
        elif transcribe is False:
            transcribe = "no"
        if transcribe not in TRANSCRIBE:
            raise self.fail(where, f"'transcribe' must be one of {', '.join(TRANSCRIBE)}")
        if transcribe != "no" and ftype not in HANDWRITTEN_TYPES:
            raise self.fail(where, f"a {ftype} is read from its marks: 'transcribe' must be no")
        meaning = SemanticsChecker(self)
        when_empty = meaning.when_empty(data["when_empty"], where) if "when_empty" in data else None
        observation = meaning.observation(data["observation"], where, ftype, options) \
            if "observation" in data else None
        return FieldSpec(name, ftype, label, options, digits, decimals, fmt, lines, float(width),
                         columns, required, value_range, transcribe, required_on, when_empty, observation)

    def section(self, data: Any, where: str) -> Section:
        if not isinstance(data, dict):
            raise self.fail(where, "a section must be a mapping")
        self.keys(data, {"title", "fields", "grid", "medications", "legend"}, where)
        title = self.text(data.get("title"), f"{where} title")
        kinds = [k for k in ("fields", "grid", "medications", "legend") if k in data]
        if len(kinds) != 1:
            raise self.fail(where, "a section needs exactly one of 'fields', 'grid', 'medications', 'legend'")
        if "legend" in data:
            lg = data["legend"]
            lw = f"{where} legend"
            if not isinstance(lg, dict):
                raise self.fail(lw, "must be a mapping (rows, labels)")
            self.keys(lg, {"rows", "labels"}, lw)
            raw = lg.get("labels")
            wanted = ("initials", "name", "signature", "note")
            if not isinstance(raw, dict) or any(k not in raw for k in wanted):
                raise self.fail(lw, f"'labels' must give: {', '.join(wanted)}")
            return Section(title, legend=Legend(self.positive_int(lg, "rows", lw, 4, 1, 12),
                                                {k: self.text(raw[k], f"{lw} labels.{k}") for k in wanted}))
        if "fields" in data:
            raw = data["fields"]
            if not isinstance(raw, list) or not raw:
                raise self.fail(where, "'fields' must be a non-empty list")
            return Section(title, fields=tuple(self.field(f, f"{where} field {i}") for i, f in enumerate(raw, 1)))
        if "grid" in data:
            g = data["grid"]
            if not isinstance(g, dict):
                raise self.fail(f"{where} grid", "must be a mapping")
            self.keys(g, {"columns", "per_band", "column_label", "rows"}, f"{where} grid")
            rows = g.get("rows")
            if not isinstance(rows, list) or not rows:
                raise self.fail(f"{where} grid", "'rows' must be a non-empty list of fields")
            specs = tuple(self.field(r, f"{where} grid row {i}") for i, r in enumerate(rows, 1))
            for spec in specs:
                if spec.type in ("text", "signature", "multichoice"):
                    raise self.fail(f"{where} grid row '{spec.name}'", f"a {spec.type} does not fit in a grid cell")
            columns = self.positive_int(g, "columns", f"{where} grid", None, 1, 48)
            per_band = self.positive_int(g, "per_band", f"{where} grid", min(columns, 6), 1, 8)
            return Section(title, grid=Grid(columns, per_band, self.text(g.get("column_label"), f"{where} grid column_label"), specs))
        m = data["medications"]
        if not isinstance(m, dict):
            raise self.fail(f"{where} medications", "must be a mapping")
        mw = f"{where} medications"
        self.keys(m, {"slots_per_line", "max_slots", "prn_rows", "prn_slots", "blank_rows",
                      "blank_rows_stock", "status", "labels", "checks", "held_codes", "prn_effect", "prn_reasons",
                      "prn_hours", "prn_max_slots"}, mw)
        status = self.field({**m.get("status", {}), "name": "status"}, f"{mw} status") \
            if isinstance(m.get("status"), dict) else None
        if status is None or status.type != "choice":
            raise self.fail(mw, "'status' must be a choice field (e.g. given / held / refused)")
        labels_raw = m.get("labels")
        needed = ("prn", "new_order", "given", "time", "initials", "order", "legend")
        if not isinstance(labels_raw, dict) or any(k not in labels_raw for k in needed):
            raise self.fail(mw, f"'labels' must give: {', '.join(needed)}")
        labels = {k: self.text(labels_raw[k], f"{mw} labels.{k}") for k in needed}
        optional = ("held", "held_codes", "prn_reason", "prn_reasons", "prn_effect", "prescriber", "ordered")
        labels |= {k: self.text(labels_raw[k], f"{mw} labels.{k}") for k in optional if k in labels_raw}
        unknown = set(labels_raw) - set(needed) - set(optional)
        if unknown:
            raise self.fail(mw, f"unknown label(s): {', '.join(sorted(unknown))}")
        def code_list(key: str, box_label: str, heading: str) -> tuple[Option, ...]:
            if key not in m:
                return ()
            raw_codes = m[key]
            if not isinstance(raw_codes, list) or not 1 <= len(raw_codes) <= 9 or any(
                    not isinstance(c, dict) or str(c.get("value")) != str(k) for k, c in enumerate(raw_codes, 1)):
                raise self.fail(f"{mw} {key}", "must be a list of 1 to 9 codes with values 1, 2, 3, ... in order")
            if box_label not in labels or heading not in labels:
                raise self.fail(mw, f"{key} need the labels '{box_label}' (the code box) and '{heading}' (the list's heading)")
            return tuple(Option(str(c["value"]), self.text(c.get("label"), f"{mw} {key} {k}"))
                         for k, c in enumerate(raw_codes, 1))

        held_codes = code_list("held_codes", "held", "held_codes")
        prn_reasons = code_list("prn_reasons", "prn_reason", "prn_reasons")
        prn_effect = None
        if "prn_effect" in m:
            if not isinstance(m["prn_effect"], dict):
                raise self.fail(f"{mw} prn_effect", "must be a choice field")
            prn_effect = self.field({**m["prn_effect"], "name": "effect"}, f"{mw} prn_effect")
            if prn_effect.type != "choice" or "prn_effect" not in labels:
                raise self.fail(f"{mw} prn_effect", "must be a choice field, with the label 'prn_effect'")
        if ("prescriber" in labels) != ("ordered" in labels):
            raise self.fail(mw, "new-order rows take both labels 'prescriber' and 'ordered', or neither")
        return Section(title, medications=Medications(
            slots_per_line=self.positive_int(m, "slots_per_line", mw, 4, 1, 6),
            max_slots=self.positive_int(m, "max_slots", mw, 8, 1, 24),
            prn_rows=self.positive_int(m, "prn_rows", mw, 2, 0, 12),
            prn_slots=self.positive_int(m, "prn_slots", mw, 4, 1, 6),
            blank_rows=self.positive_int(m, "blank_rows", mw, 2, 0, 12),
            blank_rows_stock=self.positive_int(m, "blank_rows_stock", mw, 6, 0, 24),
            status=status, labels=labels,
            checks=SemanticsChecker(self).slot_checks(m.get("checks", []), mw),
            held_codes=held_codes, prn_effect=prn_effect, prn_reasons=prn_reasons,
            prn_hours=self.positive_int(m, "prn_hours", mw, 24, 1, 24),
            prn_max_slots=self.positive_int(m, "prn_max_slots", mw, 6, 1, 12)))


def load_template(path: Path | str) -> Template:
    path = Path(path)
    check = _Checker(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise check.fail("top level", "must be a mapping")
    check.keys(data, {"name", "version", "title", "patient_bound", "pool_ids", "sections", "pack_order",
                      "reentry", "fhir"}, "top level")
    name = data.get("name")
    if not isinstance(name, str) or not _TEMPLATE_NAME_RE.match(name):
        raise check.fail("name", "must be 1-20 lower-case letters, digits and '-', starting with a letter")
    version = check.positive_int(data, "version", "version", None, 1, 9999)
    title = check.text(data.get("title"), "title")
    patient_bound = data.get("patient_bound", True)
    if not isinstance(patient_bound, bool):
        raise check.fail("patient_bound", "must be true or false")
    pool_ids = data.get("pool_ids", ["mrn"] if patient_bound else [])
    if not isinstance(pool_ids, list) or any(p not in POOL_KINDS for p in pool_ids):
        raise check.fail("pool_ids", f"must be a list drawn from {', '.join(POOL_KINDS)}")
    raw_sections = data.get("sections")
    if not isinstance(raw_sections, list) or not raw_sections:
        raise check.fail("sections", "must be a non-empty list")
    sections = tuple(check.section(s, f"section {i}") for i, s in enumerate(raw_sections, 1))
    names = [f.name for s in sections for f in s.fields] + \
            [r.name for s in sections if s.grid for r in s.grid.rows]
    if sum(1 for s in sections if s.legend) > 1:
        raise check.fail("sections", "at most one legend section per template")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise check.fail(f"field '{dupes[0]}'", "field names must be unique within a template")
    if sum(1 for s in sections if s.medications) > 1 or sum(1 for s in sections if s.grid) > 1:
        raise check.fail("sections", "at most one grid and one medications section per template")
    pack_order = check.positive_int(data, "pack_order", "pack_order", 100, 0, 1000)
    meaning = SemanticsChecker(check)
    raw_items = data.get("reentry", [])
    if not isinstance(raw_items, list):
        raise check.fail("reentry", "must be a list of re-entry items")
    reentry = tuple(meaning.item(r, f"reentry item {i}") for i, r in enumerate(raw_items, 1))
    meds = next((s.medications for s in sections if s.medications), None)
    meaning.cross_check(reentry, set(names), any(s.grid for s in sections), meds is not None,
                        medication_parts(meds) if meds else set())
    if meds is not None:  # a slot item says what its codes mean (held reason, PRN reason)
        import dataclasses
        codes = tuple((role, o.value, o.label["en"]) for role, opts in (("held_reason", meds.held_codes),
                                                                         ("prn_reason", meds.prn_reasons))
                      for o in opts)
        reentry = tuple(dataclasses.replace(r, codes=tuple(c for c in codes if c[0] in r.roles))
                        if r.each == "slot" else r for r in reentry)
    for name_ in names:
        spec = next(f for s in sections for f in (s.fields + (s.grid.rows if s.grid else ())) if f.name == name_)
        if spec.when_empty and spec.when_empty.unless_written and spec.when_empty.unless_written not in names:
            raise check.fail(f"field '{name_}' when_empty",
                             f"unless_written names field {spec.when_empty.unless_written!r}, "
                             "which the template does not have")
    specs = [f for s in sections for f in (s.fields + (s.grid.rows if s.grid else ()))]
    options = {f.name: tuple(o.value for o in f.options) for f in specs if f.options}
    for s_ in sections:  # the medications section's given/held/refused choice, as 'status'
        if s_.medications and s_.medications.status and s_.medications.status.options:
            options.setdefault("status", tuple(o.value for o in s_.medications.status.options))
    fhir = meaning.fhir(data["fhir"], "fhir", options) if "fhir" in data else FhirMeaning()
    return Template(name, version, title, patient_bound, tuple(pool_ids), sections, path, pack_order, reentry,
                    fhir)


_LOADED: dict[tuple, dict[str, "Template"]] = {}
_LOADED_LOCK = threading.Lock()


def load_templates(directory: Path | str, names: frozenset[str] | None = None) -> dict[str, Template]:
    """Every template in a directory, newest version per name wins under its plain name.

    Parsed once per content: the worklist asks for the templates on every tick a clerk makes
    (parsing four YAML files took about 40 ms of a 50 ms request); the files' bytes are the key,
    so an edited template is read again at once.

    names: only the templates of these names (and any file whose name cannot be told without
    parsing it: it is parsed, so that its errors still show). A scan's summaries need the
    templates of the forms it read, not the kit's every template (`_declared_name`)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotFound(f"template directory {directory} does not exist")
    paths = sorted(directory.glob("*.y*ml"))
    contents = [(p, p.read_bytes()) for p in paths]
    key = (str(directory.resolve()), tuple((p.name, hashlib.sha256(b).hexdigest()) for p, b in contents), names)
    with _LOADED_LOCK:
        hit = _LOADED.get(key)
    if hit is not None:
        return dict(hit)
    templates: dict[str, Template] = {}
    for path, data in contents:
        if names is not None and _declared_name(data) not in names | {None}:
            continue
        t = load_template(path)
        if t.ref in templates:
            raise TemplateError(f"{path}: {t.ref} is defined twice (also in {templates[t.ref].source})")
        templates[t.ref] = t
        if t.name not in templates or templates[t.name].version < t.version:
            templates[t.name] = t
    with _LOADED_LOCK:
        if len(_LOADED) > 64:  # test suites make many kits
            _LOADED.clear()
        _LOADED[key] = templates
    return dict(templates)


_TOP_NAME_RE = re.compile(rb"^name[ \t]*:", re.MULTILINE)


def _declared_name(data: bytes) -> str | None:
    """The template name a file declares (its top-level `name:`), read from the parser's events
    alone, stopping there: ~0.05 ms against ~3-6 ms for parsing a template. None when it cannot be
    told so (not UTF-8, not YAML, no plain top-level name, or not exactly one `name:` line at the
    left margin: YAML keeps the last of a repeated key): the caller parses the file."""
    if len(_TOP_NAME_RE.findall(data)) != 1:
        return None
    try:
        events = yaml.parse(data.decode("utf-8"), Loader=_YAML_LOADER)
        depth, want_key, key = 0, True, None
        for ev in events:
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth == 1 and not isinstance(ev, yaml.MappingStartEvent):
                    return None
                if depth == 2:
                    if want_key:
                        return None  # a complex key: leave it to the parser
                    want_key = True
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
                if depth == 0:
                    return None
            elif depth == 1 and isinstance(ev, (yaml.ScalarEvent, yaml.AliasEvent)):
                if want_key:
                    key = ev.value if isinstance(ev, yaml.ScalarEvent) else None
                elif key == "name":
                    return ev.value if isinstance(ev, yaml.ScalarEvent) else None
                want_key = not want_key
    except (UnicodeDecodeError, yaml.YAMLError):
        return None
    return None


def _printed_shape(t: Template) -> list:
    """What is printed: every layout page's geometry (not what the form means)."""
    from .layout import layout_form
    return [page.geometry_hash() for page in layout_form(t)]


def with_shipped_meaning(templates: dict[str, Template], shipped: dict[str, Template]) -> dict[str, Template]:
    """Kits made before templates declared their meaning hold copies of the shipped templates
    without `reentry:`. Such a copy that prints exactly as the shipped template of the same
    name@version takes the shipped template's meaning, so an upgraded kit keeps its worklist,
    checks and exports. Any other template means only what it declares."""
    import dataclasses
    out = dict(templates)
    for key, t in templates.items():
        if "@" not in key or t.reentry:
            continue
        ship = shipped.get(key)
        if ship is None or not ship.reentry or _printed_shape(ship) != _printed_shape(t):
            continue
        adopted = dataclasses.replace(ship, source=t.source)
        out[key] = adopted
        if out.get(t.name) is t:
            out[t.name] = adopted
    return out


def find_template(templates: dict[str, Template], ref: str) -> Template:
    """`name` (newest version) or `name@version`."""
    if ref in templates:
        return templates[ref]
    known = sorted({t.name for t in templates.values()})
    raise NotFound(f"unknown template {ref!r}", hint=f"known templates: {', '.join(known)}")
