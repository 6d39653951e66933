"""The start page: what is left to do, per ward (from the summaries kept up to date on write)."""
from __future__ import annotations

from flask import Blueprint, g, render_template

from .. import queue as q
from ...reconcile import summary

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def dashboard():
    rows = summary.ward_rows(g.kit)
    waiting = sum(summary.queue_counts(g.kit).values())
    return render_template("dashboard.html", rows=sorted(rows.items()), totals=summary.totals(g.kit), waiting=waiting,
                           quarantined=q.open_quarantine_count(g.kit.db), unlinked=summary.unlinked_identities(g.kit),
                           to_reenter=sum(r["to_reenter"] for r in rows.values()))
