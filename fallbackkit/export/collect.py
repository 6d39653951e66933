"""What the store knows of its forms, gathered a batch of forms at a time for the exporters and the report.

Exporters must agree with the review station on what a field's value is, so each reading comes
from `store.readings.effective_readings` (the one rule: latest review that is not undone, else the
machine value, resolved when it was auto-accepted). Across several captures of the same sheet a
field is settled only when every capture agrees after people's decisions: a disagreement that
nobody resolved is a conflict and the field stays unsettled (fail closed).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, Iterable, Iterator

from ..errors import BadInput, Conflict
from ..files import write_private  # noqa: F401  (re-exported: the one owner is fallbackkit/files.py)
from ..store.decisions import current_links
from ..store.kit import Kit
from ..store.readings import Reading, current_reviews, effective_readings



# --- writing files that hold patient data -----------------------------------------------------
def parse_since(text: str | None, zone: str | None = None) -> _dt.datetime | None:
    """`--since` accepts an ISO date or date-time; without an offset it is a wall-clock time in the
    kit's zone (settings 'tz'; this computer's when no zone is given). A time a DST change skips or
    repeats means the earlier of its two readings: a filter that includes more loses nothing."""
    if not text:
        return None
    try:
        value = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--since {text!r} is not a date or date-time",
                       hint="use ISO form, e.g. 2026-11-28 or 2026-11-28T14:00") from None
    if value.tzinfo:
        return value
    if not zone:
        return value.astimezone()
    from zoneinfo import ZoneInfo
    tz = ZoneInfo(zone)
    return min(value.replace(tzinfo=tz, fold=0), value.replace(tzinfo=tz, fold=1),
               key=lambda m: m.astimezone(_dt.timezone.utc))


def _aware(text: str | None) -> _dt.datetime | None:
    if not text:
        return None
    try:
        value = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.astimezone()


# --- the gathered data ------------------------------------------------------------------------
@dataclass
class FieldValue:
    """A field of a form, settled across every capture of its sheet."""
    name: str
    value: Any
    settled: bool
    why: str | None             # why it is not settled: review pending, conflict, illegible
    readings: list[Reading]

    @property
    def reviewers(self) -> list[str]:
        return sorted({r.reviewer for r in self.readings if r.reviewer})

    @property
    def transcribers(self) -> list[str]:
        return sorted({r.reviewer for r in self.readings if r.reviewer and r.source == "transcribe"})

    @property
    def latest_at(self) -> str | None:
        times = [r.reviewed_at for r in self.readings if r.reviewed_at]
        return max(times, key=lambda t: _aware(t) or _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)) \
            if times else None


class FieldGeometry(Mapping):
    """Field name -> its layout entry with the page and sheet id it is on, made when asked for: a
    form has hundreds of fields, an export at 100,000 captures millions, and only the FHIR export
    of a MAR slot asks for one."""

    def __init__(self) -> None:
        self._at: dict[str, tuple[dict[str, Any], int, str]] = {}

    def place(self, entry: dict[str, Any], page: int, sheet_id: str) -> None:
        self._at[entry["name"]] = (entry, page, sheet_id)

    def __getitem__(self, name: str) -> dict[str, Any]:
        entry, page, sheet_id = self._at[name]
        return {**entry, "page": page, "sheet_id": sheet_id}

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)


@dataclass
class Form:
    row: dict[str, Any]
    sheets: list[dict[str, Any]]
    captures: list[dict[str, Any]]              # read captures of its sheets, oldest first
    fields: dict[str, FieldValue] = field(default_factory=dict)
    geometry: FieldGeometry = field(default_factory=lambda: FieldGeometry())  # field name -> geometry entry
    real_mrn: str | None = None

    @property
    def form_id(self) -> str:
        return self.row["form_id"]

    @property
    def template(self) -> str:
        return self.row["template"]

    @property
    def pages_returned(self) -> list[int]:
        got = {c["page"] for c in self.captures}
        return sorted(s["page"] for s in self.sheets if s["page"] in got)

    @property
    def pages_missing(self) -> list[int]:
        got = set(self.pages_returned)
        return sorted(s["page"] for s in self.sheets if s["page"] not in got)

    @property
    def patient_key(self) -> str | None:
        """The MRN the patient is known by: the real one when known or linked, else the downtime one."""
        return self.row["patient_mrn"] or self.real_mrn or self.row["downtime_mrn"]

    def value(self, name: str) -> Any:
        fv = self.fields.get(name)
        return fv.value if fv is not None and fv.settled else None


@dataclass
class Store:
    kit_id: str
    forms: list[Form]
    readings: list[Reading]
    captures: dict[int, dict[str, Any]]
    files: dict[str, dict[str, Any]]
    links: dict[str, str]                       # downtime MRN -> real MRN (active links)
    census: dict[str, dict[str, Any]]           # real MRN -> latest census row


def active_links(conn) -> dict[str, str]:
    """downtime MRN -> real MRN, for the links that count."""
    return {dt: link["real_mrn"] for dt, link in current_links(conn).items()}


def _rows(conn, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    cur = conn.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur]


def settle(name: str, readings: list[Reading]) -> FieldValue:
    if len(readings) == 1:  # most fields (millions at 100k captures): the same answers as below, sooner
        r = readings[0]
        if not r.resolved:
            return FieldValue(name, None, False, "review pending", readings)
        if r.source == "illegible":
            return FieldValue(name, None, False, "illegible", readings)
        return FieldValue(name, r.value, True, None, readings)
    pending = [r for r in readings if not r.resolved]
    if pending:
        return FieldValue(name, None, False, "review pending", readings)
    # one capture (most fields) cannot disagree with itself: no JSON text to compare (millions of fields)
    if len(readings) > 1 and len({json.dumps(r.value, sort_keys=True) for r in readings}) > 1:
        return FieldValue(name, None, False, "conflict between captures", readings)
    if any(r.source == "illegible" for r in readings):
        return FieldValue(name, None, False, "illegible", readings)
    return FieldValue(name, readings[-1].value, True, None, readings)


def load_census(conn) -> dict[str, dict[str, Any]]:
    """real MRN -> latest census row."""
    census: dict[str, dict[str, Any]] = {}
    for p in _rows(conn, "SELECT * FROM patients ORDER BY snapshot_id"):
        census[p["mrn"]] = p
    return census


SNAPSHOT_TRIES = 5


@contextlib.contextmanager
def snapshot(kit: Kit) -> Iterator[None]:
    """One state of the store for a whole export or report, read a batch at a time (issue 16): a
    read transaction (WAL: the station's writers go on and are not waited for, and a write they
    commit meanwhile is not seen). The kept summaries are brought up to date first, in their own
    write: inside the read transaction nothing may write (a write would hold the station's write
    lock for the whole export), so a mark that slips in between is refreshed and the read begun
    again. Nothing is written inside; the transaction is ended by a rollback."""
    conn = kit.db.conn
    if conn.in_transaction:  # already inside one state (a caller's transaction)
        yield
        return
    refresh = None
    if not kit.read_only:
        try:
            from ..reconcile.summary import refresh
        except ImportError:  # a build without the reconcile stage keeps no summaries
            refresh = None
    for _ in range(SNAPSHOT_TRIES):
        if refresh is not None:
            refresh(kit)
        conn.execute("BEGIN")
        if refresh is None or conn.execute("SELECT 1 FROM summary_dirty LIMIT 1").fetchone() is None:
            break
        conn.rollback()
    else:
        raise Conflict("the store changed under every try to read one state of it",
                       hint="run the command again (a station or a scan is writing a lot right now)")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.rollback()  # nothing was written: ending the read transaction


FORMS_PER_BATCH = 1000  # the exports hold the forms, captures and readings of this many forms at a time


def _in(column: str, values: list[Any]) -> str:
    return f"{column} IN ({','.join('?' * len(values))})"


def iter_stores(kit: Kit, ward: str | None = None, batch: int = FORMS_PER_BATCH) -> Iterator[Store]:
    """The forms of the kit (of WARD) as printed, a batch at a time, each whole (its sheets, captures
    and settled fields), so that an export holds the readings of BATCH forms, not of the kit
    (issue 16). Each Store's captures and files are those of its forms; census is empty."""
    loader = FormLoader(kit)
    forms_sql = "SELECT form_id FROM forms"
    params: list[Any] = []
    if ward:
        forms_sql += " WHERE ward = ?"
        params.append(ward)
    form_ids = [r[0] for r in kit.db.conn.execute(forms_sql + " ORDER BY printed_at, form_id", params)]
    for start in range(0, len(form_ids), batch):
        yield loader.store(form_ids[start:start + batch])


