"""Conflicts: captures of the same sheet that disagree, settled per field or per sheet."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, jsonify, render_template, request, url_for

from ... import ids
from ... import reconcile as rc
from ...reconcile import summary
from ...errors import BadInput
from .. import labels as lb
from .. import queue as q
from ..i18n import t
from ..web import back, filters, flash, fmt, id_arg, json_id, kit_path, option_text, pager_pages

bp = Blueprint("conflicts", __name__)


@bp.get("/conflicts")
def conflicts():
    f = filters()
    per_page = current_app.config["CONFLICT_FORMS_PER_PAGE"]
    page = id_arg(request.args, "page") or 1
    n_forms, _ = summary.conflict_forms(g.kit, f.get("ward"), f.get("template"), limit=0)
    pages = max(1, -(-n_forms // per_page))
    page = min(page, pages)
    _, forms = summary.conflict_forms(g.kit, f.get("ward"), f.get("template"), limit=per_page,
                                      offset=(page - 1) * per_page)
    items = []
    options_of: dict[tuple, Any] = {}
    for form in forms:  # one page of the forms with open conflicts, in the report's order
        for c in form.get("conflicts", []):
            if c.get("resolved"):
                continue
            caps = [{**cap, "value_json": json.dumps(cap.get("value"), ensure_ascii=False),
                     "crop": bool(cap.get("reading_id"))} for cap in c.get("captures", [])]
            # a mark field is corrected by picking one of its options, never by free text
            options = None
            first = next((cap["reading_id"] for cap in caps if cap.get("reading_id")), None)
            if first is not None:
                key = (form.get("template"), form.get("version"), c["field"])  # the same options on every sheet
                if key not in options_of:
                    options_of[key] = q.reading_options(g.kit.db, first)
                table = lb.labels(kit_path(), form.get("template"), form.get("version"), g.lang)
                c["label"] = lb.field_label(table, c["field"])
                if options_of[key] is not None:
                    names = lb.option_labels(table, c["field"])
                    options = [{"json": json.dumps(o, ensure_ascii=False),
                                "text": option_text(o, names.get(o)) or fmt(o)} for o in options_of[key]]
            items.append({**c, "captures": caps, "form": form, "options": options})
    names = rc.census_names(g.kit)
    sheets: dict[str, dict[str, Any]] = {}   # one group per sheet: "take this scan for the whole sheet"
    for item in items:
        form = item["form"]
        group = sheets.setdefault(item["sheet_id"], {
            "sheet_id": item["sheet_id"], "form": form, "patient": names.get(form.get("real_mrn") or ""),
            "title": lb.form_title(lb.labels(kit_path(), form.get("template"), form.get("version"), g.lang),
                                   form.get("template")),
            "items": [], "captures": {}})
        group["items"].append(item)
        for cap in item["captures"]:
            group["captures"][cap["capture_id"]] = None
    for group in sheets.values():
        cids = sorted(group["captures"])
        when = q.capture_times(g.kit.db, cids)
        group["captures"] = [{"capture_id": cid, "n": n, "at": when.get(cid)} for n, cid in enumerate(cids, 1)]
    return render_template("conflicts.html", items=items, sheets=list(sheets.values()), filters=f,
                           choices=q.filter_choices(g.kit.db), page=page, pages=pages, n_forms=n_forms,
                           pager=pager_pages(page, pages), query=urlencode(f))


@bp.post("/api/conflicts/sheet")
def api_take_sheet():
    """Take one capture for every open conflict of its sheet (one transaction, each field audited)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("sheet_id"), str) or not json_id(body.get("capture_id")):
        raise BadInput("send {sheet_id: text, capture_id: id}")
    with summary.refreshing(g.kit):  # the resolutions and the form's summary: one transaction
        out = rc.resolve_sheet_from_capture(g.kit, body["sheet_id"], body["capture_id"], g.user.name)
    return jsonify({"ok": True, **out})


@bp.post("/conflicts/resolve")
def resolve():
    sheet_id, field = request.form.get("sheet_id", ""), request.form.get("field", "")
    chosen = id_arg(request.form, "capture_id")
    if request.form.get("typed", "").strip():
        value: Any = request.form["typed"].strip()
        chosen = None
    else:
        try:
            value = json.loads(request.form.get("value", "null"))
        except ValueError:
            raise BadInput("the value sent is not valid JSON") from None
    # the value is checked against the field's printed options by reconcile (a mark is never typed)
    with summary.refreshing(g.kit):
        rc.resolve_conflict(g.kit, sheet_id, field, value, g.user.name, chosen_capture_id=chosen)
    if request.headers.get("Accept") == "application/json":  # the conflicts screen, without a reload
        return jsonify({"ok": True, "sheet_id": ids.normalize(sheet_id), "field": field})
    flash("ok", t(g.lang, "conflict_resolved", field=field, sheet=sheet_id))
    return back(url_for("conflicts.conflicts"))
