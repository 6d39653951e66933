"""The review queue and the reading screen: claim the next reading, decide it, see progress."""
from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, jsonify, redirect, render_template, request, url_for

from ... import reconcile as rc
from ...reconcile import summary
from ...scan.suggest import keeps_prefill
from ...errors import BadInput
from ...store.decisions import NOTE_MAX, SELF_UNDO_NOTE, AlreadyDecided, record_review
from .. import labels as lb
from .. import queue as q
from ..i18n import STRINGS, reason_text, t, value_problem_text
from ..initials import LEGEND_FIELD, initials_help
from ..typed import typed_problem
from ..web import filters, id_arg, json_id, kit_path, option_text, session_start

bp = Blueprint("queue", __name__)


@bp.get("/queue")
def queue_view():
    f = filters()
    items = q.list_queue(g.kit.db, f.get("ward"), f.get("template"), f.get("reason"), limit=200)
    names = rc.census_names(g.kit)
    for item in items:
        table = lb.labels(kit_path(), item["template"], item["version"], g.lang)
        item["label"] = lb.field_label(table, item["field"])
        item["name"] = names.get(item["mrn"] or "")
        item["title"] = lb.form_title(table, item["template"])
    counts = q.counts_by_code(summary.queue_counts(g.kit, f.get("ward"), f.get("template")))
    return render_template("queue.html", items=items, counts=counts, filters=f,
                           choices=q.filter_choices(g.kit.db), query=urlencode(f),
                           quarantined=q.open_quarantine_count(g.kit.db))


@bp.get("/review")
def work():
    f = filters()
    start = id_arg(request.args, "start")
    return render_template("review.html", filters=f, query=urlencode(f), start=start or "",
                           strings=STRINGS[g.lang]["js"])


@bp.get("/readings/<int:reading_id>")
def reading_page(reading_id: int):
    q.reading_detail(g.kit.db, reading_id)  # 404 when unknown
    return redirect(url_for("queue.work", start=reading_id))


def reading_json(reading_id: int) -> dict[str, Any]:
    """A reading as the review screen shows it: labels in the clerk's language, image urls, patient."""
    d = q.reading_detail(g.kit.db, reading_id, kit_path())
    d["crop_url"] = url_for("images.crop_image", reading_id=reading_id) if d["has_crop"] else None
    d["page_url"] = url_for("images.page_image", capture_id=d["capture_id"]) if d["has_page"] else None
    d["page_link"] = url_for("images.page_view", capture_id=d["capture_id"])
    d["reason_text"] = reason_text(g.lang, d.get("reason"))
    table = lb.labels(kit_path(), d["capture"]["template"], d["capture"]["version"], g.lang)
    d["field_label"] = lb.field_label(table, d["field"])
    d["form_title"] = lb.form_title(table, d["capture"]["template"])
    if d["options"] is not None:
        names = lb.option_labels(table, d["field"])
        d["option_labels"] = [option_text(o, names.get(o)) for o in d["options"]]
    elif d["type"] == "number":  # a code box (why held, why a PRN dose): what each code means
        codes = lb.option_labels(table, d["field"])
        d["code_list"] = [{"code": k, "text": v} for k, v in codes.items()] if codes else None
    d["returned"] = q.returned_by_undo(g.kit.db, reading_id) if d["review"] is None else None
    if d["returned"] and d["returned"].get("note") == SELF_UNDO_NOTE:  # the store's English words: said here
        d["returned"] = {**d["returned"], "note": t(g.lang, "self_undo_note")}
    d["patient_name"] = rc.patient_name(g.kit, d["capture"].get("patient_mrn"), d["capture"].get("downtime_mrn"))
    d["initials_help"] = initials_help(g.kit.db, d, g.user.name) if d["review"] is None else None
    d["legend_row"] = bool(LEGEND_FIELD.match(d["field"] or ""))  # handed before the slots: say why
    return d


@bp.get("/api/next")
def api_next():
    f = filters()
    after = id_arg(request.args, "after") or 0
    keep = id_arg(request.args, "keep")  # the reading still on the clerk's screen (a prefetch)
    clock, seconds = current_app.config["CLOCK"], current_app.config["CLAIM_SECONDS"]
    conn = g.kit.db.conn
    reading = None
    for _ in range(5):
        # the claim is its own short write transaction (two clerks asking at once never get the
        # same reading); the item is then read in one snapshot in which it is still waiting and
        # still this clerk's: what the clerk is shown is the state they decide on (a decision saved
        # after the claim shows here as "decided", and the next free reading is claimed instead)
        rid = q.claim_next(g.kit.db, g.user.name, after, keep, f.get("ward"), f.get("template"), f.get("reason"),
                           now=clock(), seconds=seconds)
        if rid is None:
            break
        with q.snapshot(conn):
            if q.held_by(conn, rid, g.user.name, clock()):
                reading = reading_json(rid)
        if reading is not None:
            break
        after = rid
    if reading is None:  # nothing free: say how many are on other clerks' screens (they may come back)
        return jsonify({"done": True, "claimed": q.claimed_by_others(g.kit.db, g.user.name, now=clock())})
    return jsonify({"done": False, "reading": reading})


