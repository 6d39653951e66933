"""Per-form summaries kept up to date on write, so that no view reads every reading (issue 16).

The store marks a form in `summary_dirty` in the same transaction as every write that can change
what it shows (SQLite triggers, migration m0065: captures, readings, decisions and undos, links,
worklist marks, quarantine, new forms and sheets, kit settings). `refresh` recomputes the marked
forms, one batch at a time, with the very functions the full recompute uses
(`core.form_entry`, `worklist.form_work_items`), under the write lock, and clears the marks; every
reader here refreshes first, so what it returns always equals `reconcile --full` on the same store.
Writers with a kit at hand (print, scan, the station after a decision, merge, mark, link) refresh right after
their write, so a view usually finds nothing to recompute.

Tables (m0065): form_summary (a form's counts), form_reports (its report entry), form_reasons (readings
waiting per form and reason), worklist_items (each re-entry item, with a sort key in back-load
order).
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from ..errors import FallbackkitError
from ..store.transactions import atomic
from ..store.kit import Kit
from .core import TOTAL_KEYS, _Pass, form_entry
from .state import CHUNK, load_registry
from .worklist import FORMS_PER_BATCH, BuildContext, WorkItem, _marks, back_load_text, build_context, \
    form_work_items

ALL, QUARANTINE = "**", "*"
NO_WARD = "—"
WARD_COLS = ("forms", "pages", "returned", "missing", "never_returned", "complete", "duplicates", "conflicts",
             "to_review", "flags", "items_pending", "items_entered")
WARD_SUMS = ("COUNT(*), SUM(pages), SUM(returned), SUM(missing), SUM(missing - in_quarantine), SUM(state = 'complete'),"
             " SUM(duplicates), SUM(conflicts), SUM(to_review), SUM(flags), SUM(items_pending), SUM(items_entered)")
_ADD_WARD = (f"INSERT INTO ward_totals (ward, {', '.join(WARD_COLS)}) VALUES ({', '.join('?' * (len(WARD_COLS) + 1))})"
             f" ON CONFLICT (ward) DO UPDATE SET {', '.join(f'{c} = {c} + excluded.{c}' for c in WARD_COLS)}")
_ADD_REASON = ("INSERT INTO reason_totals (ward, template, reason, waiting) VALUES (?, ?, ?, ?)"
               " ON CONFLICT (ward, template, reason) DO UPDATE SET waiting = waiting + excluded.waiting")


def _add_totals(conn, form_ids: list[str], sign: int) -> None:
    """Add (sign 1) or take away (sign -1) these forms' counts from the per-ward and per-reason sums."""
    for start in range(0, len(form_ids), CHUNK):
        part = form_ids[start:start + CHUNK]
        marks = ",".join("?" * len(part))
        for row in conn.execute(f"SELECT COALESCE(ward, '{NO_WARD}'), {WARD_SUMS} FROM form_summary"
                                f" WHERE form_id IN ({marks}) GROUP BY 1", part).fetchall():
            conn.execute(_ADD_WARD, [row[0], *(sign * (v or 0) for v in row[1:])])
        for row in conn.execute(f"SELECT COALESCE(s.ward, '{NO_WARD}'), s.template, r.reason, SUM(r.waiting)"
                                f" FROM form_reasons r JOIN form_summary s ON s.form_id = r.form_id"
                                f" WHERE r.form_id IN ({marks}) GROUP BY 1, 2, 3", part).fetchall():
            conn.execute(_ADD_REASON, [row[0], row[1], row[2], sign * row[3]])


_TEMPLATES: dict[tuple, dict] = {}


def _templates(kit: Kit, names: frozenset[str] | None = None) -> dict:
    """The kit's templates, parsed once per state of its template folder (parsing the YAML costs
    more than recomputing a form; the station opens a new Kit per request). names: those of
    these names are enough (a scan's few forms: the other templates are not parsed)."""
    folder = kit.templates_dir
    stamp: tuple = (str(folder),)
    if folder.is_dir():
        stamp += tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")
                              if p.is_file()))
    found = _TEMPLATES.get((stamp, None)) if names is not None else None
    found = found if found is not None else _TEMPLATES.get((stamp, names))
    if found is None:
        from ..generate import kit_templates
        found = kit_templates(kit, names)
        if len(_TEMPLATES) > 8:
            _TEMPLATES.clear()
        _TEMPLATES[(stamp, names)] = found
    return found


def _template_names(conn, form_ids: list[str]) -> frozenset[str] | None:
    """The templates of these forms (None, all of them, for many forms)."""
    if len(form_ids) > 500:
        return None
    marks = ",".join("?" * len(form_ids))
    return frozenset(r[0] for r in conn.execute(f"SELECT DISTINCT template FROM forms WHERE form_id IN ({marks})",
                                                form_ids))


