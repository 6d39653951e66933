"""Decisions made, and undoing them (a clerk their own of this session, a supervisor any)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, render_template, request, url_for

from ...errors import FallbackkitError
from ...reconcile import summary
from ...store.decisions import last_own_review, undo_own_review, undo_review
from .. import labels as lb
from .. import queue as q
from ..i18n import t
from ..web import back, flash, kit_path, session_start

bp = Blueprint("decisions", __name__)


@bp.get("/decisions")
def decisions():
    items = q.recent_decisions(g.kit.db, 200)
    for item in items:
        item["label"] = lb.field_label(lb.labels(kit_path(), item.pop("template"), item.pop("version"), g.lang),
                                       item["field"])
    mine = last_own_review(g.kit.db, g.user.name, session_start())
    return render_template("decisions.html", items=items, own_last=mine["review_id"] if mine else None)


@bp.post("/reviews/<int:review_id>/undo")
def undo(review_id: int):
    note = request.form.get("note") or None
    if g.user.is_supervisor:
        with summary.refreshing(g.kit):  # the undo and its form's summary: one transaction
            undo_review(g.kit.db, review_id, g.user.name, note)
    else:  # a clerk takes back a decision of their own, made in this session
        try:
            with summary.refreshing(g.kit):
                undo_own_review(g.kit.db, g.user.name, session_start(), review_id, note)
        except FallbackkitError as exc:
            flash("error", str(exc))
            return back(url_for("decisions.decisions"))
    flash("ok", t(g.lang, "undone", id=review_id))
    return back(url_for("decisions.decisions"))


@bp.post("/api/undo-last")
def api_undo_last():
    """Undo my own latest decision of this session; the reading comes back to be decided again."""
    with summary.refreshing(g.kit):
        own = undo_own_review(g.kit.db, g.user.name, session_start())
    return jsonify({"ok": True, "reading_id": own["reading_id"], "review_id": own["review_id"]})
