"""People (supervisors): lift a lock after wrong passwords."""
from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, url_for

from .. import users as u
from ..i18n import t
from ..web import flash, supervisor_only

bp = Blueprint("admin", __name__)


@bp.get("/people")
@supervisor_only
def people():
    return render_template("people.html", items=u.list_users(g.kit.db))


@bp.post("/people/<name>/unlock")
@supervisor_only
def unlock(name: str):
    u.unlock_user(g.kit.db, name, g.user.name)
    flash("ok", t(g.lang, "unlocked", name=name))
    return redirect(url_for("admin.people"))