@bp.post("/api/claims")
def api_claims():
    """Renew the claims on the readings on the clerk's screen; answers the ones still theirs."""
    body = request.get_json(silent=True)
    wanted = body.get("reading_ids") if isinstance(body, dict) else None
    if not isinstance(wanted, list) or len(wanted) > 10 or not all(json_id(i) for i in wanted):
        raise BadInput("send reading_ids: a list of at most 10 reading ids")
    held = q.renew_claims(g.kit.db, g.user.name, wanted, now=current_app.config["CLOCK"](),
                          seconds=current_app.config["CLAIM_SECONDS"])
    return jsonify({"held": held, "seconds": current_app.config["CLAIM_SECONDS"]})


@bp.get("/api/readings/<int:reading_id>")
def api_reading(reading_id: int):
    return jsonify({"done": False, "reading": reading_json(reading_id)})


@bp.post("/api/readings/<int:reading_id>/decision")
def api_decide(reading_id: int):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadInput("send the decision as a JSON object")
    decision, seen, note = body.get("decision"), body.get("seen_review_id"), body.get("note")
    if seen is not None and not json_id(seen):
        raise BadInput("seen_review_id is the id of the review you saw, or null")
    if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX):
        raise BadInput(f"a note is text of at most {NOTE_MAX} characters")
    detail = q.reading_detail(g.kit.db, reading_id, kit_path())
    value = q.decision_value(detail, decision, body.get("value"))
    if decision in ("transcribe", "correct") and detail["options"] is None:
        # the same format and plausibility rules as the handwriting suggestions (templates/values.py)
        try:
            problem = typed_problem(kit_path(), detail, value)
        except BadInput as refused:  # said in the clerk's language (the English stays in logs)
            said = value_problem_text(g.lang, getattr(refused, "problem", None))
            if not said:
                raise
            return jsonify({"error": f"{said} — {t(g.lang, 'typed_hint')}"}), 400
        implausible = None if problem is None else str(problem)  # English, as the audit note keeps it
        if implausible and body.get("confirm_implausible") is not True:
            return jsonify({"error": t(g.lang, "implausible", reason=value_problem_text(g.lang, problem) or implausible),
                            "implausible": True, "reason": implausible}), 422
        if implausible:
            note = (f"implausible, confirmed: {implausible}" + (f" — {note}" if note else ""))[:NOTE_MAX]
    shown = detail.get("suggestion")
    if shown and shown.get("pattern"):  # partly pre-filled: did the value keep every pre-filled box?
        shown = {**shown, "kept": keeps_prefill(shown["pattern"], value, detail["type"] == "number")}
    try:  # the "decided meanwhile?" check, the insert and the form's summary are one transaction
        with summary.refreshing(g.kit):
            review_id = record_review(g.kit.db, reading_id, decision, value, g.user.name, note,
                                      expect_review_id=seen, suggestion=shown)
    except AlreadyDecided as exc:
        return jsonify({"error": t(g.lang, "already_decided", who=exc.by or "?"), "conflict": True}), 409
    return jsonify({"ok": True, "review_id": review_id})


@bp.get("/api/progress")
def api_progress():
    """Where the clerk is: decided in this session, waiting (with the queue's filters), pace, and
    (with end=1) what else is open: conflicts, quarantined pages, unlinked downtime MRNs."""
    f = filters()
    since = session_start()
    counts = summary.queue_counts(g.kit, f.get("ward"), f.get("template"))
    if not f.get("reason"):
        waiting = sum(counts.values())
    elif q.is_reason_code(f["reason"]):
        waiting = q.counts_by_code(counts).get(f["reason"], 0)
    else:  # a link saved before the codes: its exact text
        waiting = counts.get(f["reason"], 0)
    times = [dt.datetime.fromisoformat(at) for at in q.own_decision_times(g.kit.db, g.user.name)]
    times = [t_ for t_ in times if t_ >= since]
    done = len(times)
    pace = (max(times) - min(times)).total_seconds() / (done - 1) if done >= 2 else None
    out: dict[str, Any] = {"decided": done, "waiting": waiting, "position": done + 1 if waiting else done,
                           "total": done + waiting, "pace_s": round(pace, 1) if pace else None,
                           "left_s": round(pace * waiting) if pace else None}
    if request.args.get("end"):
        out["open"] = open_counts()
    return jsonify(out)


def open_counts() -> dict[str, int]:
    """What else is open after the queue: conflicts, quarantined pages, unlinked downtime MRNs."""
    return {"conflicts": summary.totals(g.kit)["conflicts"], "quarantine": q.open_quarantine_count(g.kit.db),
            "identities": summary.unlinked_identities(g.kit)}