class FormLoader:
    """Whole forms (their sheets, captures, files and settled fields) for the form ids asked, with
    what every batch shares (identity links, layouts, people's decisions) read once."""

    def __init__(self, kit: Kit):
        conn = kit.db.conn
        self.kit = kit
        self.links = active_links(conn)
        self.layouts = {h: json.loads(g) for h, g in conn.execute("SELECT hash, geometry FROM layouts")}
        self.reviews = current_reviews(conn)

    def store(self, part: list[str]) -> Store:
        """A Store of these forms, in this order (ids not in the kit are left out)."""
        conn, links, layouts = self.kit.db.conn, self.links, self.layouts
        by_id: dict[str, dict[str, Any]] = {}
        sheets_by_form: dict[str, list[dict]] = defaultdict(list)
        for i in range(0, len(part), 500):
            chunk = part[i:i + 500]
            by_id.update((r["form_id"], r) for r in _rows(conn, "SELECT * FROM forms WHERE " + _in("form_id", chunk),
                                                          chunk))
            for s in _rows(conn, "SELECT * FROM sheets WHERE " + _in("form_id", chunk) + " ORDER BY form_id, page",
                           chunk):
                sheets_by_form[s["form_id"]].append(s)
        sheet_ids = [s["sheet_id"] for sheets in sheets_by_form.values() for s in sheets]
        captures: dict[int, dict[str, Any]] = {}
        for i in range(0, len(sheet_ids), 500):
            chunk = sheet_ids[i:i + 500]
            captures.update((c["capture_id"], c) for c in _rows(
                conn, "SELECT * FROM captures WHERE " + _in("sheet_id", chunk), chunk))
        captures = dict(sorted(captures.items()))
        shas = sorted({c["file_sha256"] for c in captures.values() if c["file_sha256"]})
        files: dict[str, dict[str, Any]] = {}
        for i in range(0, len(shas), 500):
            chunk = shas[i:i + 500]
            files.update((f["sha256"], f) for f in _rows(
                conn, "SELECT * FROM input_files WHERE " + _in("sha256", chunk), chunk))
        caps_by_sheet: dict[str, list[dict]] = defaultdict(list)
        for c in captures.values():
            if c["status"] == "read" and c["sheet_id"]:
                caps_by_sheet[c["sheet_id"]].append(c)
        read_ids = [cid for sheet in caps_by_sheet.values() for cid in (c["capture_id"] for c in sheet)]
        readings = sorted(effective_readings(conn, capture_ids=read_ids, order="reading", reviews=self.reviews),
                          key=lambda r: r.reading_id) if read_ids else []
        by_sheet_field: dict[tuple[str, str], list[Reading]] = defaultdict(list)
        for r in readings:
            by_sheet_field[(r.sheet_id, r.field)].append(r)
        forms = [_form(by_id[fid], sheets_by_form.get(fid, []), caps_by_sheet, layouts, by_sheet_field, links)
                 for fid in part if fid in by_id]
        return Store(self.kit.kit_id, forms, readings, captures, files, links, {})


def _form(row, sheets, caps_by_sheet, layouts, by_sheet_field, links) -> Form:
    form = Form(row, sheets, [c for s in sheets for c in caps_by_sheet.get(s["sheet_id"], [])])
    form.real_mrn = row["patient_mrn"] or links.get(row["downtime_mrn"] or "")
    for s in sheets:
        for g in layouts.get(s["layout_hash"], {}).get("fields", []):
            form.geometry.place(g, s["page"], s["sheet_id"])
            found = by_sheet_field.get((s["sheet_id"], g["name"]))
            if found:
                form.fields[g["name"]] = settle(g["name"], found)
    return form


def touched_since(form: Form, since: _dt.datetime | None) -> bool:
    """A form changed since T when one of its pages was captured or one of its readings reviewed since T."""
    if since is None:
        return True
    for c in form.captures:
        t = _aware(c.get("captured_at"))
        if t and t >= since:
            return True
    for fv in form.fields.values():
        for r in fv.readings:
            t = _aware(r.reviewed_at)
            if t and t >= since:
                return True
    return False
