"""The re-entry worklist: per patient, each item ticked off as entered in the hospital system."""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, jsonify, render_template, request, url_for

from ... import reconcile as rc
from ...reconcile import summary
from ...errors import FallbackkitError
from .. import labels as lb
from .. import queue as q
from ...scan.reasons import english
from ..i18n import reason_label, reason_text, t
from ..web import back, flash, fmt, id_arg, kit_path, option_text, pager_pages

bp = Blueprint("worklist", __name__)


@bp.get("/worklist")
def worklist():
    ward = request.args.get("ward") or None
    status = request.args.get("status", "pending")
    page = id_arg(request.args, "page") or 1
    one = request.args.get("patient")  # one patient's items, all of them
    wanted = None if status == "all" else status
    n_items, n_patients = summary.item_counts(g.kit, ward, wanted)
    per_page = current_app.config["WORKLIST_PATIENTS_PER_PAGE"]
    pages = max(1, -(-n_patients // per_page))
    page = min(page, pages)
    if one is not None:
        patients = summary.worklist_patients(g.kit, ward, wanted, per_page=1, items_per_patient=2000,
                                             patient=None if one == "—" else one)
        pages = page = 1
    else:
        patients = summary.worklist_patients(g.kit, ward, wanted, per_page=per_page, page=page,
                                             items_per_patient=current_app.config["WORKLIST_ITEMS_PER_PATIENT"])
    forms = q.form_templates(g.kit.db, {i.form_id for p in patients for i in p["items"]})
    names = rc.census_names(g.kit)
    paper_names = summary.names_on_paper(g.kit, {p["items"][0].downtime_mrn for p in patients if p["items"]})

    tables: dict[str, dict[str, Any]] = {}

    def table_of(item: Any) -> dict[str, Any]:
        table = tables.get(item.form_id)
        if table is None:
            template, version = forms.get(item.form_id, (None, None))
            table = tables[item.form_id] = lb.labels(kit_path(), template, version, g.lang)
        return table

    # a page holds hundreds of items of a few forms: each key's label, place on the form and
    # option labels are looked up once per form (template, version, language), not per item
    memo: dict[tuple[int, str], tuple[str, int, dict[Any, str]]] = {}

    def key_info(table: dict[str, Any], key: str) -> tuple[str, int, dict[Any, str]]:
        found = memo.get((id(table), key))
        if found is None:
            found = memo[(id(table), key)] = (
                lb.value_label(table, key), lb.form_position(table, key),
                lb.option_labels(table, key) or lb.option_labels(table, f"c1.{key}"))  # c1.: a grid row
        return found

    def shown(labels: dict[Any, str], value: Any) -> str:
        """A value as the clerk reads it: an option with its printed label ("male (M)")."""
        if labels and isinstance(value, str):
            return option_text(value, labels.get(value)) or value
        if labels and isinstance(value, list):
            return ", ".join(option_text(x, labels.get(x)) or str(x) for x in value) or "—"
        return fmt(value)

    for p in patients:
        p["name"] = names.get(p["mrn"]) or paper_names.get(p["items"][0].downtime_mrn or "") if p["items"] else None
        p["mrn"] = p["mrn"] or "—"
        # each item's values as shown (label, text), in the order they are printed on the form, and
        # the labels of its empty ones: computed here, a call from the template costs more than
        # the work it does
        p["shown"] = {}
        for it in p["items"]:
            table = table_of(it)
            values = sorted(((key_info(table, k), v if k not in PLACES else lb.place_words(str(v), g.lang) or v)
                             for k, v in it.values.items()), key=lambda kv: kv[0][1])
            p["shown"][it.item_id] = ([(info[0], shown(info[2], v)) for info, v in values if v not in (None, [], "")],
                                      [info[0] for info, v in values if v is None])
            p.setdefault("remarks", {})[it.item_id] = [remark_text(table, key_info, r) for r in it.remarks]
            p.setdefault("waits", {})[it.item_id] = [unresolved_text(table, r) for r in it.unresolved]
    return render_template("worklist.html", patients=patients, ward=ward or "", status=status,
                           choices=q.filter_choices(g.kit.db), mark_url=url_for("worklist.mark"),
                           page=page, pages=pages, n_patients=n_patients, n_items=n_items, pager=pager_pages(page, pages),
                           query=urlencode({k: v for k, v in (("ward", ward), ("status", status)) if v}))


def remark_text(table: dict[str, Any], key_info, remark: str) -> str:
    """A worklist remark ("c1.avpu: corrected on paper", as the CSV and FHIR exports carry it) as
    the clerk reads it: the field's printed label and the reason in the clerk's language."""
    name, _, text = remark.partition(": ")
    code = _REMARK_CODES.get(text)
    if not code:
        return remark
    return f"{key_info(table, name)[0]}: {reason_label(g.lang, code)}"


_REMARK_CODES = {english(c): c for c in ("corrected",)}  # the codes Form.remarks writes

# What an item still waits for, as reconcile/worklist.py words it (English, as the exports carry it):
# said here in the clerk's language with the field's printed label. A sentence none of these match
# (a later wording) is shown as it is.
_WAITS = [(re.compile(r"^(?P<field>\S+) waits for (?P<what>transcription|review)(?: \((?P<reason>.+)\))?$"), "waits"),
          (re.compile(r"^(?P<field>\S+): captures of sheet (?P<sheet>\S+) disagree$"), "disagree"),
          (re.compile(r"^page (?P<pages>[\d, ]+) of (?P<of>\d+) not returned$"), "not_returned"),
          (re.compile(r"^a time or initials are written but no status is marked — check the paper$"), "no_status")]


def unresolved_text(table: dict[str, Any], text: str) -> str:
    for pattern, code in _WAITS:
        m = pattern.match(text)
        if not m:
            continue
        params = m.groupdict()
        if "field" in params:
            params["field"] = lb.field_label(table, params["field"])
        if code == "waits":
            reason = params.pop("reason")
            code = f"waits_{params.pop('what')}"
            said = t(g.lang, "wl_" + code, **params)
            return f"{said} ({reason_text(g.lang, reason)})" if reason else said
        return t(g.lang, "wl_" + code, **params)
    return text
PLACES = ("slot", "row")  # item values that name a place on the sheet (m1.s2): said in words


@bp.post("/worklist/mark")
def mark():
    item_id, status = request.form.get("item_id", ""), request.form.get("status", "")
    rc.check_status(status)  # which statuses an item takes, and when "entered" is refused: the worklist's
    wants_json = request.headers.get("Accept") == "application/json"  # the worklist's keys, no reload
    try:
        rc.mark_item(g.kit, item_id, status, g.user.name, request.form.get("note") or None)
    except FallbackkitError as exc:
        if wants_json:
            return jsonify({"error": str(exc)}), 409
        flash("error", str(exc))
        return back(url_for("worklist.worklist"))
    message = t(g.lang, "marked", item=item_id, status=t(g.lang, "status_" + status))
    if wants_json:
        return jsonify({"ok": True, "item_id": item_id, "status": status, "message": message,
                        "done": f"{t(g.lang, 'status_' + status)} · {g.user.name}"})
    flash("ok", message)
    return back(url_for("worklist.worklist"))
