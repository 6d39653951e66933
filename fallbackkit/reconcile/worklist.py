"""The re-entry worklist: what a clerk types into the hospital record system, in back-load order.

Hospitals back-load registrations first (so patients exist), then orders, then results, then
medication administrations, then vitals. Each item carries the care time (when it happened on the
ward, from the form) apart from the entry time (when a clerk marked it entered). Item ids are
derived from the printed form, so they are the same on every run and every station:
`<form_id>:registration`, `<form_id>:order`, `<form_id>:m1.s2`, `<form_id>:n1`, `<form_id>:c3`,
`<form_id>:body`. Which items a form makes is declared by its template (`reentry:`); every export
takes its items from here, so the ids a clerk marks are the ids exported.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Iterator

from .. import ids
from ..errors import BadInput, Conflict, NotFound
from ..store.audit import append_audit
from ..store.exports import exported_at
from ..store.kit import Kit, now_iso
from ..store.settings import get_setting
from ..templates.values import ValueProblem, combine, date_or_none, datetime_or_none, to_instant
from ..templates.model import HANDWRITTEN_TYPES, Template
from ..templates.semantics import ItemRule, summary_text
from .checks import template_of
from .core import _Pass
from .legend import legend_of, performer, unresolved_reason
from ..generate import kit_templates
from ..scan.reasons import english as reason_english
from .state import Registry, Val, current_links, current_reviews, load_registry, reason_codes

KIND_ORDER = {"registration": 0, "order": 1, "result": 2, "medication": 3, "vitals": 4}
STATUSES = ("pending", "entered", "not-needed")
_DIGITS = re.compile(r"(\d+)")
_COLUMN = re.compile(r"c\d+\.")


@dataclass
class WorkItem:
    item_id: str
    kind: str                # registration | order | result | medication | vitals
    form_id: str
    ward: str | None
    patient_mrn: str | None  # real MRN when known or linked, else the downtime MRN
    downtime_mrn: str | None
    care_time: str | None
    summary: str
    values: dict
    status: str              # pending | entered | not-needed
    resolved: bool           # every reading of the item is resolved (nothing waiting for a person)
    entered_by: str | None
    entered_at: str | None
    unresolved: list = field(default_factory=list)  # what still waits for a person, in words
    note: str | None = None
    exported_at: str | None = None  # when an export last sent it (the export record, store/exports.py)
    remarks: list = field(default_factory=list)  # what the clerk should know, e.g. "c3.avpu: corrected on paper"

    def as_dict(self, copy: bool = True) -> dict[str, Any]:
        """dataclasses.asdict(self) (same keys, same order, containers copied), written out: asdict
        recurses and deep-copies every value and was a third of the summaries' time (issue 16).
        copy=False: the item's own containers, for a dict turned into JSON at once (same text)."""
        d = {name: _copied(getattr(self, name)) for name in _ITEM_FIELDS} if copy else \
            {name: getattr(self, name) for name in _ITEM_FIELDS}
        if not d["remarks"]:
            d.pop("remarks")  # most items have none: their JSON stays as it was
        return d


_ATOMS = frozenset((str, int, float, bool, type(None)))


