"""The reconciliation report for IT and management, as PDF (reportlab) or HTML (inline SVG).

Page one says what is left to do. The rest gives the evidence: printed vs returned vs missing
per ward and form type, the missing sheets by ward and patient (so they can be searched for),
conflicts, quarantine, the review backlog, re-entry progress over time and reading quality.
Everything is computed from the store here, in `report_data`, so the tests can compare the
figures with the store and both renderings show the same numbers.
"""
from __future__ import annotations

import datetime as _dt
import html
import re
import itertools
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

from ..errors import BadInput, FallbackkitError
from ..files import outside_kit, private_writer
from ..ids import pretty_sheet_id
from ..store.audit import audit_head
from ..store.kit import Kit, now_iso
from ..store.quarantine import list_quarantine
from .collect import _aware, _rows, iter_stores, load_census, snapshot, write_private

# what the report shows of a quarantined page (no payload: a forged code's text stays in the store)
REPORTED_QUARANTINE = ("quarantine_id", "reason", "detail", "created_at", "page_index", "file")

BLANK = "blank stock"
FIT_BINS = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0]


def _natural(text: str) -> list:
    """Bed 2 before bed 11."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text) if p]


def _fit_histogram(values: list[float]) -> list[tuple[str, int]]:
    labels, counts = [], []
    lower = 0.0
    for upper in FIT_BINS:
        labels.append(f"{lower:g}–{upper:g}")
        counts.append(sum(1 for v in values if lower <= v < upper))
        lower = upper
    labels.append(f"≥{lower:g}")
    counts.append(sum(1 for v in values if v >= lower))
    return list(zip(labels, counts))


def report_data(kit: Kit, ward: str | None = None) -> dict[str, Any]:
    """Computed a batch of forms at a time (collect.iter_stores): the report never holds every
    reading of the kit (issue 16)."""
    conn = kit.db.conn
    names = {p["mrn"]: f"{p['last_name']}, {p['first_name']}" for p in load_census(conn).values()}
    per_group: dict[tuple[str, str], Counter] = defaultdict(Counter)
    missing: list[dict[str, Any]] = []
    conflicts: list[dict[str, Any]] = []
    backlog: Counter = Counter()
    backlog_reasons: Counter = Counter()
    form_ids = set()
    unlinked: set[str] = set()
    captured_forms = 0
    unused_blank = 0
    n_readings = auto = 0
    decisions: Counter = Counter()
    facts: list[FormFacts] = []
    for store in iter_stores(kit, ward):
        for form in store.forms:
            form_ids.add(form.form_id)
            if form.row["downtime_mrn"] and not form.captures:
                unused_blank += 1
            group = (form.row["ward"] or BLANK, form.template)
            returned = set(form.pages_returned)
            for s in form.sheets:
                per_group[group]["printed"] += 1
                per_group[group]["returned" if s["page"] in returned else "missing"] += 1
            if form.captures:
                captured_forms += 1
                if form.row["downtime_mrn"] and not form.real_mrn:
                    unlinked.add(form.row["downtime_mrn"])
            # blank stock never used is not "missing": it may still be in a drawer; listed separately
            if form.row["patient_mrn"] or form.captures:
                for s in form.sheets:
                    if s["page"] not in returned:
                        missing.append({"ward": form.row["ward"] or BLANK, "bed": form.row["bed"],
                                        "patient_mrn": form.patient_key, "name": names.get(form.patient_key or "", ""),
                                        "template": form.template, "sheet_id": s["sheet_id"],
                                        "page": f"{s['page']}/{s['pages']}", "form_id": form.form_id,
                                        "form_state": "never returned" if not returned else "pages missing"})
            # every reading of the form once (3.7 M at 100k captures): backlog, totals, decisions and
            # what the handover keeps of the form (FormFacts), in one pass
            form_conflicts = to_review = 0
            for name, fv in form.fields.items():
                if fv.why == "conflict between captures":
                    form_conflicts += 1
                    conflicts.append({"form_id": form.form_id, "template": form.template,
                                      "ward": form.row["ward"] or BLANK, "patient_mrn": form.patient_key,
                                      "field": name, "values": sorted({str(r.value) for r in fv.readings})})
                for r in fv.readings:
                    n_readings += 1
                    if r.status == "accepted":
                        auto += 1
                    if r.source != "machine":
                        decisions[r.source] += 1
                    if not r.resolved:
                        to_review += 1
                        backlog[group] += 1
                        backlog_reasons[r.reason or "unsure"] += 1
            facts.append(FormFacts(form.form_id, form.patient_key, bool(form.row["patient_mrn"] or form.captures),
                                   form.row["ward"], form.row["bed"], len(returned), len(form.sheets),
                                   form_conflicts, to_review))
    missing.sort(key=lambda m: (m["ward"], _natural(m["bed"] or ""), m["patient_mrn"] or "", m["template"],
                                m["page"]))

    from ..store.settings import get_setting
    lang = get_setting(kit, "language")
    quarantine = [{**{k: v for k, v in item.as_dict().items() if k in REPORTED_QUARANTINE}, **_said(lang, item)}
                  for item in list_quarantine(conn)]
    if ward:  # a quarantined page has no ward yet: show them all, say so
        pass
    n_caps = duplicates = 0
    fits: list[float] = []
    for form_id, duplicate_of, fit in conn.execute("SELECT form_id, duplicate_of, fit_error_mm FROM captures"
                                                   " WHERE status = 'read' ORDER BY capture_id"):
        if form_id in form_ids:  # a row each, not a dict per capture held
            n_caps += 1
            duplicates += bool(duplicate_of)
            if fit is not None:
                fits.append(fit)

    # re-entry progress: the latest mark per item counts; progress over time from when items were entered
    marks = _rows(conn, "SELECT item_id, status, actor, at FROM worklist_marks ORDER BY id")
    latest: dict[str, dict[str, Any]] = {}
    for m in marks:
        latest[m["item_id"]] = m
    if ward:
        latest = {k: v for k, v in latest.items() if k.split(":")[0] in form_ids or not form_ids}
    zone = local_zone(kit)
    entered_times = sorted(t for t in (_aware(m["at"]) for m in latest.values() if m["status"] == "entered") if t)
    progress = _progress([t.astimezone(zone) for t in entered_times])  # hours as the wards count them
    worklist = None
    items: dict[str, list[Any]] = {}   # patient -> the counts the handover reads of their items
    flags: list[dict[str, Any]] = []
    try:
        from ..reconcile.core import iter_report
        from ..reconcile.worklist import iter_worklist
    except ImportError:  # a build without the reconcile stage: the report says less, never guesses
        iter_report = iter_worklist = None
    if iter_worklist is not None and iter_report is not None:
        # streamed, and only counts kept: 330,000 WorkItems at 100,000 captures took gigabytes,
        # a small record per item still 100 MB (issue 16)
        key_of_form = {f.form_id: f.patient_key for f in facts if f.patient_key and f.bound}
        worklist = Counter()
        for i in iter_worklist(kit, ward=ward):
            worklist[i["status"]] += 1
            worklist["exported"] += bool(i["exported_at"])
            count_item(items, key_of_form, i)
        _totals, forms = iter_report(kit)
        intern = sys.intern  # the same wards, templates, codes and messages on thousands of flags
        for f in forms:
            if f["form_id"] not in form_ids:
                continue
            for flag in f.get("flags", []):
                flags.append({k: intern(v) if type(v) is str else v for k, v in (
                    ("ward", f.get("ward") or BLANK), ("patient_mrn", f.get("patient_mrn")),
                    ("form_id", f["form_id"]), ("template", f["template"]), *flag.items())})
        flags.sort(key=_flag_risk(kit))

    printed = sum(c["printed"] for c in per_group.values())
    returned = sum(c["returned"] for c in per_group.values())
    totals = {
        "sheets_printed": printed, "sheets_returned": returned, "sheets_missing": printed - returned,
        "sheets_missing_bound": len(missing), "unused_blank_forms": unused_blank,
        "forms_printed": len(facts), "forms_captured": captured_forms,
        "captures": n_caps, "duplicate_captures": duplicates, "conflicts": len(conflicts),
        "quarantined_pages": len(quarantine), "readings": n_readings, "readings_to_review": sum(backlog.values()),
        "auto_accepted": auto, "unlinked_identities": len(unlinked), "consistency_flags": len(flags),
        "reentry_pending": worklist.get("pending", 0) if worklist is not None else None,
        "reentry_entered": worklist.get("entered", 0) if worklist is not None
        else sum(1 for m in latest.values() if m["status"] == "entered"),
        "reentry_not_needed": worklist.get("not-needed", 0) if worklist is not None
        else sum(1 for m in latest.values() if m["status"] == "not-needed"),
        "reentry_exported": worklist.get("exported", 0) if worklist is not None else None,
    }
    head = audit_head(kit.db.conn)
    return {
        "kit_id": kit.kit_id, "generated_at": now_iso(), "ward": ward, "totals": totals,
        "zone": str(zone), "generated_local": local_text(_dt.datetime.now(_dt.timezone.utc), zone),
        "handover": handover_summary(kit, facts, flags, items, names),
        # printed on the report so that deleting the last audit rows later shows against the paper
        "audit_head": head, "audit_line": _audit_line(head),
        "by_group": [{"ward": w, "template": t, **{k: c[k] for k in ("printed", "returned", "missing")}}
                     for (w, t), c in sorted(per_group.items())],
        "missing": missing, "conflicts": conflicts, "quarantine": quarantine, "flags": flags,
        "backlog": [{"ward": w, "template": t, "readings": n} for (w, t), n in sorted(backlog.items())],
        "backlog_reasons": backlog_reasons.most_common(),
        "unlinked": sorted(unlinked), "progress": progress, "clerks": clerk_throughput(kit, zone),
        "quality": {"fit_error_median": statistics.median(fits) if fits else None,
                    "fit_error_p95": sorted(fits)[int(0.95 * (len(fits) - 1))] if fits else None,
                    "fit_histogram": _fit_histogram(fits),
                    "auto_share": auto / n_readings if n_readings else None,
                    "decisions": dict(decisions),
                    "suggestions": suggestion_accuracy(kit)},
    }


def count_item(counts: dict[str, list[Any]], key_of_form: dict[str, str], item: dict[str, Any]) -> None:
    """What the handover reads of a re-entry item (a WorkItem's dict), added to its patient's
    counts: [first ward named, entered, not needed, left, medication left]."""
    key = key_of_form.get(item["form_id"]) or item["patient_mrn"]
    if not key:
        return
    c = counts.get(key)
    if c is None:
        c = counts[key] = [None, 0, 0, 0, 0]
    if c[0] is None and item["ward"]:
        c[0] = item["ward"]
    status = item["status"]
    if status == "entered":
        c[1] += 1
    elif status == "not-needed":
        c[2] += 1
    else:
        c[3] += 1
        c[4] += item["kind"] == "medication"


def _said(lang: str, item: Any) -> dict[str, str]:
    """Why a page was put aside, in the kit's language (setting `language`), beside the code and the
    English detail the report data keeps."""
    from ..review.i18n import detail_text, reason_text
    return {"reason_text": reason_text(lang, item.reason),
            "detail_text": detail_text(lang, item.detail_codes or item.detail)}


def suggestion_accuracy(kit: Kit) -> dict[str, Any]:
    """How the digit suggestions fared with the clerks: shown, accepted as suggested, corrected, and
    the same for the pre-filled ones; of the partly pre-filled (only the sure boxes), how many the
    clerk completed keeping every pre-filled digit and in how many a pre-filled digit was changed
    (the decision that counts per reading, undone ones left out)."""
    rows = kit.db.execute(
        "SELECT v.suggestion_outcome, v.prefilled FROM reviews v WHERE v.suggestion IS NOT NULL"
        " AND v.decision != 'undo' AND v.review_id = (SELECT MAX(w.review_id) FROM reviews w"
        " WHERE w.reading_id = v.reading_id AND w.decision != 'undo'"
        " AND w.review_id NOT IN (SELECT undoes FROM reviews WHERE undoes IS NOT NULL))").fetchall()
    shown = len(rows)
    accepted = sum(1 for o, _ in rows if o == "accepted")
    prefilled = [o for o, p in rows if p == 1]
    partial = [o for o, p in rows if p == 2]
    return {"shown": shown, "accepted": accepted, "corrected": shown - accepted,
            "accuracy": accepted / shown if shown else None, "prefilled": len(prefilled),
            "prefilled_corrected": sum(1 for o in prefilled if o != "accepted"),
            "partly_prefilled": len(partial), "partly_completed": sum(1 for o in partial if o == "completed"),
            "partly_changed": sum(1 for o in partial if o == "corrected")}


# Flags in order of clinical risk: what the form's re-entry items are (medication first: a dose
# recorded wrong can be given twice), then the flags that say a value itself is doubtful.
KIND_RISK = {"medication": 0, "vitals": 1, "result": 2, "order": 3, "registration": 4}
CODE_RISK = {"mar_multiple_marks": 0, "mar_dose_unmarked": 1, "out_of_range": 2, "mar_slot_incomplete": 3}


def _flag_risk(kit: Kit):
    from ..generate import kit_templates
    try:
        templates = kit_templates(kit)
    except FallbackkitError:  # a template that no longer loads: its flags are still listed, last
        templates = {}
    kinds = {name: min((KIND_RISK.get(r.kind, 9) for r in t.reentry), default=9) for name, t in templates.items()}

    def key(flag: dict[str, Any]) -> tuple:
        return (kinds.get(flag["template"], 9), CODE_RISK.get(flag["code"], 5), flag["ward"],
                flag["patient_mrn"] or "", flag["form_id"], flag["code"])
    return key


def clerk_throughput(kit: Kit, zone: Any = None) -> list[dict[str, Any]]:
    """Per person: decisions on readings and re-entry items marked, over their working time
    (first and last in the kit's time zone)."""
    conn = kit.db.conn
    zone = zone or local_zone(kit)
    people: dict[str, dict[str, Any]] = {}

    def add(actor: str, what: str, at: str | None) -> None:
        p = people.setdefault(actor, {"actor": actor, "decisions": 0, "items_marked": 0, "first": None, "last": None})
        p[what] += 1
        moment = _aware(at)
        if moment:
            moment = moment.astimezone(zone)
            p["first"] = min(p["first"] or moment, moment)
            p["last"] = max(p["last"] or moment, moment)
    for actor, at in conn.execute("SELECT actor, at FROM reviews WHERE decision != 'undo'"):
        add(actor, "decisions", at)
    for actor, at in conn.execute("SELECT actor, at FROM worklist_marks"):
        add(actor, "items_marked", at)
    out = []
    for p in sorted(people.values(), key=lambda p: -(p["decisions"] + p["items_marked"])):
        hours = (p["last"] - p["first"]).total_seconds() / 3600 if p["first"] and p["last"] else 0.0
        out.append({**p, "first": p["first"].isoformat(timespec="minutes") if p["first"] else None,
                    "last": p["last"].isoformat(timespec="minutes") if p["last"] else None,
                    "per_hour": round((p["decisions"] + p["items_marked"]) / hours) if hours >= 0.25 else None})
    return out


def _clerk_rows(d: dict[str, Any]) -> list[list[Any]]:
    return [[c["actor"], c["decisions"], c["items_marked"], (c["first"] or "")[11:16], (c["last"] or "")[11:16],
             c["per_hour"] if c["per_hour"] is not None else "—"] for c in d["clerks"]]


CLERK_HEADER = ["Person", "Decisions", "Items marked", "From", "To", "Per hour"]


def _progress(times: list[_dt.datetime]) -> list[tuple[str, int]]:
    """Cumulative items entered, at each full hour: from 0 at the hour of the first entry to the
    total at the end of the hour of the last (so one hour of work is a line, not a lone point)."""
    if not times:
        return []
    start = times[0].replace(minute=0, second=0, microsecond=0)
    out, i, t = [(start.strftime("%d/%m %H:00"), 0)], 0, start
    while t <= times[-1]:
        t_next = t + _dt.timedelta(hours=1)
        while i < len(times) and times[i] < t_next:
            i += 1
        out.append((t_next.strftime("%d/%m %H:00"), i))
        t = t_next
    return out


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def todo_lines(d: dict[str, Any]) -> list[str]:
    t = d["totals"]
    lines = []
    if t["sheets_missing_bound"]:
        lines.append(f"{_n(t['sheets_missing_bound'], 'sheet was', 'sheets were')} printed for patients and "
                     "never came back: search the wards (list below).")
    if t["quarantined_pages"]:
        lines.append(f"{_n(t['quarantined_pages'], 'scanned page', 'scanned pages')} could not be identified: "
                     "assign them in the review station (quarantine).")
    if t["readings_to_review"]:
        lines.append(f"{_n(t['readings_to_review'], 'reading waits', 'readings wait')} for a clerk's review.")
    if t["conflicts"]:
        lines.append(f"{_n(t['conflicts'], 'field disagrees', 'fields disagree')} between two scans of the same "
                     "sheet: resolve them.")
    if t["consistency_flags"]:
        lines.append(f"{_n(t['consistency_flags'], 'entry', 'entries')} on returned forms look incomplete or "
                     "inconsistent (e.g. a dose marked without a time): check them on the paper.")
    if t["unlinked_identities"]:
        lines.append(f"{_n(t['unlinked_identities'], 'downtime MRN is', 'downtime MRNs are')} not linked to a "
                     "real patient yet.")
    if t["reentry_pending"]:
        lines.append(f"{_n(t['reentry_pending'], 're-entry item is', 're-entry items are')} still to be entered "
                     "in the record system.")
    if not lines:
        lines.append("Nothing left to do: every printed sheet is back, reviewed and re-entered.")
    return lines


def key_figures(d: dict[str, Any]) -> list[tuple[str, Any]]:
    t = d["totals"]
    q = d["quality"]
    return [("Sheets printed", t["sheets_printed"]), ("Sheets returned", t["sheets_returned"]),
            ("Sheets missing (all)", t["sheets_missing"]),
            ("Sheets missing (patient forms)", t["sheets_missing_bound"]),
            ("Blank forms not used", t["unused_blank_forms"]),
            ("Captures", t["captures"]), ("Duplicate captures", t["duplicate_captures"]),
            ("Conflicts", t["conflicts"]), ("Consistency flags", t["consistency_flags"]),
            ("Quarantined pages", t["quarantined_pages"]),
            ("Readings", t["readings"]), ("Readings to review", t["readings_to_review"]),
            ("Auto-accepted share", f"{q['auto_share']:.0%}" if q["auto_share"] is not None else "–"),
            ("Digit suggestions accepted as suggested",
             f"{q['suggestions']['accepted']} of {q['suggestions']['shown']} ({q['suggestions']['accuracy']:.1%})"
             if q["suggestions"]["shown"] else "–"),
            ("Pre-filled suggestions corrected",
             f"{q['suggestions']['prefilled_corrected']} of {q['suggestions']['prefilled']}"
             if q["suggestions"]["prefilled"] else "–"),
            ("Partly pre-filled suggestions: a pre-filled digit changed",
             f"{q['suggestions']['partly_changed']} of {q['suggestions']['partly_prefilled']}"
             if q["suggestions"]["partly_prefilled"] else "–"),
            ("Unlinked downtime MRNs", t["unlinked_identities"]),
            ("Re-entry pending", "–" if t["reentry_pending"] is None else t["reentry_pending"]),
            ("Re-entry entered", t["reentry_entered"]), ("Re-entry not needed", t["reentry_not_needed"]),
            ("Re-entry items sent by FHIR export", "–" if t["reentry_exported"] is None else t["reentry_exported"])]


# --- local times and the handover per patient -------------------------------------------------------
def local_zone(kit: Kit) -> Any:
    """The kit's time zone (store/settings.py, chosen at init): the report speaks the wards' time."""
    from zoneinfo import ZoneInfo

    from ..store.settings import get_setting
    try:
        return ZoneInfo(get_setting(kit, "tz") or "UTC")
    except Exception:  # noqa: BLE001 - a zone this machine cannot resolve: UTC, and the header says so
        return ZoneInfo("UTC")


def local_text(moment: _dt.datetime | None, zone: Any) -> str:
    """28/11/2026 14:05 CET: day first, as the paper forms print dates."""
    if moment is None:
        return ""
    return moment.astimezone(zone).strftime("%d/%m/%Y %H:%M %Z").strip()


class FormFacts(NamedTuple):
    """What the handover reads of a form (kept per form while the report goes through the batches)."""
    form_id: str
    patient_key: str | None
    bound: bool                 # bound to a patient, or used (blank stock never used is nobody's yet)
    ward: str | None
    bed: str | None
    pages_back: int
    pages: int
    conflicts: int
    to_review: int


def handover_summary(kit: Kit, forms: Iterable[FormFacts], flags: list[dict[str, Any]],
                     items: dict[str, list[Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """Per patient, what the next shift must know: forms back, partly back or missing; re-entry
    items entered and left; open flags, conflicts and readings to review. Ranked by risk: the
    patient whose worst open flag is clinically worst first (medication before vitals, before
    orders; see KIND_RISK, CODE_RISK), then the most medication items still to enter, the most
    forms missing, the most items left."""
    risk_of = _flag_risk(kit)
    patients: dict[str, dict[str, Any]] = {}
    key_of_form: dict[str, str] = {}

    def patient(key: str, ward: str | None = None, bed: str | None = None) -> dict[str, Any]:
        p = patients.setdefault(key, {
            "patient": key, "name": names.get(key, ""), "ward": ward or BLANK, "bed": bed or "",
            "forms_returned": 0, "forms_partly": 0, "forms_missing": 0, "items_entered": 0, "items_not_needed": 0,
            "items_left": 0, "medication_left": 0, "flags": 0, "conflicts": 0, "to_review": 0,
            "top_flag": None, "_risk": (9, 9)})
        if ward and p["ward"] == BLANK:
            p["ward"], p["bed"] = ward, bed or ""
        return p

    for form in forms:
        key = form.patient_key
        if not key or not form.bound:  # unused blank stock is nobody's yet
            continue
        key_of_form[form.form_id] = key
        p = patient(key, form.ward, form.bed)
        back = form.pages_back
        p["forms_returned" if back >= form.pages else "forms_partly" if back else "forms_missing"] += 1
        p["conflicts"] += form.conflicts
        p["to_review"] += form.to_review
    for key, (ward, entered, not_needed, left, medication_left) in items.items():  # count_item's
        p = patient(key, ward)
        p["items_entered"] += entered
        p["items_not_needed"] += not_needed
        p["items_left"] += left
        p["medication_left"] += medication_left
    for flag in flags:  # already in order of risk: the first one seen per patient is their worst
        key = key_of_form.get(flag["form_id"]) or flag.get("patient_mrn")
        if not key:
            continue
        p = patient(key)
        p["flags"] += 1
        if p["top_flag"] is None:
            p["top_flag"] = flag.get("message") or flag.get("code")
            p["_risk"] = risk_of(flag)[:2]
    out = sorted(patients.values(), key=lambda p: (
        p["_risk"], -p["medication_left"], -p["forms_missing"] - p["forms_partly"], -p["items_left"],
        -p["conflicts"] - p["to_review"], p["ward"], _natural(p["bed"]), p["patient"]))
    for rank, p in enumerate(out, 1):
        p["rank"] = rank
        p["why"] = _handover_why(p)
        del p["_risk"]
    return out


def _handover_why(p: dict[str, Any]) -> str:
    parts = []
    if p["flags"]:  # the flag in words: the slot's internal key ("m1.s2 — ...") is not for people
        worst = re.sub(r"^[a-z]+\d+(?:\.[a-z0-9_]+)*\s+—\s+", "", str(p["top_flag"]))
        parts.append(f"{_n(p['flags'], 'open flag', 'open flags')}, worst: {worst}")
    if p["medication_left"]:
        parts.append(f"{_n(p['medication_left'], 'medication item', 'medication items')} not entered")
    if p["forms_missing"] or p["forms_partly"]:
        parts.append(f"{_n(p['forms_missing'] + p['forms_partly'], 'form', 'forms')} not (all) back")
    if p["conflicts"] or p["to_review"]:
        parts.append(f"{p['conflicts'] + p['to_review']} to review")
    if p["items_left"] and not p["medication_left"]:
        parts.append(f"{_n(p['items_left'], 'item', 'items')} to enter")
    return "; ".join(parts) or "nothing open"


HANDOVER_HEADER = ["#", "Ward · bed", "Patient", "Forms back / missing", "Items entered / left", "Flags",
                   "What is open"]


def _handover_rows(d: dict[str, Any]) -> list[list[Any]]:
    return [[p["rank"], f"{p['ward']} · {p['bed']}" if p["bed"] else p["ward"],
             f"{p['name']} ({p['patient']})" if p["name"] else p["patient"],
             f"{p['forms_returned'] + p['forms_partly']} / {p['forms_missing'] + p['forms_partly']}",
             f"{p['items_entered']} / {p['items_left']}", p["flags"], p["why"]] for p in d["handover"]]


# --- PDF ------------------------------------------------------------------------------------------
def render_pdf(d: dict[str, Any], out: Path) -> Path:
    import io

    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.charts.lineplots import LinePlot
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle

    from .. import fonts
    fonts.register()
    body = ParagraphStyle("body", fontName=fonts.REGULAR, fontSize=9.5, leading=12.5)
    h1 = ParagraphStyle("h1", fontName=fonts.BOLD, fontSize=16, leading=20, spaceAfter=6)
    h2 = ParagraphStyle("h2", fontName=fonts.BOLD, fontSize=12, leading=15, spaceBefore=8, spaceAfter=4)
    todo = ParagraphStyle("todo", parent=body, fontSize=11, leading=15, leftIndent=10, bulletIndent=0)

    def table(rows: list[list[Any]], widths=None) -> Table:
        data = [[Paragraph(html.escape(str(c)), body) for c in r] for r in rows]
        t = Table(data, colWidths=widths, repeatRows=1)
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return t

    def bars(labels: list[str], series: list[list[int]], names: list[str], title: str) -> Any:
        if not labels:
            return Paragraph(f"{html.escape(title)}: nothing to show yet.", body)
        drawing = Drawing(170 * mm, 62 * mm)
        chart = VerticalBarChart()
        chart.x, chart.y, chart.width, chart.height = 12 * mm, 14 * mm, 150 * mm, 40 * mm
        chart.data = series
        chart.categoryAxis.categoryNames = labels
        chart.categoryAxis.labels.fontName = fonts.REGULAR
        chart.categoryAxis.labels.fontSize = 6
        chart.categoryAxis.labels.angle = 20 if len(labels) > 6 else 0
        chart.categoryAxis.labels.boxAnchor = "ne" if len(labels) > 6 else "n"
        chart.valueAxis.labels.fontName = fonts.REGULAR
        chart.valueAxis.valueMin = 0
        palette = [colors.HexColor("#4e79a7"), colors.HexColor("#59a14f"), colors.HexColor("#e15759")]
        for i in range(len(chart.data)):
            chart.bars[i].fillColor = palette[i % len(palette)]
        drawing.add(chart)
        drawing.add(String(12 * mm, 58 * mm, title, fontName=fonts.BOLD, fontSize=9))
        x = 100 * mm
        for i, name in enumerate(names):
            drawing.add(String(x, 58 * mm, "■ " + name, fontName=fonts.REGULAR, fontSize=8,
                               fillColor=palette[i % len(palette)]))
            x += 22 * mm
        return drawing

    story: list[Any] = []
    scope = f"ward {d['ward']}" if d["ward"] else "all wards"
    story.append(Paragraph(f"Downtime reconciliation report — {html.escape(scope)}", h1))
    story.append(Paragraph(f"Kit {d['kit_id']} · generated {d['generated_local']} · times in {d['zone']}", body))
    story.append(Paragraph(html.escape(d["audit_line"]), body))
    story.append(Paragraph("What is left to do", h2))
    for line in todo_lines(d):
        story.append(Paragraph(html.escape(line), todo, bulletText="•"))
    story.append(Paragraph("Key figures", h2))
    story.append(table([["Figure", "Value"]] + [[k, v] for k, v in key_figures(d)], [90 * mm, 40 * mm]))
    story.append(PageBreak())
    story.append(Paragraph("Handover per patient, highest risk first", h2))
    story.append(table([HANDOVER_HEADER] + _handover_rows(d), [7 * mm, 17 * mm, 36 * mm, 20 * mm, 20 * mm,
                                                               14 * mm, 66 * mm])
                 if d["handover"] else Paragraph("No patient form has come back yet.", body))

    story.append(Paragraph("Printed, returned and missing sheets", h2))
    groups = d["by_group"]
    labels = [f"{g['ward']} {g['template']}" for g in groups]
    story.append(bars(labels, [[g["printed"] for g in groups], [g["returned"] for g in groups],
                               [g["missing"] for g in groups]], ["printed", "returned", "missing"],
                      "Sheets per ward and form type"))
    story.append(table([["Ward", "Form", "Printed", "Returned", "Missing"]] +
                       [[g["ward"], g["template"], g["printed"], g["returned"], g["missing"]] for g in groups]))
    story.append(Paragraph("Missing sheets by ward and patient", h2))
    if d["missing"]:
        story.append(table([["Ward", "Bed", "MRN", "Name", "Form", "Page", "Sheet id"]] +
                           [[m["ward"], m["bed"] or "", m["patient_mrn"] or "", m["name"], m["template"], m["page"],
                             pretty_sheet_id(m["sheet_id"])] for m in d["missing"]]))
    else:
        story.append(Paragraph("None.", body))
    story.append(Paragraph("Conflicts between captures", h2))
    story.append(table([["Ward", "MRN", "Form", "Field", "Values"]] +
                       [[c["ward"], c["patient_mrn"] or "", f"{c['template']} {c['form_id']}", c["field"],
                         " / ".join(c["values"])] for c in d["conflicts"]]) if d["conflicts"]
                 else Paragraph("None.", body))
    story.append(Paragraph("Consistency flags on returned forms", h2))
    story.append(table([["Ward", "MRN", "Form", "Field", "Problem"]] +
                       [[x["ward"], x["patient_mrn"] or "", f"{x['template']} {x['form_id']}", x["field"] or "",
                         x["message"]] for x in d["flags"]]) if d["flags"] else Paragraph("None.", body))
    story.append(Paragraph("Quarantine (pages not identified)", h2))
    story.append(table([["#", "Reason", "Detail", "File", "Page"]] +
                       [[q["quarantine_id"], q.get("reason_text") or q["reason"], q.get("detail_text", q["detail"]) or "",
                         q["file"] or "", q["page_index"]]
                        for q in d["quarantine"]]) if d["quarantine"] else Paragraph("None.", body))
    story.append(Paragraph("Review backlog", h2))
    if d["backlog"]:
        story.append(bars([f"{b['ward']} {b['template']}" for b in d["backlog"]],
                          [[b["readings"] for b in d["backlog"]]], ["readings"], "Readings waiting for review"))
        story.append(table([["Reason", "Readings"]] + [[r, n] for r, n in d["backlog_reasons"]]))
    else:
        story.append(Paragraph("None.", body))
    story.append(Paragraph("Throughput per person", h2))
    story.append(table([CLERK_HEADER] + _clerk_rows(d)) if d["clerks"] else Paragraph("No decision yet.", body))
    story.append(Paragraph("Re-entry progress", h2))
    if d["progress"]:
        drawing = Drawing(170 * mm, 60 * mm)
        plot = LinePlot()
        plot.x, plot.y, plot.width, plot.height = 12 * mm, 12 * mm, 150 * mm, 40 * mm
        plot.data = [[(i, n) for i, (_, n) in enumerate(d["progress"])]]
        plot.lines[0].strokeColor = colors.HexColor("#4e79a7")
        points = d["progress"]
        plot.xValueAxis.valueMin, plot.xValueAxis.valueMax = 0, len(points) - 1
        step = max(1, (len(points) - 1) // 8)  # at most about nine hour labels
        plot.xValueAxis.valueSteps = list(range(0, len(points), step))
        plot.xValueAxis.labelTextFormat = lambda v: points[int(v)][0][-5:] if 0 <= int(v) < len(points) else ""
        plot.yValueAxis.valueMin = 0
        plot.yValueAxis.valueMax = max(1, points[-1][1])
        plot.xValueAxis.labels.fontName = plot.yValueAxis.labels.fontName = fonts.REGULAR
        drawing.add(plot)
        drawing.add(String(12 * mm, 56 * mm, f"Items entered, cumulative per hour, {d['progress'][0][0]} to {d['progress'][-1][0]}",
                           fontName=fonts.BOLD, fontSize=9))
        story.append(drawing)
    else:
        story.append(Paragraph("No item has been marked entered yet.", body))
    story.append(Paragraph("Reading quality", h2))
    q = d["quality"]
    hist = q["fit_histogram"]
    story.append(bars([h[0] for h in hist], [[h[1] for h in hist]], ["captures"],
                      "Page fit error (mm) of the read captures"))
    story.append(Paragraph(
        f"Median fit error: {_fmt(q['fit_error_median'])} mm, 95th percentile: {_fmt(q['fit_error_p95'])} mm. "
        f"Share of readings auto-accepted: {_pct(q['auto_share'])}. People's decisions: "
        + (", ".join(f"{k} {v}" for k, v in sorted(q["decisions"].items())) or "none") + ".", body))

    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont(fonts.REGULAR, 7.5)
        canvas.drawString(15 * mm, 8 * mm, f"fallbackkit · kit {d['kit_id']} · contains patient data · "
                                           f"page {doc.page}")
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=15 * mm, title="Downtime reconciliation report",
                            author="fallbackkit")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return write_private(out, buf.getvalue())


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


# --- HTML -----------------------------------------------------------------------------------------
def _svg_bars(labels: list[str], series: list[list[int]], names: list[str], title: str) -> str:
    """A grouped bar chart as inline SVG (no xmlns: HTML5 inline SVG needs none, and no URL appears)."""
    e = html.escape
    if not labels:
        return f"<p>{e(title)}: nothing to show yet.</p>"
    width, height, left, bottom, top = 760, 260, 40, 70, 30
    plot_w, plot_h = width - left - 10, height - bottom - top
    top_value = max([1] + [v for s in series for v in s])
    palette = ["#4e79a7", "#59a14f", "#e15759"]
    n = max(1, len(labels))
    group_w = plot_w / n
    bar_w = max(2.0, group_w * 0.8 / max(1, len(series)))
    parts = [f'<svg role="img" aria-label="{e(title)}" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}">', f'<title>{e(title)}</title>',
             f'<text x="{left}" y="16" font-weight="bold" font-size="13">{e(title)}</text>']
    for i, name in enumerate(names):
        parts.append(f'<rect x="{left + 300 + i * 110}" y="6" width="10" height="10" fill="{palette[i % 3]}"/>'
                     f'<text x="{left + 314 + i * 110}" y="15" font-size="11">{e(name)}</text>')
    for k in range(5):
        v = top_value * k / 4
        y = top + plot_h - plot_h * k / 4
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{v:.0f}</text>')
    for gi, label in enumerate(labels):
        x0 = left + gi * group_w + group_w * 0.1
        for si, s in enumerate(series):
            v = s[gi]
            h = plot_h * v / top_value
            parts.append(f'<rect x="{x0 + si * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 1:.1f}" '
                         f'height="{h:.1f}" fill="{palette[si % 3]}"><title>{e(label)} {e(names[si])}: {v}'
                         f'</title></rect>')
        cx = left + gi * group_w + group_w / 2
        parts.append(f'<text x="{cx:.1f}" y="{top + plot_h + 14}" font-size="10" text-anchor="end" '
                     f'transform="rotate(-30 {cx:.1f} {top + plot_h + 14})">{e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_line(points: list[tuple[str, int]], title: str) -> str:
    e = html.escape
    width, height, left, bottom, top = 760, 220, 40, 40, 30
    plot_w, plot_h = width - left - 10, height - bottom - top
    top_value = max([1] + [v for _, v in points])
    n = max(1, len(points) - 1)
    coords = [(left + plot_w * i / n, top + plot_h - plot_h * v / top_value) for i, (_, v) in enumerate(points)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    parts = [f'<svg role="img" aria-label="{e(title)}" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}">', f'<title>{e(title)}</title>',
             f'<text x="{left}" y="16" font-weight="bold" font-size="13">{e(title)}</text>',
             f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#999"/>',
             f'<line x1="{left}" x2="{width - 10}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#999"/>',
             f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end">{top_value}</text>',
             f'<polyline points="{path}" fill="none" stroke="#4e79a7" stroke-width="2"/>']
    for (label, v), (x, y) in zip(points, coords):
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#4e79a7"><title>{e(label)}: {v}</title></circle>')
    parts.append(f'<text x="{left}" y="{height - 8}" font-size="10">{e(points[0][0])}</text>'
                 f'<text x="{width - 10}" y="{height - 8}" font-size="10" text-anchor="end">{e(points[-1][0])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _html_table(header: list[str], rows: list[list[Any]]) -> str:
    return "".join(_html_table_parts(header, rows))


def _html_table_parts(header: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    """`_html_table`'s text, a row at a time (the flags of 100,000 captures are a 75 MB table)."""
    e = html.escape
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        yield "<p>None.</p>"
        return
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    yield f"<table><thead><tr>{head}</tr></thead><tbody>"
    for r in itertools.chain([first], rows):
        yield "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>"
    yield "</tbody></table>"


def render_html(d: dict[str, Any], out: Path) -> Path:
    e = html.escape
    scope = f"ward {d['ward']}" if d["ward"] else "all wards"
    groups = d["by_group"]
    q = d["quality"]
    hist = q["fit_histogram"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Downtime reconciliation report — {e(scope)}</title>",
        "<style>body{font-family:'DejaVu Sans',Arial,sans-serif;margin:2em;max-width:60em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #aaa;padding:.2em .5em;"
        "text-align:left;font-size:.9em}th{background:#eee}.todo li{font-size:1.1em;margin:.3em 0}"
        "section{page-break-inside:avoid}@media print{.first{page-break-after:always}}</style></head><body>",
        '<section class="first">', f"<h1>Downtime reconciliation report — {e(scope)}</h1>",
        f"<p>Kit {e(d['kit_id'])} · generated {e(d['generated_local'])} · times in {e(d['zone'])} · contains"
        " patient data</p>",
        f"<p>{e(d['audit_line'])}</p>",
        "<h2>What is left to do</h2>", '<ul class="todo">',
        *[f"<li>{e(line)}</li>" for line in todo_lines(d)], "</ul>",
        "<h2>Key figures</h2>", _html_table(["Figure", "Value"], [[k, v] for k, v in key_figures(d)]),
        "</section>",
        "<section><h2>Handover per patient, highest risk first</h2>",
        _html_table(HANDOVER_HEADER, _handover_rows(d)),
        "</section>",
        "<section><h2>Printed, returned and missing sheets</h2>",
        _svg_bars([f"{g['ward']} {g['template']}" for g in groups],
                  [[g["printed"] for g in groups], [g["returned"] for g in groups], [g["missing"] for g in groups]],
                  ["printed", "returned", "missing"], "Sheets per ward and form type"),
        _html_table(["Ward", "Form", "Printed", "Returned", "Missing"],
                    [[g["ward"], g["template"], g["printed"], g["returned"], g["missing"]] for g in groups]),
        "</section><section><h2>Missing sheets by ward and patient</h2>",
        _html_table_parts(["Ward", "Bed", "MRN", "Name", "Form", "Page", "Sheet id"],
                          ([m["ward"], m["bed"] or "", m["patient_mrn"] or "", m["name"], m["template"], m["page"],
                            pretty_sheet_id(m["sheet_id"])] for m in d["missing"])),
        "</section><section><h2>Conflicts between captures</h2>",
        _html_table_parts(["Ward", "MRN", "Form", "Field", "Values"],
                          ([c["ward"], c["patient_mrn"] or "", f"{c['template']} {c['form_id']}", c["field"],
                            " / ".join(c["values"])] for c in d["conflicts"])),
        "</section><section><h2>Consistency flags on returned forms</h2>",
        _html_table_parts(["Ward", "MRN", "Form", "Field", "Problem"],
                          ([x["ward"], x["patient_mrn"] or "", f"{x['template']} {x['form_id']}", x["field"] or "",
                            x["message"]] for x in d["flags"])),
        "</section><section><h2>Quarantine (pages not identified)</h2>",
        _html_table(["#", "Reason", "Detail", "File", "Page"],
                    [[x["quarantine_id"], x.get("reason_text") or x["reason"], x.get("detail_text", x["detail"]) or "",
                      x["file"] or "", x["page_index"]] for x in d["quarantine"]]),
        "</section><section><h2>Review backlog</h2>",
        _svg_bars([f"{b['ward']} {b['template']}" for b in d["backlog"]], [[b["readings"] for b in d["backlog"]]],
                  ["readings"], "Readings waiting for review") if d["backlog"] else "",
        _html_table(["Reason", "Readings"], [[r, n] for r, n in d["backlog_reasons"]]),
        "</section><section><h2>Throughput per person</h2>",
        _html_table(CLERK_HEADER, _clerk_rows(d)) if d["clerks"] else "<p>No decision yet.</p>",
        "</section><section><h2>Re-entry progress</h2>",
        _svg_line(d["progress"], "Items entered, cumulative per hour") if d["progress"]
        else "<p>No item has been marked entered yet.</p>",
        "</section><section><h2>Reading quality</h2>",
        _svg_bars([h[0] for h in hist], [[h[1] for h in hist]], ["captures"], "Page fit error (mm) of the read captures"),
        f"<p>Median fit error: {_fmt(q['fit_error_median'])} mm, 95th percentile: {_fmt(q['fit_error_p95'])} mm. "
        f"Share of readings auto-accepted: {_pct(q['auto_share'])}. People's decisions: "
        f"{e(', '.join(f'{k} {v}' for k, v in sorted(q['decisions'].items())) or 'none')}.</p>",
        "</section></body></html>"]
    # written as it is made: "\n".join(parts), the big tables a row at a time
    with private_writer(out, text=True) as fh:
        for n, part in enumerate(parts):
            if n:
                fh.write("\n")
            if isinstance(part, str):
                fh.write(part)
            else:
                for chunk in part:
                    fh.write(chunk)
    return Path(out)


def write_report(kit: Kit, out: Path | str, ward: str | None = None) -> dict[str, Any]:
    out = outside_kit(kit.path, out, "a report")
    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".html", ".htm"):
        raise BadInput(f"{out}: the report is written as .pdf or .html", hint="e.g. --out report.pdf")
    with snapshot(kit):  # one state of the store, read a batch at a time
        d = report_data(kit, ward)
    (render_pdf if suffix == ".pdf" else render_html)(d, out)
    return {"file": str(out), "totals": d["totals"], "todo": todo_lines(d), "audit_head": d["audit_head"]}


def _audit_line(head: dict[str, Any]) -> str:
    return (f"Audit log: {head['rows']} rows, last row {head['last_id']}, hash {(head['last_hash'] or '')[:16]} "
            "(`fallbackkit check` must find at least these rows)")
