"""The review station: a Flask app over one kit, for records clerks and their supervisors.

Security stance (the station shows patient data on a shared PC): server-side sessions with absolute
and idle expiry, a CSRF token on every POST (forms and fetch), HttpOnly + SameSite=Strict cookies,
a strict Content-Security-Policy (scripts and styles from the app only), no framing, no caching.
Every decision goes through the library functions with the logged-in user as `actor`, so the
audit log names who decided.

This module builds the app and holds what every request shares (opening the kit, the session and
CSRF check, security headers, error pages). The screens are blueprints in review/views/, the
helpers they share in review/web.py.
"""
from __future__ import annotations

import hmac
import time
from pathlib import Path
from typing import Any

from flask import Flask, abort, g, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

from ..errors import FallbackkitError, NotFound
from ..store.kit import Kit, connect, open_kit
from . import queue as q
from . import users as u
from .i18n import detail_text, reason_text, sex_text, t
from .views import BLUEPRINTS
from .views.auth import LOGIN_COOKIE, SESSION_COOKIE
from .web import SQLITE_INT_MAX, StationState, StoreConnections, change_stamp, fmt, pop_flashes

PUBLIC_ENDPOINTS = {"auth.login", "auth.login_post", "static", "auth.favicon"}
TEXT_MAX = 500          # characters of any one form field or query value (notes, reasons, ids, typed values)
MAX_BODY = 256 * 1024   # bytes of a request body; waitress refuses larger ones before reading them
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

__all__ = ["create_app", "MAX_BODY", "TEXT_MAX", "PUBLIC_ENDPOINTS", "SESSION_COOKIE", "LOGIN_COOKIE",
           "change_stamp", "SQLITE_INT_MAX"]


def create_app(kit_path: Path | str, *, session_max: float = u.SESSION_MAX_SECONDS,
               session_idle: float = u.SESSION_IDLE_SECONDS, secure_cookies: bool = False) -> Flask:
    """The review app for the kit at kit_path. Each request opens its own SQLite connection."""
    kit_path = Path(kit_path)
    kit = open_kit(kit_path)  # checks the kit and applies migrations once
    kit_id, secret = kit.kit_id, kit.secret
    if not kit.read_only:  # the kept summaries (computed once for a store made by an older version)
        from ..reconcile.summary import refresh
        refresh(kit)
    kit.close()

    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.url_map.converters["int"] = StoreId  # /readings/<int:...>: an id SQLite can hold, else 404
    app.config.update(KIT_PATH=kit_path, SESSION_MAX=session_max, SESSION_IDLE=session_idle,
                      SECURE_COOKIES=secure_cookies, MAX_CONTENT_LENGTH=MAX_BODY,
                      CLAIM_SECONDS=q.CLAIM_SECONDS, CLOCK=time.time,  # tests set a short claim or their own clock
                      WORKLIST_PATIENTS_PER_PAGE=20, WORKLIST_ITEMS_PER_PATIENT=20,
                      CONFLICT_FORMS_PER_PAGE=10)
    app.extensions["fallbackkit.station"] = StationState()
    connections = app.extensions["fallbackkit.connections"] = StoreConnections(
        lambda: connect(kit_path / "store.sqlite"))

    # --- per request: the kit, the session, the CSRF check ------------------------------------
    @app.before_request
    def _open() -> Any:
        g.kit = Kit(kit_path, kit_id, secret, connections.get())
        g.session = u.load_session(g.kit.db, request.cookies.get(SESSION_COOKIE),
                                   app.config["SESSION_MAX"], app.config["SESSION_IDLE"])
        g.user = g.session.user if g.session else None
        g.lang = g.user.lang if g.user else (request.accept_languages.best_match(u.LANGS) or "en")
        for source in (request.args, request.form) if request.method == "POST" else (request.args,):
            for key, text in source.items(multi=True):  # every free-text input has a limit
                if len(key) > 64 or len(text) > TEXT_MAX:
                    abort(400, description=f"{key[:64]} is too long (at most {TEXT_MAX} characters)")
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if g.session is None:
            if request.path.startswith("/api/") or request.method != "GET":
                return jsonify({"error": "not logged in"}), 401
            return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))
        if request.method == "POST":
            sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
            if not hmac.compare_digest(sent.encode(), g.session.csrf.encode()):
                abort(403, description="missing or wrong CSRF token")
        return None

    @app.teardown_request
    def _close(exc: BaseException | None) -> None:
        kit_ = g.pop("kit", None)
        if kit_ is not None:  # the connection stays open for this thread's next request
            try:
                kit_.save_audit_head(force=False)
            finally:
                connections.done(kit_.db)

    @app.after_request
    def _summaries(resp):
        """After a write (a decision, undo, resolution, assignment, link, mark), the forms it marked
        are recomputed now, so that the next view finds its counts ready."""
        if request.method == "POST" and resp.status_code < 400 and g.get("kit") is not None:
            from ..reconcile.summary import refresh
            refresh(g.kit)
        return resp

    @app.after_request
    def _headers(resp):
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if request.endpoint != "static":
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(FallbackkitError)
    def _fk_error(exc: FallbackkitError):
        code = 404 if isinstance(exc, NotFound) else 409 if exc.exit_code == 6 else 400
        if request.path.startswith("/api/"):
            return jsonify({"error": str(exc)}), code
        return render_template("error.html", code=code, message=str(exc)), code

    @app.errorhandler(OverflowError)
    def _too_large(exc: OverflowError):  # a number no store id can be
        return _http_error(BadRequest(description="a number sent is too large"))

    @app.errorhandler(400)
    @app.errorhandler(401)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(413)
    def _http_error(exc):
        if request.path.startswith("/api/"):
            return jsonify({"error": exc.description}), exc.code
        return render_template("error.html", code=exc.code, message=exc.description), exc.code

    @app.context_processor
    def _inject() -> dict[str, Any]:
        lang = g.get("lang", "en")
        return {"_": lambda key, **kw: t(lang, key, **kw), "lang": lang, "user": g.get("user"),
                "why": lambda reason: reason_text(lang, reason),
                "sex": lambda value: sex_text(lang, value),
                "detail": lambda item: detail_text(lang, item.get("detail_codes") or item.get("detail")),
                "csrf": g.session.csrf if g.get("session") else "", "langs": u.LANGS,
                "flashes": pop_flashes(), "fmt": fmt}

    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    return app


class StoreId(IntegerConverter):
    """A URL id that fits a SQLite integer: a larger one matches no route (404), never a 500."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", SQLITE_INT_MAX)
        super().__init__(map, *args, **kwargs)
