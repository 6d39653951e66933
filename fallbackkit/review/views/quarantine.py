"""Quarantined pages: assign a page the machine could not place to its sheet."""
from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, request, url_for

from ... import ids
from ...errors import FallbackkitError
from .. import queue as q
from ..i18n import assign_error, t
from ..web import back, flash, kit_path

bp = Blueprint("quarantine", __name__)


@bp.get("/quarantine")
def quarantine():
    from collections import Counter
    from ...scan.pipeline import UNTRUSTED_REASONS
    reason = request.args.get("reason") or None  # a code: the pages whose stored reason codes hold it
    every = q.open_quarantine(g.kit.db)
    counts = Counter(i["reason"] for i in every).most_common()
    items = q.open_quarantine(g.kit.db, reason) if reason else every
    for i in items:  # an original missing from the archive: said on the page, not a broken image
        i["image_problem"] = q.page_view_problem(kit_path(), i["capture_id"], i["image_path"], i["archive_path"])
    return render_template("quarantine.html", items=items, untrusted=UNTRUSTED_REASONS, reason=reason,
                           counts=counts)


@bp.post("/quarantine/<int:quarantine_id>/assign")
def assign(quarantine_id: int):
    from ...scan.pipeline import UNTRUSTED_REASONS, assign_quarantined
    sheet_id = request.form.get("sheet_id", "").strip()
    reason = q.quarantine_reason(g.kit.db, quarantine_id)
    try:  # a forged or foreign page: supervisors only (the library refuses anyone else)
        capture_id = assign_quarantined(g.kit, quarantine_id, sheet_id, g.user.name,
                                        supervisor=g.user.is_supervisor)
    except FallbackkitError as exc:  # said in the clerk's language when the error says what it is
        said = getattr(exc, "said", None)
        flash("error", assign_error(g.lang, *said) if said else str(exc))
        return redirect(url_for("quarantine.quarantine"))
    if reason in UNTRUSTED_REASONS:
        flash("warn", t(g.lang, "assigned_untrusted", reason=reason, sheet=ids.normalize(sheet_id),
                         capture=capture_id))
    else:
        flash("ok", t(g.lang, "assigned", sheet=ids.normalize(sheet_id), capture=capture_id))
    return back(url_for("quarantine.quarantine"))