def _copied(value: Any) -> Any:
    """What asdict makes of an item's value: dicts, lists and tuples copied all the way down."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is dict:
        return {k: _copied(v) for k, v in value.items()}
    if kind is list:
        return [_copied(v) for v in value]
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


_ITEM_FIELDS = tuple(f.name for f in fields(WorkItem))


def _datetime_text(text: Any) -> str | None:
    moment = datetime_or_none(text)
    return moment.strftime("%Y-%m-%dT%H:%M") if moment else None


def _date_text(text: Any) -> str | None:
    day = date_or_none(text)
    return day.isoformat() if day else None


def _combine(day: Any, time: Any) -> str | None:
    try:
        return combine(day, time).strftime("%Y-%m-%dT%H:%M")
    except ValueProblem:
        return None


def _dst_problem(care_time: str | None, zone: str) -> str | None:
    """A care time a DST change skips or repeats in the kit's zone: a person must say which instant
    (the export holds the item back for the same reason)."""
    if not care_time or "T" not in care_time:
        return None
    try:
        to_instant(_dt.datetime.fromisoformat(care_time), zone)
    except ValueProblem as exc:
        return str(exc)
    except ValueError:
        return None
    return None


def _natural(item_id: str) -> list:
    return [int(p) if p.isdigit() else p for p in _DIGITS.split(item_id)]


def _value(v: Val | None) -> Any:
    if v is None:
        return None
    if v.type == "signature":
        return v.present if v.resolved else None
    if v.type in HANDWRITTEN_TYPES and v.source == "machine":
        return None  # handwriting not transcribed yet
    return v.value


class _FormItems:
    """What an item of one form still waits for, in words a clerk understands."""

    def __init__(self, form: dict[str, Any], values: dict[str, Val], conflicts: dict[str, dict],
                 missing_pages: list[int]):
        self.form, self.values, self.conflicts, self.missing_pages = form, values, conflicts, missing_pages

    def unresolved(self, names: list[str], whole_form: bool) -> list[str]:
        out = []
        for n in names:
            v = self.values.get(n)
            if v is not None and not v.resolved:
                what = "transcription" if v.type in HANDWRITTEN_TYPES else "review"
                out.append(f"{n} waits for {what}" + (f" ({v.reason})" if v.reason else ""))
            c = self.conflicts.get(n)
            if c is not None and not c["resolved"]:
                out.append(f"{n}: captures of sheet {c['sheet_id']} disagree")
        if whole_form and self.missing_pages:
            out.append(f"page {', '.join(map(str, self.missing_pages))} of {self.form['pages']} not returned")
        return out

    def remarks(self, names: list[str]) -> list[str]:
        """Readings the scan accepted with a note a clerk should see: a choice corrected on paper (a box
        filled in, another marked; the reason codes are scan/reasons.py's)."""
        out = []
        for n in names:
            v = self.values.get(n)
            # the value read (or confirmed by a person) is the one marked after the correction
            if v is not None and v.source in ("machine", "confirm") and "corrected" in reason_codes(v.reason):
                out.append(f"{n}: {reason_english('corrected')}")
        return out


def _medication_line(form: dict[str, Any], values: dict[str, Val], geometry: dict, prefix: str) -> dict[str, Any]:
    meds = {m.get("line"): m for m in form["context"].get("medications", [])}
    row = prefix.split(".")[0]
    geo = geometry.get(f"{prefix}.status") or geometry.get(f"{prefix}.given") or {}
    med = meds.get(geo.get("medication"))
    if med:
        return {"medication": med.get("medication"), "dose": med.get("dose"), "route": med.get("route"),
                "frequency": med.get("frequency"), "census_line": med.get("line"),
                "scheduled": geo.get("scheduled"), "prn": bool(med.get("prn"))}
    return {"order_text": _value(values.get(f"{row}.order")), "scheduled": geo.get("scheduled"),
            "prn": row.startswith("p")}


def _items_of_form(reg: Registry, run: _Pass, form: dict[str, Any], template: Template | None) -> list[dict[str, Any]]:
    """The re-entry items the form's template declares (`reentry:`), from the chosen captures."""
    fid = form["form_id"]
    values: dict[str, Val] = {}
    geometry: dict[str, dict] = {}
    conflicts: dict[str, dict] = {}
    returned, missing = [], []
    for sid in reg.form_sheets.get(fid, []):
        sheet = reg.sheets[sid]
        if sid not in reg.captures:
            missing.append(sheet["page"])
            continue
        returned.append(sheet["page"])
        values.update(run.chosen_values.get(sid, {}))
        geometry.update(reg.layouts[sheet["layout_hash"]].fields)
        for c in run.conflicts.get(sid, []):
            conflicts[c["field"]] = c
    if not returned:
        return []
    helper = _FormItems(form, values, conflicts, missing)
    out: list[dict[str, Any]] = []

    def add(suffix: str, kind: str, names: list[str], care_time: str | None, summary: str,
            vals: dict[str, Any], whole_form: bool = False) -> None:
        unresolved = helper.unresolved(names, whole_form)
        out.append({"item_id": f"{fid}:{suffix}", "kind": kind, "care_time": care_time, "summary": summary,
                    "values": vals, "unresolved": unresolved})

    names = sorted(values)
    for rule in template.reentry if template else ():
        build = _BUILDERS[rule.each]
        for raw in build(rule, form, values, geometry, names):
            add(*raw[:6], whole_form=rule.each == "form")
            out[-1]["fields"] = raw[6] if len(raw) > 6 else raw[2]
            out[-1]["remarks"] = helper.remarks(out[-1]["fields"])
            out[-1]["rule"] = rule
            if len(raw) > 7 and raw[7]:
                out[-1]["unresolved"].append("a time or initials are written but no status is marked"
                                             " — check the paper")
    return out


def _form_item(rule: ItemRule, form, values, geometry, names):
    """One item for the whole form (a registration, a lab order)."""
    vals = {n: _value(values[n]) for n in names}
    care = next((t for t in (_datetime_text(vals.get(n)) for n in rule.care_time) if t), None)
    summary = summary_text(rule.summary, vals, care, form.get("census_name")) if rule.summary \
        else (rule.label or rule.id)
    yield rule.id, rule.kind, names, care, summary, vals


def _column_items(rule: ItemRule, form, values, geometry, names):
    """One item per grid column with something written or waiting for a person."""
    day = _value(values.get(rule.date)) if rule.date else None
    columns: dict[str, list[str]] = {}
    for n in names:
        if _COLUMN.match(n):
            columns.setdefault(n.split(".")[0], []).append(n)
    for col in sorted(columns, key=_natural):
        fields = columns[col]
        if not any(values[n].present or not values[n].resolved for n in fields):
            continue
        vals = {n.split(".", 1)[1]: _value(values[n]) for n in fields}
        care = _combine(day, vals.get(rule.time)) if rule.time else None
        shown = ", ".join(f"{k} {v}" for k, v in vals.items() if v not in (None, "", False) and k != rule.time)
        dated = [rule.date] if rule.date else []
        yield (col, rule.kind, fields + dated, care,
               f"{rule.label} {col}" + (f" at {care}" if care else "") + (f": {shown}" if shown else ""),
               {**vals, **({rule.date: day} if rule.date else {}), "column": col})


def _fields_item(rule: ItemRule, form, values, geometry, names):
    """One item for a named set of fields (e.g. the day's height and weight), when one is written."""
    fields = [n for n in rule.fields if n in values]
    if not any(values[n].present or not values[n].resolved for n in fields):
        return
    day = _value(values.get(rule.date)) if rule.date else None
    vals = {n: _value(values[n]) for n in fields}
    shown = ", ".join(f"{k} {v}" for k, v in vals.items() if v not in (None, "", False))
    care = _date_text(day)
    dated = [rule.date] if rule.date else []
    yield (rule.id, rule.kind, fields + dated, care,
           f"{rule.label or rule.id}" + (f" on {care}" if care else "") + (f": {shown}" if shown else ""),
           {**vals, **({rule.date: day} if rule.date else {})})


def _slot_rows(names: list[str]) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for n in names:
        if n.count(".") == 2:
            rows.setdefault(n.rsplit(".", 1)[0], []).append(n)
    return rows


def _mark(values: dict[str, Val], prefix: str) -> Val | None:
    return values.get(f"{prefix}.status") or values.get(f"{prefix}.given")


def _role_values(rule: ItemRule, values, prefix: str) -> tuple[dict[str, Any], list[str]]:
    """The values of the parts a rule's roles name (a slot's held code, a PRN dose's reason and
    effect, a new order's prescriber and order time), keyed by role, and those fields' names."""
    out, fields = {}, []
    for role, part in rule.roles.items():
        name = f"{prefix}.{part}"
        if name in values:
            out[role] = _value(values[name])
            fields.append(name)
    return out, fields


def _new_order_items(rule: ItemRule, form, values, geometry, names):
    """A new order written on a blank row of the medications section (or doses marked there)."""
    day = _value(values.get(rule.date)) if rule.date else None
    rows = _slot_rows(names)
    order_rows = sorted({n.split(".")[0] for n in names if n.endswith(".order")}, key=_natural)
    for row in order_rows:
        order = values.get(f"{row}.order")
        marked = any(_mark(values, p) is not None and _mark(values, p).present
                     for p in rows if p.split(".")[0] == row)
        if (order is not None and order.present) or marked:
            text = _value(order)
            roles, role_fields = _role_values(rule, values, row)
            care = _combine(day, roles["ordered"]) if roles.get("ordered") else _date_text(day)
            by = f" by {roles['prescriber']}" if roles.get("prescriber") else ""
            yield (row, rule.kind, [f"{row}.order"] + role_fields + ([rule.date] if rule.date else []), care,
                   f"{rule.label} ({row}): {text or 'order text not transcribed'}{by}",
                   {"order_text": text, **roles, **({rule.date: day} if rule.date else {}), "row": row})


def _slot_items(rule: ItemRule, form, values, geometry, names):
    """One item per administration slot that is marked, waits for a person, or has writing but no
    mark (a time or initials with no given / held / refused: someone must look at the paper)."""
    day = _value(values.get(rule.date)) if rule.date else None
    rows = _slot_rows(names)
    legend = legend_of({n: _value(values[n]) for n in names if n.startswith("l")})
    for prefix in sorted(rows, key=_natural):
        mark = _mark(values, prefix)
        if mark is None:
            continue
        writing = [n for n in (f"{prefix}.time", f"{prefix}.initials")
                   if values.get(n) is not None and (values[n].present or not values[n].resolved)]
        unmarked = mark.resolved and not mark.present
        if unmarked and not writing:
            continue
        line = _medication_line(form, values, geometry, prefix)
        time_v = _value(values.get(f"{prefix}.time"))
        status = (mark.value if f"{prefix}.status" in values else ("given" if mark.value else None)) \
            if mark.resolved else None
        initials = _value(values.get(f"{prefix}.initials"))
        roles, _ = _role_values(rule, values, prefix)
        for role in ("held_reason", "prn_reason"):
            if roles.get(role) is not None and any(c[0] == role for c in rule.codes):
                roles[f"{role}_text"] = code_text(rule, role, roles[role])
        vals = {**line, "status": status, "time": time_v, "initials": initials, **roles,
                **({rule.date: day} if rule.date else {}), "slot": prefix}
        if rule.performer:
            vals["performer"] = performer(legend, initials)
            why = unresolved_reason(legend, initials)
            if why:
                vals["performer_unresolved"] = why
        care = _combine(day, time_v)
        drug = line.get("medication") or line.get("order_text") or "new order"
        dated = [rule.date] if rule.date else []
        order = f"{prefix.split('.')[0]}.order"
        yield (prefix, rule.kind, rows[prefix] + dated, care,
               f"{drug} {line.get('dose') or ''}".strip() + f": {status or 'mark to review'}"
               + (f" at {care}" if care else (f" (scheduled {line['scheduled']})" if line.get("scheduled") else "")),
               vals, rows[prefix] + dated + ([order] if order in values else []),
               unmarked)


def code_text(rule: ItemRule, role: str, code: Any) -> str | None:
    """A written code's meaning (held reason, PRN reason), from the template's code list (rule.codes,
    set when the template is loaded); None for a code not on the list."""
    return next((text for r, c, text in rule.codes if r == role and c == str(code).strip()), None)


_BUILDERS = {"form": _form_item, "column": _column_items, "fields": _fields_item, "slot": _slot_items,
             "new-order": _new_order_items}


def _marks(kit: Kit) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for item_id, status, actor, at, note in kit.db.conn.execute(
            "SELECT item_id, status, actor, at, note FROM worklist_marks ORDER BY id"):
        latest[item_id] = {"status": status, "actor": actor, "at": at, "note": note}
    return latest


FORMS_PER_BATCH = 1000  # the worklist holds the readings of this many forms at a time


@dataclass
class BuildContext:
    """What building items needs besides the forms' readings (loaded once per build)."""
    links: dict[str, dict[str, Any]]
    marks: dict[str, dict[str, Any]]
    templates: dict[str, Template]
    census_names: dict[tuple, str]
    zone: str | None
    exported: dict[str, str] = field(default_factory=dict)  # item id -> last sent (full builds only)


def build_context(kit: Kit, templates: dict[str, Template] | None = None,
                  marks: dict[str, dict[str, Any]] | None = None,
                  form_ids: list[str] | None = None) -> BuildContext:
    """form_ids: the context of these forms only (the census names of their patients, by index:
    a few forms recomputed after a decision read a few patients, not every census snapshot)."""
    sql, chunks = "SELECT snapshot_id, mrn, last_name, first_name FROM patients", [None]
    if form_ids is not None:
        sql = ("SELECT p.snapshot_id, p.mrn, p.last_name, p.first_name FROM forms f JOIN patients p"
               " ON p.snapshot_id = f.snapshot_id AND p.mrn = f.patient_mrn WHERE f.form_id IN ({})")
        chunks = [form_ids[i:i + 500] for i in range(0, len(form_ids), 500)]
    names = {}
    for part in chunks:
        query = sql if part is None else sql.format(",".join("?" * len(part)))
        for snap, mrn, last, first in kit.db.conn.execute(query, part or []):
            names[(snap, mrn)] = f"{last.upper()}, {first}"
    return BuildContext(
        links=current_links(kit), marks=_marks(kit) if marks is None else marks,
        templates=templates if templates is not None else kit_templates(kit),
        census_names=names, zone=get_setting(kit, "tz"))


def form_work_items(reg: Registry, run: _Pass, fid: str, ctx: BuildContext) -> list[WorkItem]:
    """One form's items, in the order its template declares them (the full build and the kept
    summaries both use this)."""
    form = reg.forms[fid]
    form["census_name"] = ctx.census_names.get((form.get("snapshot_id"), form["patient_mrn"]))
    dt = form["downtime_mrn"]
    patient = form["patient_mrn"] or (ctx.links[dt]["real_mrn"] if dt in ctx.links else dt)
    template = template_of(ctx.templates, form["template"], form["version"])
    items = []
    for raw in _items_of_form(reg, run, form, template):
        dst = _dst_problem(raw["care_time"], ctx.zone)
        if dst:
            raw["unresolved"].append(dst)
        mark = ctx.marks.get(raw["item_id"])
        item = WorkItem(
            item_id=raw["item_id"], kind=raw["kind"], form_id=fid, ward=form["ward"], patient_mrn=patient,
            downtime_mrn=dt, care_time=raw["care_time"], summary=raw["summary"], values=raw["values"],
            status=mark["status"] if mark else "pending", resolved=not raw["unresolved"],
            entered_by=mark["actor"] if mark and mark["status"] != "pending" else None,
            entered_at=mark["at"] if mark and mark["status"] != "pending" else None,
            unresolved=raw["unresolved"], note=mark["note"] if mark else None, remarks=raw["remarks"],
            exported_at=ctx.exported.get(raw["item_id"]))
        # what the exports need besides the item itself (not part of the item's JSON)
        item.fields, item.rule, item.template = raw["fields"], raw["rule"], template
        items.append(item)
    return items


def back_load_key(item: WorkItem) -> tuple:
    """The worklist's order: registrations, orders, results, medications, vitals; then care time."""
    return (KIND_ORDER[item.kind], item.care_time is None, item.care_time or "", item.patient_mrn or "",
            _natural(item.item_id))


def back_load_text(item: WorkItem) -> str:
    """back_load_key as text that SQLite orders the same way (digit runs zero-padded after a
    low separator, fields separated by a character below every printable one)."""
    natural = "".join(f"\x01{int(p):012d}" if p.isdigit() else p for p in _DIGITS.split(item.item_id))
    return (f"{KIND_ORDER[item.kind]}{int(item.care_time is None)}{item.care_time or ''}\x1f"
            f"{item.patient_mrn or ''}\x1f{natural}")


def _build(kit: Kit, form_ids: list[str] | None = None, back_load_order: bool = True,
           templates: dict[str, Template] | None = None) -> list[WorkItem]:
    if form_ids is None:
        form_ids = [r[0] for r in kit.db.conn.execute("SELECT form_id FROM forms ORDER BY rowid")]
    ctx = build_context(kit, templates)
    ctx.exported = exported_at(kit.db.conn)  # read at build time: an export changes no form
    reviews = current_reviews(kit)
    items = []
    for start in range(0, len(form_ids), FORMS_PER_BATCH):
        reg = load_registry(kit, form_ids[start:start + FORMS_PER_BATCH])
        run = _Pass(kit, reg, keep_chosen=True, reviews=reviews, templates=ctx.templates, checks=False)
        for fid in reg.forms:
            items += form_work_items(reg, run, fid, ctx)
    if not back_load_order:
        return items  # per form, in the order its template declares its items
    items.sort(key=back_load_key)
    return items


def worklist(kit: Kit, ward: str | None = None, status: str | None = None, full: bool = False) -> list[WorkItem]:
    """Re-entry items in back-load order; filter by ward and by status.

    From the items kept up to date on write (reconcile/summary.py); full=True builds them again
    from the readings (what exports use, through items_by_form, to get each item's fields)."""
    if status is not None and status not in STATUSES:
        raise BadInput(f"status {status!r} is not one of {', '.join(STATUSES)}")
    if not full and not kit.read_only:
        from .summary import iter_items
        return list(iter_items(kit, ward, status))
    form_ids = None
    if ward is not None:
        form_ids = [r[0] for r in kit.db.conn.execute("SELECT form_id FROM forms WHERE ward = ?", [ward])]
    items = _build(kit, form_ids)
    return [i for i in items if status is None or i.status == status]


def iter_worklist(kit: Kit, ward: str | None = None, status: str | None = None) -> Iterator[dict[str, Any]]:
    """Each item's `WorkItem.as_dict()` in back-load order, streamed: what `worklist` returns, for
    callers that write items as they come (the CLI, the CSV and JSON exports) and need not hold
    330,000 items at once (issue 16)."""
    if status is not None:
        check_status(status)  # now, not at the first item
    if not kit.read_only:
        from .summary import iter_item_dicts
        return iter_item_dicts(kit, ward, status)
    return (item.as_dict() for item in worklist(kit, ward, status, full=True))


def items_by_form(kit: Kit, form_ids: list[str],
                  templates: dict[str, Template] | None = None) -> dict[str, list[WorkItem]]:
    """The worklist's items of these forms, per form in the order the template declares them
    (what every export derives its items from)."""
    out: dict[str, list[WorkItem]] = {}
    for item in _build(kit, form_ids, back_load_order=False, templates=templates):
        out.setdefault(item.form_id, []).append(item)
    return out


class ItemsByForm:
    """`items_by_form` for one batch of forms after another (an export of every form a batch at a
    time), with what every batch shares (census names, links, marks, export times, people's
    decisions) read once, not per batch."""

    def __init__(self, kit: Kit, templates: dict[str, Template] | None = None):
        self.kit = kit
        self.ctx = build_context(kit, templates)
        self.ctx.exported = exported_at(kit.db.conn)
        self.reviews = current_reviews(kit)

    def __call__(self, form_ids: list[str]) -> dict[str, list[WorkItem]]:
        out: dict[str, list[WorkItem]] = {}
        for start in range(0, len(form_ids), FORMS_PER_BATCH):
            reg = load_registry(self.kit, form_ids[start:start + FORMS_PER_BATCH])
            run = _Pass(self.kit, reg, keep_chosen=True, reviews=self.reviews, templates=self.ctx.templates,
                        checks=False)
            for fid in reg.forms:
                for item in form_work_items(reg, run, fid, self.ctx):
                    out.setdefault(item.form_id, []).append(item)
        return out


def get_item(kit: Kit, item_id: str) -> WorkItem:
    if ":" not in item_id:
        raise BadInput(f"{item_id!r} is not a worklist item id", hint="item ids look like FORMID:m1.s2 (see `fallbackkit worklist`)")
    fid, rest = item_id.split(":", 1)
    item_id = f"{ids.normalize(fid)}:{rest}"
    for item in _build(kit, [ids.normalize(fid)]):
        if item.item_id == item_id:
            return item
    raise NotFound(f"no worklist item {item_id}",
                   hint="items appear once their form is scanned back; see `fallbackkit worklist`")


def check_status(status: str) -> None:
    """Refuse a worklist status that is not one of STATUSES."""
    if status not in STATUSES:
        raise BadInput(f"status {status!r} is not one of {', '.join(STATUSES)}")


def mark_item(kit: Kit, item_id: str, status: str, actor: str, note: str | None = None) -> None:
    """Record that an item was entered in the hospital system (or is not needed). Entry time is now;
    the care time stays what the paper says. Refuses 'entered' while readings are unresolved."""
    check_status(status)
    item = get_item(kit, item_id)
    if status == "entered" and not item.resolved:
        raise Conflict(f"{item.item_id} cannot be marked entered: {'; '.join(item.unresolved)}",
                       hint="resolve these in the review station first, or mark it not-needed")
    if item.status == status:
        if status == "entered":
            raise Conflict(f"{item.item_id} is already marked entered by {item.entered_by} at {item.entered_at}",
                           hint="do not enter it twice; mark it pending first if that mark was a mistake")
        return
    conn = kit.db.conn
    with conn:
        at = now_iso()
        conn.execute("INSERT INTO worklist_marks (item_id, status, actor, at, note) VALUES (?, ?, ?, ?, ?)",
                     [item.item_id, status, actor, at, note])
        append_audit(conn, actor, f"worklist.{status}", f"item:{item.item_id}",
                     {"status": item.status, "by": item.entered_by},
                     {"status": status, "note": note, "care_time": item.care_time, "patient_mrn": item.patient_mrn,
                      "summary": item.summary})
        from .summary import refresh
        refresh(kit)  # the item's form, in the mark's own transaction
