"""Reconciliation: for every printed form, did it come back, is it complete, do its captures agree,
what is still waiting for a person, and what would a nurse want flagged.

Read-only (re-running it changes nothing) and set-based: the registry and captures are loaded with
a handful of queries, readings are streamed once in capture order, and only captures of sheets
scanned more than once are held in memory for comparison.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from .. import ids
from ..errors import BadInput, NotFound
from ..generate import kit_templates
from ..store.decisions import record_review
from ..store.kit import Kit
from ..templates.model import HANDWRITTEN_TYPES
from ..templates.values import field_options, is_option_value
from .checks import PageCheck, check_page, checked_fields, form_flags, template_of
from .state import CHUNK, Registry, current_links, iter_capture_values, load_registry, paused_gc, sheet_conflicts

TOTAL_KEYS = ("sheets_printed", "sheets_returned", "sheets_never_returned", "forms_complete",
              "forms_incomplete", "duplicate_captures", "conflicts", "quarantined_pages",
              "readings_to_review", "consistency_flags")


class _Pass:
    """One pass over the readings: page checks for chosen captures, values of repeated sheets."""

    def __init__(self, kit: Kit, reg: Registry, keep_chosen: bool = False,
                 reviews: dict | None = None, templates: dict | None = None, checks: bool = True):
        with paused_gc():  # one pass over many readings (see paused_gc)
            self._walk(kit, reg, keep_chosen, reviews, templates, checks)

    def _walk(self, kit: Kit, reg: Registry, keep_chosen: bool, reviews: dict | None, templates: dict | None,
              checks: bool) -> None:
        self.reg = reg
        templates = templates if templates is not None else kit_templates(kit)
        self.templates: dict[tuple[str, int], object] = {}
        self.checks: dict[str, PageCheck] = {}
        self.to_review: dict[str, int] = {}
        self.pending: dict[str, list[str]] = {}
        self.chosen_values: dict[str, dict] = {}
        chosen = {reg.chosen(sid): sid for sid in reg.captures}
        multi = {sid for sid, caps in reg.captures.items() if len(caps) > 1}
        self.repeated: dict[str, dict[int, dict]] = {sid: {} for sid in multi}
        # a whole-kit pass streams every reading; a few forms are fetched by index
        wanted = None if len(reg.capture_sheet) > 20 * CHUNK else set(reg.capture_sheet)
        if wanted is not None and checks and not keep_chosen:
            # the counts and checks only: of a sheet scanned once, the readings its checks read,
            # those waiting for a person and the decided ones (checks.checked_fields); every
            # reading of a sheet scanned twice or more (their captures are compared)
            looked_at: set[str] = set()
            for lhash, template, version in {(sheet["layout_hash"], reg.forms[sheet["form_id"]]["template"],
                                              reg.forms[sheet["form_id"]]["version"]) for sheet in reg.sheets.values()}:
                looked_at |= checked_fields(reg.layouts[lhash], template_of(templates, template, version))
            again = {cid for sid in multi for cid in reg.captures[sid]}
            passes = [iter_capture_values(kit, again, reviews),
                      iter_capture_values(kit, wanted - again, reviews, only_fields=looked_at)]
        else:
            passes = [iter_capture_values(kit, wanted, reviews)]
        for cid, values in (pair for walk in passes for pair in walk):
            sid = reg.capture_sheet.get(cid)
            if sid is None:
                continue
            if sid in multi:
                self.repeated[sid][cid] = values
            if chosen.get(cid) != sid:
                continue
            sheet = reg.sheets[sid]
            form = reg.forms[sheet["form_id"]]
            if checks:
                key = (form["template"], form["version"])
                if key not in self.templates:
                    self.templates[key] = template_of(templates, *key)
                layout = reg.layouts[sheet["layout_hash"]]
                self.checks[sid] = check_page(form, layout, values, self.templates[key])
            pending = [n for n, v in values.items() if not v[11]]  # Val: v[11] is v.resolved
            self.to_review[sid] = len(pending)
            if keep_chosen:
                self.pending[sid] = pending
                self.chosen_values[sid] = values
        self.conflicts = {sid: sheet_conflicts(sid, caps) for sid, caps in self.repeated.items()}


def _state(returned: list[int], quarantined: list[int], pages: int) -> str:
    if len(returned) == pages:
        return "complete"
    if returned:
        return "missing_pages"
    if quarantined:
        return "quarantine_only"
    return "never_returned"


def form_entry(reg: Registry, run: _Pass, links: dict[str, dict[str, Any]], fid: str) -> dict[str, Any]:
    """One form's entry of the reconciliation report (the full recompute and the kept summaries
    both use this, so they cannot disagree)."""
    form = reg.forms[fid]
    sheet_ids = reg.form_sheets.get(fid, [])
    returned = [reg.sheets[s]["page"] for s in sheet_ids if s in reg.captures]
    in_quarantine = [reg.sheets[s]["page"] for s in sheet_ids
                     if s not in reg.captures and s in reg.quarantined_sheets]
    missing = [reg.sheets[s]["page"] for s in sheet_ids if s not in reg.captures]
    state = _state(returned, in_quarantine, len(sheet_ids))
    duplicates, conflicts = [], []
    for s in sheet_ids:
        caps = reg.captures.get(s, [])
        if len(caps) > 1:
            sheet_conf = run.conflicts.get(s, [])
            conflicts += sheet_conf
            duplicates.append({"sheet_id": s, "page": reg.sheets[s]["page"], "kept": caps[-1],
                               "others": caps[:-1],
                               "agree": all(c["resolved"] for c in sheet_conf)})
    flags = form_flags([run.checks[s] for s in sheet_ids if s in run.checks])
    to_review = sum(run.to_review.get(s, 0) for s in sheet_ids)
    dt = form["downtime_mrn"]
    real = form["patient_mrn"] or (links[dt]["real_mrn"] if dt in links else None)
    return {
        "form_id": fid, "template": form["template"], "version": form["version"], "ward": form["ward"],
        "bed": form["bed"], "patient_mrn": form["patient_mrn"], "downtime_mrn": dt, "real_mrn": real,
        "encounter": form["encounter"], "accession": form["accession"], "printed_at": form["printed_at"],
        "pages": form["pages"], "pages_returned": returned, "pages_missing": missing,
        "pages_in_quarantine": in_quarantine, "state": state, "duplicates": duplicates,
        "conflicts": conflicts, "to_review": to_review, "flags": flags}


def add_to_totals(totals: dict[str, int], entry: dict[str, Any]) -> None:
    totals["sheets_returned"] += len(entry["pages_returned"])
    totals["sheets_never_returned"] += len(entry["pages_missing"]) - len(entry["pages_in_quarantine"])
    totals["forms_complete" if entry["state"] == "complete" else "forms_incomplete"] += 1
    totals["duplicate_captures"] += sum(len(d["others"]) for d in entry["duplicates"])
    totals["conflicts"] += sum(1 for c in entry["conflicts"] if not c["resolved"])
    totals["readings_to_review"] += entry["to_review"]
    totals["consistency_flags"] += len(entry["flags"])


def reconcile(kit: Kit, full: bool = False) -> dict[str, Any]:
    """The reconciliation report (see docs/reconcile.md for every key).

    From the per-form summaries kept up to date on write (reconcile/summary.py); full=True
    recomputes everything from the readings instead (`reconcile --full`), without using them."""
    if not full and not kit.read_only:  # a read-only kit cannot bring its summaries up to date
        from .summary import kept_report
        return kept_report(kit)
    return full_report(kit)


def full_report(kit: Kit) -> dict[str, Any]:
    """The reconciliation report recomputed from every reading (no kept summary is used)."""
    totals: dict[str, int] = {}
    forms = list(iter_full_report(kit, totals))
    return {"totals": totals, "forms": forms}


FORMS_PER_PASS = 1000  # the full recompute holds the registry and readings of this many forms at a time


def iter_full_report(kit: Kit, totals: dict[str, int]) -> Iterator[dict[str, Any]]:
    """The full recompute's form entries, streamed in the report's order (forms as printed), a
    batch of forms at a time: their registry, their captures' readings (by index) and their entries,
    so that memory stays bounded at any size (issue 16). A large kit's batches are computed by two
    worker processes (reconcile/parallel.py), handed back in order: the same entries, the same
    order. `totals` is filled as the entries go by: complete once the iterator is exhausted."""
    from . import parallel
    conn = kit.db.conn
    totals.clear()
    totals.update(dict.fromkeys(TOTAL_KEYS, 0))
    totals["sheets_printed"] = conn.execute("SELECT COUNT(*) FROM sheets").fetchone()[0]
    form_ids = [r[0] for r in conn.execute("SELECT form_id FROM forms ORDER BY rowid")]
    batches = [form_ids[start:start + FORMS_PER_PASS] for start in range(0, max(len(form_ids), 1), FORMS_PER_PASS)]
    workers = 1 if kit.read_only else parallel.workers_for(len(form_ids))  # read-only: a worker may not open it
    if workers > 1:
        from .summary import _templates
        _templates(kit)  # parsed before the workers are forked: they find them parsed
    first = True
    for entries, quarantined in parallel.in_order(kit, batches, _full_batch, _full_setup, workers):
        if first:  # quarantined pages not yet identified: the same in every batch's registry
            totals["quarantined_pages"] = quarantined
            first = False
        for entry in entries:
            add_to_totals(totals, entry)
            yield entry


def _full_setup(kit: Kit, in_worker: bool) -> tuple[dict, dict | None, dict]:
    """What every batch of a full recompute shares: the links, the reviews that count (in one
    process, all of them at once; in a worker each batch reads its captures' own, by index) and
    the templates."""
    from .state import current_reviews
    from .summary import _templates  # parsed once per process; a forked worker has the parent's
    return current_links(kit), None if in_worker else current_reviews(kit), _templates(kit)


def _full_batch(kit: Kit, shared: tuple[dict, dict | None, dict], form_ids: list[str]) -> tuple[list[dict], int]:
    """One batch's entries, and the number of quarantined pages nobody identified yet."""
    from .summary import reviews_of_captures
    links, reviews, templates = shared
    with paused_gc():  # a batch computed, then handed over (see paused_gc)
        reg = load_registry(kit, form_ids)
        if reviews is None:
            reviews = reviews_of_captures(kit.db.conn, reg.capture_sheet)
        run = _Pass(kit, reg, reviews=reviews, templates=templates)
        entries = [form_entry(reg, run, links, fid) for fid in reg.forms]
    return entries, reg.quarantine_unassigned


def iter_report(kit: Kit, full: bool = False) -> tuple[dict[str, int], Iterator[dict[str, Any]]]:
    """(totals, form entries streamed): `reconcile` without holding the whole report (the CLI
    writes it as it comes). From the kept summaries; with full=True recomputed from the readings,
    and then the totals are complete only once the entries are exhausted."""
    if not full and not kit.read_only:
        from .summary import iter_form_entries, totals as kept_totals
        return kept_totals(kit), iter_form_entries(kit)
    totals: dict[str, int] = {}
    return totals, iter_full_report(kit, totals)


def _find_form(reg: Registry, form_id: str) -> dict[str, Any]:
    form = reg.forms.get(form_id)
    if form is None:
        raise NotFound(f"no form {form_id} in this kit",
                       hint="give the sheet id of the form's first page (see `fallbackkit sheets list`)")
    return form


def form_readings(kit: Kit, form_id: str) -> dict[str, dict[str, Any]]:
    """field -> effective reading of the capture that stands for its page (the latest capture)."""
    form_id = ids.normalize(form_id)
    reg = load_registry(kit, [form_id])
    _find_form(reg, form_id)
    chosen = {reg.chosen(s): s for s in reg.form_sheets.get(form_id, []) if s in reg.captures}
    out: dict[str, dict[str, Any]] = {}
    for cid, values in iter_capture_values(kit, chosen):
        sid = chosen[cid]
        for name, v in values.items():
            out[name] = {"reading_id": v.reading_id, "capture_id": cid, "sheet_id": sid,
                         "page": reg.sheets[sid]["page"], "type": v.type, "value": v.value,
                         "machine_value": v.machine, "ink": v.ink, "status": v.status, "reason": v.reason,
                         "resolved": v.resolved, "source": v.source}
    return out


def resolve_conflict(kit: Kit, sheet_id: str, field: str, value: Any, actor: str,
                     chosen_capture_id: int | None = None) -> None:
    """A person settles what the paper says when captures disagree.

    Recorded as a review on the field's reading in every capture of the sheet (so they agree from
    then on and every decision is in the audit log). With chosen_capture_id and value None, the
    value is the one that capture shows."""
    sheet_id = ids.normalize(sheet_id)
    conn = kit.db.conn
    rows = conn.execute(
        "SELECT r.reading_id, r.capture_id, r.type FROM readings r JOIN captures c ON c.capture_id = r.capture_id"
        " WHERE c.status = 'read' AND c.sheet_id = ? AND r.field = ? ORDER BY r.capture_id",
        [sheet_id, field]).fetchall()
    if not rows:
        raise NotFound(f"no reading of {field!r} on sheet {sheet_id}",
                       hint="check the sheet id and field name in `fallbackkit reconcile --json`")
    if value is not None or chosen_capture_id is None:
        _check_option(conn, sheet_id, field, rows[0][2], value)
    if chosen_capture_id is not None:
        chosen = [r for r in rows if r[1] == chosen_capture_id]
        if not chosen:
            raise BadInput(f"capture {chosen_capture_id} is not a capture of sheet {sheet_id}",
                           hint=f"captures of this sheet: {', '.join(str(r[1]) for r in rows)}")
        if value is None:
            from ..store.readings import effective_reading
            chosen_reading = effective_reading(conn, chosen[0][0])
            value = chosen_reading.value
            if value is None and chosen[0][2] in HANDWRITTEN_TYPES and chosen_reading.ink \
                    and chosen_reading.source == "machine":
                raise BadInput(f"capture {chosen_capture_id} shows handwriting in {field} that nobody has transcribed",
                               hint="type what is written as the value")
            if not chosen_reading.resolved:  # fail closed: "unsure" never becomes the value by a pick
                raise BadInput(f"capture {chosen_capture_id}'s reading of {field} is one the machine was unsure of",
                               hint="look at the paper and give the value itself")
    note = f"conflict on {sheet_id} {field} resolved" + (
        f" (as capture {chosen_capture_id} shows)" if chosen_capture_id is not None else "")
    for reading_id, _cid, ftype in rows:
        decision = "transcribe" if ftype in HANDWRITTEN_TYPES else "correct"
        record_review(conn, reading_id, decision, value, actor, note)


def _check_option(conn, sheet_id: str, field: str, type_: str, value: Any) -> None:
    """A mark field is settled by one of its printed options, never by free text."""
    row = conn.execute("SELECT l.geometry FROM sheets s JOIN layouts l ON l.hash = s.layout_hash"
                       " WHERE s.sheet_id = ?", [sheet_id]).fetchone()
    geometry = json.loads(row[0]) if row and row[0] else {"fields": []}
    spec = next((f for f in geometry["fields"] if f["name"] == field), None)
    options = field_options(spec, type_)
    if options is not None and not is_option_value(options, type_, value):
        raise BadInput(f"{field} takes one of its printed options, not {value!r}")


def ward_progress(report: dict[str, Any], items: list[Any]) -> dict[str, dict[str, int]]:
    """Per ward ("—" for none): pages printed, returned and missing, readings to review, items
    to re-enter and entered; from a reconcile() report and its worklist."""
    rows: dict[str, dict[str, int]] = {}

    def ward_row(ward: str | None) -> dict[str, int]:
        return rows.setdefault(ward or "—", dict.fromkeys(
            ("printed", "returned", "missing", "to_review", "to_reenter", "entered"), 0))

    for form in report["forms"]:
        w = ward_row(form.get("ward"))
        w["printed"] += int(form.get("pages") or 0)
        w["returned"] += len(form.get("pages_returned") or [])
        w["missing"] += len(form.get("pages_missing") or [])
        w["to_review"] += int(form.get("to_review") or 0)
    for item in items:
        w = ward_row(item.ward)
        if item.status == "pending":
            w["to_reenter"] += 1
        elif item.status == "entered":
            w["entered"] += 1
    return rows


def resolve_sheet_from_capture(kit: Kit, sheet_id: str, capture_id: int, actor: str) -> dict[str, list[str]]:
    """"Take this scan for the whole sheet": every open conflict of a sheet settled as one capture
    shows it, in one transaction (each field through resolve_conflict, so each is audited).

    Returns {"resolved": [fields], "left": [fields]}: a field is left open when that capture's
    reading is not settled — a mark the machine was unsure of, or handwriting nobody has transcribed
    yet — so that "unsure" never becomes "blank" for a whole sheet at once (a person decides it)."""
    from ..store.transactions import atomic
    sheet_id = ids.normalize(sheet_id)
    conn = kit.db.conn
    caps = [r[0] for r in conn.execute("SELECT capture_id FROM captures WHERE status = 'read' AND sheet_id = ?"
                                       " ORDER BY capture_id", [sheet_id])]
    if capture_id not in caps:
        raise BadInput(f"capture {capture_id} is not a read capture of sheet {sheet_id}",
                       hint=f"captures of this sheet: {', '.join(map(str, caps)) or 'none'}")
    out: dict[str, list[str]] = {"resolved": [], "left": []}
    with atomic(conn):  # the whole sheet or nothing; another clerk waits, never interleaves
        by_capture = dict(iter_capture_values(kit, caps))
        for conflict in sheet_conflicts(sheet_id, by_capture):
            if conflict["resolved"]:
                continue
            chosen = by_capture.get(capture_id, {}).get(conflict["field"])
            if chosen is None or not chosen.resolved:
                out["left"].append(conflict["field"])
                continue
            try:
                resolve_conflict(kit, sheet_id, conflict["field"], None, actor, chosen_capture_id=capture_id)
            except BadInput:
                out["left"].append(conflict["field"])
                continue
            out["resolved"].append(conflict["field"])
    return out
