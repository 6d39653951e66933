"""Logging in and out, and the clerk's language."""
from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import Blueprint, abort, current_app, g, make_response, redirect, render_template, request, url_for

from .. import users as u
from ..i18n import t
from ..web import back, local_path

bp = Blueprint("auth", __name__)
SESSION_COOKIE = "fk_session"
LOGIN_COOKIE = "fk_login"


def _cookie(resp, name: str, value: str, max_age: int | None) -> None:
    resp.set_cookie(name, value, max_age=max_age, httponly=True, samesite="Strict",
                    secure=current_app.config["SECURE_COOKIES"], path="/")


@bp.get("/favicon.ico")
def favicon():
    return current_app.send_static_file("favicon.svg")


@bp.get("/login")
def login():
    if g.session is not None:
        return redirect(url_for("dashboard.dashboard"))
    # reuse the pending token: a second tab (or the browser's favicon fetch) must not void the first form
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    resp = make_response(render_template("login.html", login_csrf=token, error=None,
                                         next=request.args.get("next", "")))
    _cookie(resp, LOGIN_COOKIE, token, 3600)
    return resp


@bp.post("/login")
def login_post():
    cookie, sent = request.cookies.get(LOGIN_COOKIE, ""), request.form.get("csrf_token", "")
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        abort(403, description="missing or wrong CSRF token")
    name = request.form.get("name", "")
    user = u.authenticate(g.kit.db, name, request.form.get("password", ""), request.remote_addr)
    if user is None:
        key = "login_locked" if u.is_locked(g.kit.db, name.strip()) else "login_failed"
        token = secrets.token_urlsafe(24)
        resp = make_response(render_template("login.html", login_csrf=token, error=t(g.lang, key),
                                             next=request.form.get("next", "")), 401)
        _cookie(resp, LOGIN_COOKIE, token, 3600)
        return resp
    token, _csrf = u.start_session(g.kit.db, user)
    target = request.form.get("next") or url_for("dashboard.dashboard")
    if not local_path(target):
        target = url_for("dashboard.dashboard")
    resp = redirect(target)
    _cookie(resp, SESSION_COOKIE, token, int(current_app.config["SESSION_MAX"]))
    resp.delete_cookie(LOGIN_COOKIE, path="/")
    return resp


@bp.post("/logout")
def logout():
    u.end_session(g.kit.db, g.session.token_hash)
    resp = redirect(url_for("auth.login"))
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@bp.post("/lang")
def set_lang() -> Any:
    u.set_lang(g.kit.db, g.user.name, request.form.get("lang", ""))
    return back(url_for("dashboard.dashboard"))
