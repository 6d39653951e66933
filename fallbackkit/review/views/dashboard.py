"""The start page: what is left to do, per ward."""
from __future__ import annotations

from flask import Blueprint, g, render_template

from ... import reconcile as rc
from .. import queue as q
from ..web import cached

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def dashboard():
    waiting = sum(q.queue_counts(g.kit.db).values())
    quarantined = len(q.open_quarantine(g.kit.db))
    report = cached("reconcile", lambda: rc.reconcile(g.kit))
    items = cached("worklist", lambda: rc.worklist(g.kit))
    rows = rc.ward_progress(report, items)
    to_reenter = sum(1 for item in items if item.status == "pending")
    return render_template("dashboard.html", rows=sorted(rows.items()), totals=report["totals"], waiting=waiting,
                           quarantined=quarantined, unlinked=rc.unlinked_count(g.kit), to_reenter=to_reenter)
