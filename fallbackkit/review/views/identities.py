"""Identities: link a downtime MRN on returned paper to the real patient, after a look at both."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, redirect, render_template, request, url_for

from ... import reconcile as rc
from ...errors import BadInput, FallbackkitError
from ..i18n import t
from ..web import back, flash

bp = Blueprint("identities", __name__)


@bp.get("/identities")
def identities():
    everything = rc.list_identities(g.kit)
    items = [i for i in everything if i.get("kind") == "mrn"]
    suggestions: dict[str, list[dict[str, Any]]] = {}
    for s in rc.suggest_identities(g.kit, identities=everything):
        suggestions.setdefault(s["downtime_mrn"], []).append(s)
    no_suggestion = {i["downtime_mrn"]: rc.no_suggestion_reason(g.kit, i) for i in items
                     if not i["linked_to"] and i["downtime_mrn"] not in suggestions}
    return render_template("identities.html", items=items, suggestions=suggestions, no_suggestion=no_suggestion)


def _both(source: Any) -> tuple[str, str]:
    dt, real = source.get("downtime_mrn", "").strip(), source.get("real_mrn", "").strip()
    if not dt or not real:
        raise BadInput(t(g.lang, "link_needs_both"))
    return dt, real


@bp.get("/identities/check")
def identity_check():
    dt, real = _both(request.args)
    # part=1: the card alone, fetched into the identities screen (no page load, the focus stays there)
    page = "_identity_check_card.html" if request.args.get("part") == "1" else "identity_check.html"
    return render_template(page, p=rc.identity_preview(g.kit, dt, real),
                           reason=request.args.get("reason", ""), error=None)


@bp.post("/identities/link")
def link():
    dt, real = _both(request.form)
    reason = request.form.get("reason") or "review station"
    wants_json = request.headers.get("Accept") == "application/json"  # from the identities screen, no reload
    try:
        preview = rc.identity_preview(g.kit, dt, real)
        already = preview["linked_to"] is not None
        # the paper and the census disagree (or the MRN is not in the census): a second, explicit step
        if preview["mismatches"] and not already and request.form.get("confirm") != "1":
            error = t(g.lang, "link_confirm_needed")
            if wants_json:
                return jsonify({"error": error, "card": render_template(
                    "_identity_check_card.html", p=preview, reason=reason, error=error)}), 409
            return render_template("identity_check.html", p=preview, reason=reason, error=error), 409
        rc.link_identity(g.kit, dt, real, g.user.name, reason, confirmed=preview["mismatches"] or None)
    except FallbackkitError as exc:
        if wants_json:
            return jsonify({"error": str(exc)}), 409
        flash("error", str(exc))
        return redirect(url_for("identities.identities"))
    message = t(g.lang, "linked", dt=preview["downtime_mrn"], real=real)
    if wants_json:
        return jsonify({"ok": True, "message": message, "downtime_mrn": preview["downtime_mrn"], "linked_to": real})
    flash("ok", message)
    return back(url_for("identities.identities"))