def reviews_of_captures(conn, capture_ids: Iterable[int]) -> dict:
    """The review that counts per reading, for the readings of these captures only (by index)."""
    from ..store.readings import current_reviews
    capture_ids = list(capture_ids)
    return current_reviews(conn, capture_ids=capture_ids) if capture_ids else {}


def _marks_of_forms(conn, form_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for fid in form_ids:
        for item_id, status, actor, at, note in conn.execute(
                "SELECT item_id, status, actor, at, note FROM worklist_marks WHERE item_id >= ? AND item_id < ?"
                " ORDER BY id", [f"{fid}:", f"{fid};"]):
            latest[item_id] = {"status": status, "actor": actor, "at": at, "note": note}
    return latest


def _quarantined_forms(kit: Kit) -> set[str]:
    """Forms a quarantined page nobody identified yet names (by its verified code), and forms the
    summary says have such pages (they may have been identified since)."""
    from ..payload import verify as verify_payload
    conn = kit.db.conn
    sheets = set()
    for (payload,) in conn.execute(
            "SELECT q.payload FROM quarantine q WHERE q.payload IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM quarantine_assignments a WHERE a.quarantine_id = q.quarantine_id)"):
        try:
            sheets.add(verify_payload(payload, kit.secret, kit.kit_id).sheet_id)
        except FallbackkitError:
            continue
    forms = {r[0] for r in conn.execute("SELECT form_id FROM form_summary WHERE in_quarantine > 0")}
    for sid in sheets:
        row = conn.execute("SELECT form_id FROM sheets WHERE sheet_id = ?", [sid]).fetchone()
        if row:
            forms.add(row[0])
    return forms


def pending_forms(kit: Kit) -> int:
    """How many forms wait to be recomputed (a count of marks; ALL counts as every form)."""
    conn = kit.db.conn
    marks = [r[0] for r in conn.execute("SELECT form_id FROM summary_dirty")]
    if ALL in marks:
        return conn.execute("SELECT COUNT(*) FROM forms").fetchone()[0]
    return len(marks)


def refresh(kit: Kit, everything: bool = False) -> int:
    """Recompute the summaries of the forms marked since the last refresh (all forms with
    everything=True). One write transaction: a write made meanwhile waits, and its mark is not
    lost. Returns the number of forms recomputed.

    Many forms (after a merge, a setting, a migration), in a transaction of its own: the rows are
    computed by two worker processes reading the committed store (reconcile/parallel.py; nothing
    they read changes while this holds the write lock) and written here, batch after batch in the
    same order as one process writes them."""
    from . import parallel
    conn = kit.db.conn
    if not everything and conn.execute("SELECT 1 FROM summary_dirty LIMIT 1").fetchone() is None:
        return 0
    own_transaction = not conn.in_transaction  # else a caller's uncommitted writes: workers would not see them
    with atomic(conn):
        marks = {r[0] for r in conn.execute("SELECT form_id FROM summary_dirty")}
        whole = everything or ALL in marks
        if whole:
            form_ids = [r[0] for r in conn.execute("SELECT form_id FROM forms ORDER BY rowid")]
            for table in ("form_summary", "form_reports", "form_reasons", "worklist_items", "worklist_patients",
                          "ward_totals", "reason_totals"):
                conn.execute(f"DELETE FROM {table}")
            ctx = build_context(kit, _templates(kit), marks=_marks(kit))
        else:
            wanted = {m for m in marks if m != QUARANTINE}
            if QUARANTINE in marks:
                wanted |= _quarantined_forms(kit)
            form_ids = sorted(wanted)
            ctx = build_context(kit, _templates(kit, _template_names(conn, form_ids)), marks={},
                                form_ids=form_ids)  # their patients and templates only
        batches = [form_ids[start:start + FORMS_PER_BATCH] for start in range(0, len(form_ids), FORMS_PER_BATCH)]
        workers = parallel.workers_for(len(form_ids)) if own_transaction else 1
        _SHARED["ctx"], _SHARED["whole"] = ctx, whole  # a forked worker finds them here
        try:
            for part, rows in zip(batches, parallel.in_order(kit, batches, _batch_rows, _batch_setup, workers)):
                _write(kit, part, rows, replace=not whole)
        finally:
            _SHARED.clear()
        if whole:
            conn.execute("INSERT INTO worklist_patients (patient, ward, status, items, first_key)"
                         " SELECT patient, ward, status, COUNT(*), MIN(sort_key) FROM worklist_items"
                         " GROUP BY patient, ward, status")
            conn.execute(f"INSERT INTO ward_totals (ward, {', '.join(WARD_COLS)})"
                         f" SELECT COALESCE(ward, '{NO_WARD}'), {WARD_SUMS} FROM form_summary GROUP BY 1")
            conn.execute(f"INSERT INTO reason_totals (ward, template, reason, waiting)"
                         f" SELECT COALESCE(s.ward, '{NO_WARD}'), s.template, r.reason, SUM(r.waiting)"
                         f" FROM form_reasons r JOIN form_summary s ON s.form_id = r.form_id GROUP BY 1, 2, 3")
        conn.execute("DELETE FROM summary_dirty")
    return len(form_ids)


_json = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(x, ensure_ascii=False), one encoder for all rows
_SHARED: dict[str, Any] = {}  # the build context of the refresh running in this process


def _batch_setup(kit: Kit, in_worker: bool) -> tuple[BuildContext, bool]:
    return _SHARED["ctx"], _SHARED["whole"]


def _batch_rows(kit: Kit, shared: tuple[BuildContext, bool], form_ids: list[str]) -> tuple[list, ...]:
    ctx, whole = shared
    if not whole:
        ctx.marks = _marks_of_forms(kit.db.conn, form_ids)
    return _rows(kit, form_ids, ctx)


@contextmanager
def refreshing(kit: Kit) -> Iterator[Any]:
    """A write and the summaries of the forms it marked, as one transaction: what the block writes
    and its forms' recomputed summaries commit together, so no reader ever finds the block's marks
    (a reader that did would recompute them itself, waiting for the write lock). For writes that
    touch a few forms (a decision, an undo, a settled conflict); the write lock is held for the
    block and the recompute of those forms only."""
    with atomic(kit.db.conn) as conn:
        yield conn
        refresh(kit)


def _rows(kit: Kit, form_ids: list[str], ctx: BuildContext) -> tuple[list, list, list, list]:
    """These forms' summary rows: (form_summary, form_reports, form_reasons, worklist_items)."""
    conn = kit.db.conn
    reg = load_registry(kit, form_ids)
    run = _Pass(kit, reg, keep_chosen=True, reviews=reviews_of_captures(conn, reg.capture_sheet),
                templates=ctx.templates, checks=True)
    summaries, reports, reasons, items = [], [], [], []
    for fid in reg.forms:
        entry = form_entry(reg, run, ctx.links, fid)
        work = form_work_items(reg, run, fid, ctx)
        waiting: dict[str, int] = {}
        for sid in reg.form_sheets.get(fid, []):
            values = run.chosen_values.get(sid, {})
            for name in run.pending.get(sid, []):
                key = values[name].reason or "unsure"
                waiting[key] = waiting.get(key, 0) + 1
        status = [i.status for i in work]
        summaries.append((
            fid, entry["ward"], entry["template"], entry["real_mrn"] or entry["downtime_mrn"], int(entry["pages"] or 0), len(entry["pages_returned"]),
            len(entry["pages_missing"]), len(entry["pages_in_quarantine"]), entry["state"],
            sum(len(d["others"]) for d in entry["duplicates"]),
            sum(1 for c in entry["conflicts"] if not c["resolved"]), entry["to_review"], len(entry["flags"]),
            status.count("pending"), status.count("entered"), status.count("not-needed")))
        reports.append((fid, _json(entry)))
        reasons += [(fid, reason, n) for reason, n in waiting.items()]
        items += [(i.item_id, fid, i.ward, i.patient_mrn, i.status, back_load_text(i),
                   _json(i.as_dict(copy=False))) for i in work]
    return summaries, reports, reasons, items


def _write(kit: Kit, form_ids: list[str], rows: tuple[list, list, list, list], replace: bool) -> None:
    """Store these forms' rows (replace: in place of their earlier ones, with the sums kept right)."""
    conn = kit.db.conn
    summaries, reports, reasons, items = rows
    groups: dict[tuple, int] = {}  # (patient, ward, status) -> change in its number of items
    if replace:
        _add_totals(conn, form_ids, -1)
        for start in range(0, len(form_ids), CHUNK):
            part = form_ids[start:start + CHUNK]
            marks = ",".join("?" * len(part))
            for patient, ward, status, n in conn.execute(
                    f"SELECT patient, ward, status, COUNT(*) FROM worklist_items WHERE form_id IN ({marks})"
                    " GROUP BY 1, 2, 3", part).fetchall():
                groups[(patient, ward, status)] = groups.get((patient, ward, status), 0) - n
            for table in ("form_summary", "form_reports", "form_reasons", "worklist_items"):
                conn.execute(f"DELETE FROM {table} WHERE form_id IN ({marks})", part)
    conn.executemany(f"INSERT INTO form_summary VALUES ({','.join('?' * 16)})", summaries)
    conn.executemany("INSERT INTO form_reports (form_id, report) VALUES (?, ?)", reports)
    conn.executemany("INSERT INTO form_reasons (form_id, reason, waiting) VALUES (?, ?, ?)", reasons)
    conn.executemany("INSERT INTO worklist_items (item_id, form_id, ward, patient, status, sort_key, item)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)", items)
    if not replace:
        return
    _add_totals(conn, form_ids, 1)
    for row in items:
        key = (row[3], row[2], row[4])
        groups[key] = groups.get(key, 0) + 1
    for (patient, ward, status), change in groups.items():  # each group's count, and its first item by index
        match = [patient, ward, status]
        first = conn.execute("SELECT MIN(sort_key) FROM worklist_items WHERE patient IS ? AND ward IS ? AND status = ?",
                             match).fetchone()[0]
        if first is None:
            conn.execute("DELETE FROM worklist_patients WHERE patient IS ? AND ward IS ? AND status = ?", match)
        elif not conn.execute("UPDATE worklist_patients SET items = items + ?, first_key = ? WHERE patient IS ?"
                              " AND ward IS ? AND status = ?", [change, first, *match]).rowcount:
            conn.execute("INSERT INTO worklist_patients (patient, ward, status, items, first_key) VALUES (?, ?, ?, ?, ?)",
                         [*match, change, first])


# --- what views read ---------------------------------------------------------------------------

def totals(kit: Kit) -> dict[str, int]:
    """The report's totals (the first page of `reconcile`), from the kept summaries."""
    refresh(kit)
    conn = kit.db.conn
    row = conn.execute(
        "SELECT COALESCE(SUM(returned), 0), COALESCE(SUM(never_returned), 0), COALESCE(SUM(complete), 0),"
        " COALESCE(SUM(forms - complete), 0), COALESCE(SUM(duplicates), 0), COALESCE(SUM(conflicts), 0),"
        " COALESCE(SUM(to_review), 0), COALESCE(SUM(flags), 0) FROM ward_totals").fetchone()
    out = dict.fromkeys(TOTAL_KEYS, 0)
    (out["sheets_returned"], out["sheets_never_returned"], out["forms_complete"], out["forms_incomplete"],
     out["duplicate_captures"], out["conflicts"], out["readings_to_review"], out["consistency_flags"]) = row
    out["sheets_printed"] = conn.execute("SELECT COUNT(*) FROM sheets").fetchone()[0]
    out["quarantined_pages"] = conn.execute(
        "SELECT COUNT(*) FROM quarantine q WHERE NOT EXISTS"
        " (SELECT 1 FROM quarantine_assignments a WHERE a.quarantine_id = q.quarantine_id)").fetchone()[0]
    return out


def iter_form_entries(kit: Kit, where: str = "", params: Iterable[Any] = (), limit: int | None = None,
                      offset: int = 0) -> Iterator[dict[str, Any]]:
    """Forms' report entries in the report's order (forms as printed), streamed."""
    refresh(kit)
    sql = ("SELECT p.report FROM form_summary s JOIN forms f ON f.form_id = s.form_id"
           " JOIN form_reports p ON p.form_id = s.form_id" + (f" WHERE {where}" if where else "") + " ORDER BY f.rowid")
    params = list(params)
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params += [limit, offset]
    for (text,) in kit.db.conn.execute(sql, params):
        yield json.loads(text)


def kept_report(kit: Kit) -> dict[str, Any]:
    """The reconciliation report from the kept summaries (equal to the full recompute)."""
    return {"totals": totals(kit), "forms": list(iter_form_entries(kit))}


def ward_rows(kit: Kit) -> dict[str, dict[str, int]]:
    """Per ward: pages printed, returned, missing; readings to review; items to re-enter, entered."""
    refresh(kit)
    return {ward: {"printed": printed, "returned": returned, "missing": missing, "to_review": to_review,
                   "to_reenter": pending, "entered": entered}
            for ward, printed, returned, missing, to_review, pending, entered in kit.db.conn.execute(
                "SELECT ward, pages, returned, missing, to_review, items_pending, items_entered FROM ward_totals"
                " WHERE forms > 0 ORDER BY ward")}


def _form_filter(ward: str | None, template: str | None) -> tuple[str, list[Any]]:
    where, params = [], []
    if ward:
        where.append("s.ward = ?")
        params.append(ward)
    if template:
        where.append("s.template = ?")
        params.append(template)
    return " AND ".join(where), params


def queue_counts(kit: Kit, ward: str | None = None, template: str | None = None) -> dict[str, int]:
    """Readings waiting for a person per reason (the queue's chips), from the kept summaries."""
    refresh(kit)
    where, params = [], []
    if ward:
        where.append("ward = ?")
        params.append(ward)
    if template:
        where.append("template = ?")
        params.append(template)
    sql = ("SELECT reason, SUM(waiting) FROM reason_totals" + (f" WHERE {' AND '.join(where)}" if where else "")
           + " GROUP BY reason HAVING SUM(waiting) > 0 ORDER BY 2 DESC, 1")
    return {r[0]: r[1] for r in kit.db.conn.execute(sql, params)}


def conflict_forms(kit: Kit, ward: str | None = None, template: str | None = None, limit: int = 10,
                   offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """(forms with open conflicts, the report entries of one page of them, in the report's order).

    The first pages without a filter walk the forms in print order (open conflicts are found among
    the first forms printed: a few hundred steps). Deeper pages and filtered ones read the forms
    with open conflicts from their partial index, with their print order, sort them here and read
    the page's reports only: walking in print order to page 300 took ~90 ms at 100,000 captures,
    and a ward filter walked every form of the ward (220-400 ms)."""
    refresh(kit)
    where, params = _form_filter(ward, template)
    conn = kit.db.conn
    if not where and offset < 100:
        n = conn.execute("SELECT COUNT(*) FROM form_summary s WHERE s.conflicts > 0").fetchone()[0]
        return n, list(iter_form_entries(kit, "s.conflicts > 0", [], limit, offset)) if limit else []
    found = sorted(conn.execute(
        "SELECT f.rowid, s.form_id FROM form_summary s INDEXED BY form_summary_open_conflicts"
        " CROSS JOIN forms f ON f.form_id = s.form_id WHERE s.conflicts > 0" + (f" AND {where}" if where else ""),
        params).fetchall())
    page = [fid for _, fid in found[offset:offset + limit]] if limit else []
    reports = dict(conn.execute(f"SELECT form_id, report FROM form_reports WHERE form_id IN ({','.join('?' * len(page))})",
                                page).fetchall()) if page else {}
    return len(found), [json.loads(reports[fid]) for fid in page if fid in reports]


def _item(text: str) -> WorkItem:
    return WorkItem(**json.loads(text))


def _item_filter(ward: str | None, status: str | None) -> tuple[str, list[Any]]:
    where, params = [], []
    if status:
        where.append("status = ?")
        params.append(status)
    if ward:
        where.append("ward = ?")
        params.append(ward)
    return (" WHERE " + " AND ".join(where)) if where else "", params


def iter_items(kit: Kit, ward: str | None = None, status: str | None = None) -> Iterator[WorkItem]:
    """Every kept re-entry item in back-load order (as `worklist` builds them), streamed."""
    from ..store.exports import exported_at
    refresh(kit)
    exported = exported_at(kit.db.conn)  # an export changes no form: read now, never kept
    where, params = _item_filter(ward, status)
    for (text,) in kit.db.conn.execute(f"SELECT item FROM worklist_items{where} ORDER BY sort_key", params):
        item = _item(text)
        item.exported_at = exported.get(item.item_id)
        yield item


def iter_item_dicts(kit: Kit, ward: str | None = None, status: str | None = None) -> Iterator[dict[str, Any]]:
    """iter_items as each item's as_dict(), without building a WorkItem per item (the stored JSON
    is that dict; only exported_at is read now)."""
    from ..store.exports import exported_at
    refresh(kit)
    exported = exported_at(kit.db.conn)
    where, params = _item_filter(ward, status)
    for (text,) in kit.db.conn.execute(f"SELECT item FROM worklist_items{where} ORDER BY sort_key", params):
        item = json.loads(text)
        item["exported_at"] = exported.get(item["item_id"])
        yield item


def item_counts(kit: Kit, ward: str | None = None, status: str | None = None) -> tuple[int, int]:
    """(items, patients) matching the filters."""
    refresh(kit)
    where, params = _item_filter(ward, status)
    row = kit.db.conn.execute(f"SELECT COALESCE(SUM(items), 0), COUNT(DISTINCT COALESCE(patient, ''))"
                              f" FROM worklist_patients{where}", params).fetchone()
    return row[0], row[1]


def worklist_patients(kit: Kit, ward: str | None = None, status: str | None = None, per_page: int = 20,
                      page: int = 1, items_per_patient: int = 100, patient: Any = ...) -> list[dict[str, Any]]:
    """One page of patients in the worklist's order (each by its first item in back-load order),
    each with its first items_per_patient items and counts (n_items, pending); with patient
    (None: items with no patient), that patient alone."""
    refresh(kit)
    where, params = _item_filter(ward, status)
    conn = kit.db.conn
    one, one_params = "", []
    if patient is not ...:
        one, one_params = f"{' AND' if where else ' WHERE'} patient IS ?", [patient]
    out = []
    for patient, _key, n in conn.execute(
            f"SELECT patient, MIN(first_key), SUM(items) FROM worklist_patients{where}{one}"
            " GROUP BY patient ORDER BY 2 LIMIT ? OFFSET ?",
            [*params, *one_params, per_page, (page - 1) * per_page]):
        sql = f"SELECT item FROM worklist_items{where}{' AND' if where else ' WHERE'} patient IS ?" \
              " ORDER BY sort_key LIMIT ?"
        items = [_item(t) for (t,) in conn.execute(sql, [*params, patient, items_per_patient])]
        if status:
            pending = n if status == "pending" else 0
        else:
            pend_where, pend_params = _item_filter(ward, "pending")
            pending = conn.execute(f"SELECT COALESCE(SUM(items), 0) FROM worklist_patients{pend_where}"
                                   " AND patient IS ?", [*pend_params, patient]).fetchone()[0]
        out.append({"mrn": patient, "items": items, "n_items": n, "pending": pending})
    return out


def unlinked_identities(kit: Kit) -> int:
    """Downtime MRNs in use that no current link ties to a real MRN."""
    return kit.db.conn.execute(
        "SELECT COUNT(*) FROM downtime_ids d WHERE d.kind = 'mrn' AND NOT EXISTS (SELECT 1 FROM identity_links l"
        " WHERE l.downtime_mrn = d.value AND l.revokes IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM identity_links r WHERE r.revokes = l.id))").fetchone()[0]


def names_on_paper(kit: Kit, downtime_mrns: Iterable[str]) -> dict[str, str]:
    """Downtime MRN -> the name people transcribed on its forms (only those MRNs' forms are read)."""
    from .identity import transcribed_identity
    wanted = sorted({m for m in downtime_mrns if m})
    if not wanted:
        return {}
    conn = kit.db.conn
    forms_of: dict[str, list[str]] = {}
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start:start + CHUNK]
        marks = ",".join("?" * len(part))
        for fid, dt in conn.execute(f"SELECT form_id, downtime_mrn FROM forms WHERE downtime_mrn IN ({marks})"
                                    f" UNION SELECT form_id, value FROM downtime_ids WHERE value IN ({marks})",
                                    part + part):
            forms_of.setdefault(dt, []).append(fid)
    idents = transcribed_identity(kit, sorted({f for fs in forms_of.values() for f in fs}))
    out = {}
    for dt, fids in forms_of.items():
        name = next((idents[f]["name"] for f in sorted(fids) if idents.get(f, {}).get("name")), None)
        if name:
            out[dt] = name
    return out


# --- a merge: the other station's kept summaries, for the forms this station holds nothing of ----

SUMMARY_VERSION = "1"  # what a kept summary holds; change it with a migration that sets it and marks all forms
_PER_FORM = ("form_summary", "form_reports", "form_reasons", "worklist_items")
_FORM_COLUMNS = ("template", "version", "pages", "patient_mrn", "downtime_mrn", "encounter", "accession", "ward",
                 "bed", "printed_at", "context", "snapshot_id")  # what load_registry reads of a form


def rebuild_totals(conn) -> None:
    """The per-patient, per-ward and per-reason sums made again from the per-form rows."""
    for table in ("worklist_patients", "ward_totals", "reason_totals"):
        conn.execute(f"DELETE FROM {table}")
    conn.execute("INSERT INTO worklist_patients (patient, ward, status, items, first_key)"
                 " SELECT patient, ward, status, COUNT(*), MIN(sort_key) FROM worklist_items"
                 " GROUP BY patient, ward, status")
    conn.execute(f"INSERT INTO ward_totals (ward, {', '.join(WARD_COLS)})"
                 f" SELECT COALESCE(ward, '{NO_WARD}'), {WARD_SUMS} FROM form_summary GROUP BY 1")
    conn.execute("INSERT INTO reason_totals (ward, template, reason, waiting)"
                 f" SELECT COALESCE(s.ward, '{NO_WARD}'), s.template, r.reason, SUM(r.waiting)"
                 " FROM form_reasons r JOIN form_summary s ON s.form_id = r.form_id GROUP BY 1, 2, 3")


def _folder_digest(folder) -> list[tuple[str, str]]:
    import hashlib
    if not folder.is_dir():
        return []
    return sorted((p.relative_to(folder).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
                  for p in folder.rglob("*") if p.is_file())


def _latest_marks(conn) -> dict[str, tuple]:
    latest: dict[str, tuple] = {}
    for item_id, *mark in conn.execute("SELECT item_id, status, actor, at, note FROM worklist_marks ORDER BY id"):
        latest[item_id] = tuple(mark)
    return latest


def _same_basis(kit: Kit, schema: str, other, other_root) -> bool:
    """Whether the other store's kept summaries were made as this station makes its own: current
    (nothing marked), the same summary version and migrations, the same kit settings (every
    kit_meta key that marks all forms when it changes), the time zone set in the kit (its default
    is each computer's own), the same template files."""
    from ..store.migrations.m0072_summary_version import NOT_SETTINGS
    from ..store.settings import SETTINGS
    conn = kit.db.conn
    tables = {r[0] for r in conn.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'")}
    if not {*_PER_FORM, "summary_dirty", "_migrations", "kit_meta", "patients"} <= tables:
        return False
    if conn.execute(f"SELECT 1 FROM {schema}.summary_dirty LIMIT 1").fetchone() is not None:
        return False
    if {r[0] for r in conn.execute("SELECT name FROM main._migrations")} != \
            {r[0] for r in conn.execute(f"SELECT name FROM {schema}._migrations")}:
        return False
    skip = ", ".join(f"'{k}'" for k in NOT_SETTINGS if k != "summary_version")
    ours, theirs = (dict(conn.execute(f"SELECT key, value FROM {s}.kit_meta WHERE key NOT IN ({skip})").fetchall())
                    for s in ("main", schema))
    if ours != theirs or ours.get("summary_version") != SUMMARY_VERSION or SETTINGS["tz"].key not in ours:
        return False
    for table in _PER_FORM:
        if _columns_of(conn, "main", table) != _columns_of(conn, schema, table):
            return False
    return _folder_digest(kit.templates_dir) == _folder_digest(other_root / "form_templates")


def _columns_of(conn, schema: str, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA {schema}.table_info({table})")]


def _copy_reports_with_captures(conn, schema: str, capture_map: dict[int, int]) -> None:
    """The copied forms' reports that name captures and readings (duplicates, conflicts), with
    this station's ids: a capture by the merge's map, a reading by its capture and field. The
    captures of such a form all came with the merge, numbered here in the other's order, so the
    order of every list is kept."""
    rows = conn.execute(f"SELECT p.form_id, p.report FROM {schema}.form_reports p JOIN {schema}.form_summary s"
                        " ON s.form_id = p.form_id WHERE s.duplicates > 0 AND p.form_id IN"
                        " (SELECT form_id FROM temp.summary_copy)").fetchall()
    out = []
    for fid, text in rows:
        entry = json.loads(text)
        for dup in entry["duplicates"]:
            dup["kept"] = capture_map[dup["kept"]]
            dup["others"] = [capture_map[c] for c in dup["others"]]
        for conflict in entry["conflicts"]:
            for cap in conflict["captures"]:
                cap["capture_id"] = capture_map[cap["capture_id"]]
                cap["reading_id"] = conn.execute("SELECT reading_id FROM main.readings WHERE capture_id = ? AND field = ?",
                                                 [cap["capture_id"], conflict["field"]]).fetchone()[0]
        out.append((fid, _json(entry)))
    conn.executemany("INSERT INTO main.form_reports (form_id, report) VALUES (?, ?)", out)


def _none_copied(conn) -> int:
    conn.execute("DROP TABLE temp.summary_copy")
    return 0


def copy_kept(kit: Kit, schema: str, other, other_root, held: set[str], capture_map: dict[int, int]) -> int:
    """After a merge, in its transaction: the kept summaries of the forms this station held nothing
    of (`held`: forms it had a capture, a quarantined page or an identification of before the
    merge), copied from the other store attached as `schema` (`other`: a connection to it) in place
    of recomputing them. Only forms marked for recomputing, and only where every input of a form's
    summary is the same in both stores after the merge: its form and sheet rows, its census name,
    its identity link, the latest mark of each of its items, its captures and decisions (counted,
    the other station's being here). A report that names captures (a page scanned twice) gets this
    station's ids (`capture_map`: the other's capture id -> this one's; a reading by its capture and
    field). Returns the number of forms copied; the rest stay marked.
    The other store's summaries equal its own full recompute (tests/test_summary.py), so what is
    copied equals this station's full recompute (tests/test_summary.py, merges)."""
    conn = kit.db.conn
    if not _same_basis(kit, schema, other, other_root):
        return 0
    marks = {r[0] for r in conn.execute("SELECT form_id FROM summary_dirty")}
    whole = ALL in marks
    if not whole and not (marks - {QUARANTINE}):
        return 0
    same = " AND ".join(f"f.{c} IS r.{c}" for c in _FORM_COLUMNS)
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS summary_copy (form_id TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM temp.summary_copy")
    conn.execute(f"INSERT INTO temp.summary_copy SELECT s.form_id FROM {schema}.form_summary s"
                 f" JOIN main.forms f ON f.form_id = s.form_id JOIN {schema}.forms r ON r.form_id = s.form_id"
                 f" WHERE {same}")
    drop: set[str] = set(held)
    if not whole:
        drop |= {r[0] for r in conn.execute("SELECT form_id FROM temp.summary_copy")} - marks
    # pages: the same sheets, pages and layouts
    drop |= {r[0] for r in conn.execute(
        f"SELECT l.form_id FROM main.sheets l LEFT JOIN {schema}.sheets r ON r.sheet_id = l.sheet_id"
        " WHERE r.sheet_id IS NULL OR r.form_id IS NOT l.form_id OR r.page IS NOT l.page"
        f" OR r.layout_hash IS NOT l.layout_hash UNION SELECT r.form_id FROM {schema}.sheets r"
        " LEFT JOIN main.sheets l ON l.sheet_id = r.sheet_id WHERE l.sheet_id IS NULL")}
    # captures and decisions: as many of each page here as there (this station's are a superset
    # after the merge; one more here is a scan or a decision made meanwhile or before)
    per_sheet = ("SELECT sheet_id, COUNT(*) FROM {s}.captures WHERE sheet_id IS NOT NULL GROUP BY sheet_id",
                 "SELECT c.sheet_id, COUNT(*) FROM {s}.reviews v CROSS JOIN {s}.readings d ON d.reading_id = v.reading_id"
                 " CROSS JOIN {s}.captures c ON c.capture_id = d.capture_id GROUP BY c.sheet_id")
    changed: set[str] = set()
    for sql in per_sheet:
        here, there = (dict(conn.execute(sql.format(s=s)).fetchall()) for s in ("main", schema))
        changed |= {sid for sid in here.keys() | there.keys() if here.get(sid) != there.get(sid)}
    if changed:
        form_of = dict(conn.execute("SELECT sheet_id, form_id FROM main.sheets"))
        drop |= {form_of.get(sid) for sid in changed} - {None}
        changed -= form_of.keys()
        if changed:  # a page of no sheet of this kit's: nothing is copied
            return _none_copied(conn)
    # census names and identity links
    name = ("(SELECT p.last_name || '\x1f' || p.first_name FROM {s}.patients p WHERE p.snapshot_id = f.snapshot_id"
            " AND p.mrn = f.patient_mrn)")
    drop |= {r[0] for r in conn.execute(
        f"SELECT f.form_id FROM main.forms f WHERE f.patient_mrn IS NOT NULL"
        f" AND {name.format(s='main')} IS NOT {name.format(s=schema)}")}
    from ..store.decisions import current_links
    ours, theirs = current_links(conn), current_links(other)
    moved = {dt for dt in ours.keys() | theirs.keys()
             if (ours.get(dt) or {}).get("real_mrn") != (theirs.get(dt) or {}).get("real_mrn")}
    if moved:
        drop |= {fid for fid, dt in conn.execute("SELECT form_id, downtime_mrn FROM main.forms"
                                                 " WHERE downtime_mrn IS NOT NULL") if dt in moved}
    # worklist marks: the latest of each item
    ours_m, theirs_m = _latest_marks(conn), _latest_marks(other)
    drop |= {item.split(":", 1)[0] for item in ours_m.keys() | theirs_m.keys()
             if ":" in item and ours_m.get(item) != theirs_m.get(item)}
    conn.executemany("DELETE FROM temp.summary_copy WHERE form_id = ?", [(f,) for f in drop])
    copied = conn.execute("SELECT COUNT(*) FROM temp.summary_copy").fetchone()[0]
    if copied:
        picked = "form_id IN (SELECT form_id FROM temp.summary_copy)"
        if whole:  # every other form is recomputed: marked one by one instead of all
            for table in _PER_FORM:
                conn.execute(f"DELETE FROM {table}")
            conn.execute(f"INSERT OR IGNORE INTO summary_dirty (form_id) SELECT form_id FROM forms WHERE NOT {picked}")
            conn.execute("DELETE FROM summary_dirty WHERE form_id = ?", [ALL])
        else:
            for table in _PER_FORM:
                conn.execute(f"DELETE FROM {table} WHERE {picked}")
        conn.execute(f"DELETE FROM summary_dirty WHERE {picked}")
        for table in _PER_FORM:
            cols = ", ".join(_columns_of(conn, "main", table))
            only = f" AND form_id NOT IN (SELECT form_id FROM {schema}.form_summary WHERE duplicates > 0)" \
                if table == "form_reports" else ""
            conn.execute(f"INSERT INTO main.{table} ({cols}) SELECT {cols} FROM {schema}.{table} WHERE {picked}{only}")
        _copy_reports_with_captures(conn, schema, capture_map)
        rebuild_totals(conn)
    conn.execute("DROP TABLE temp.summary_copy")
    return copied
