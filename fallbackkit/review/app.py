"""The review station: a Flask app over one kit, for records clerks and their supervisors.

Security stance (the station shows patient data on a shared PC): server-side sessions with absolute
and idle expiry, a CSRF token on every POST (forms and fetch), HttpOnly + SameSite=Strict cookies,
a strict Content-Security-Policy (scripts and styles from the app only), no framing, no caching.
Every decision goes through the library functions with the logged-in user as `actor`, so the
audit log names who decided.
"""
from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import (Flask, abort, g, jsonify, make_response, redirect, render_template, request, send_file,
                   url_for)

from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

from .. import ids, reconcile as rc
from ..errors import BadInput, FallbackkitError, NotFound
from ..store.decisions import NOTE_MAX
from ..store.kit import Kit, connect, open_kit
from . import labels as lb
from . import queue as q
from . import users as u
from .i18n import STRINGS, reason_text, t

SESSION_COOKIE = "fk_session"
LOGIN_COOKIE = "fk_login"
PUBLIC_ENDPOINTS = {"login", "login_post", "static", "favicon"}
SQLITE_INT_MAX = 2 ** 63 - 1
TEXT_MAX = 500          # characters of any one form field or query value (notes, reasons, ids, typed values)
MAX_BODY = 256 * 1024   # bytes of a request body; waitress refuses larger ones before reading them
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


# Tables whose newest row id changes whenever anything the dashboard counts changes (scans write
# captures, people write reviews, marks and links; everything is also audited).
CHANGE_STAMP = (("captures", "capture_id"), ("reviews", "review_id"), ("worklist_marks", "id"),
                ("identity_links", "id"), ("quarantine_assignments", "id"), ("audit", "id"))


def change_stamp(conn) -> tuple:
    return tuple(conn.execute(f"SELECT MAX({col}) FROM {table}").fetchone()[0] for table, col in CHANGE_STAMP)


def create_app(kit_path: Path | str, *, session_max: float = u.SESSION_MAX_SECONDS,
               session_idle: float = u.SESSION_IDLE_SECONDS, secure_cookies: bool = False) -> Flask:
    """The review app for the kit at kit_path. Each request opens its own SQLite connection."""
    kit_path = Path(kit_path)
    kit = open_kit(kit_path)  # checks the kit and applies migrations once
    kit_id, secret = kit.kit_id, kit.secret
    kit.close()

    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.url_map.converters["int"] = StoreId  # /readings/<int:...>: an id SQLite can hold, else 404
    app.config.update(KIT_PATH=kit_path, SESSION_MAX=session_max, SESSION_IDLE=session_idle,
                      SECURE_COOKIES=secure_cookies, MAX_CONTENT_LENGTH=MAX_BODY,
                      CLAIM_SECONDS=q.CLAIM_SECONDS, CLOCK=time.time,  # tests set a short claim or their own clock
                      WORKLIST_PATIENTS_PER_PAGE=20)
    flashes: dict[str, list[tuple[str, str]]] = {}
    # A full reconcile reads every reading of the kit: it is computed again only when the store changed.
    cache_lock = threading.Lock()
    cache: dict[str, tuple[tuple, Any]] = {}

    def cached(name: str, compute):
        stamp = change_stamp(g.kit.db.conn)
        with cache_lock:
            hit = cache.get(name)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = compute()
        with cache_lock:
            cache[name] = (stamp, value)
        return value

    # --- per request: the kit, the session, the CSRF check ------------------------------------
    @app.before_request
    def _open() -> Any:
        g.kit = Kit(kit_path, kit_id, secret, connect(kit_path / "store.sqlite"))
        g.session = u.load_session(g.kit.db, request.cookies.get(SESSION_COOKIE),
                                   app.config["SESSION_MAX"], app.config["SESSION_IDLE"])
        g.user = g.session.user if g.session else None
        g.lang = g.user.lang if g.user else _browser_lang()
        for source in (request.args, request.form) if request.method == "POST" else (request.args,):
            for key, text in source.items(multi=True):  # every free-text input has a limit
                if len(key) > 64 or len(text) > TEXT_MAX:
                    abort(400, description=f"{key[:64]} is too long (at most {TEXT_MAX} characters)")
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if g.session is None:
            if request.path.startswith("/api/") or request.method != "GET":
                return jsonify({"error": "not logged in"}), 401
            return redirect(url_for("login", next=request.full_path if request.query_string else request.path))
        if request.method == "POST":
            sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
            if not hmac.compare_digest(sent.encode(), g.session.csrf.encode()):
                abort(403, description="missing or wrong CSRF token")
        return None

    @app.teardown_request
    def _close(exc: BaseException | None) -> None:
        kit_ = g.pop("kit", None)
        if kit_ is not None:
            kit_.close()

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

    def _browser_lang() -> str:
        return request.accept_languages.best_match(u.LANGS) or "en"

    @app.context_processor
    def _inject() -> dict[str, Any]:
        lang = g.get("lang", "en")
        return {"_": lambda key, **kw: t(lang, key, **kw), "lang": lang, "user": g.get("user"),
                "why": lambda reason: reason_text(lang, reason),
                "csrf": g.session.csrf if g.get("session") else "", "langs": u.LANGS,
                "flashes": flashes.pop(g.session.token_hash, []) if g.get("session") else [],
                "fmt": _fmt}

    def flash(kind: str, message: str) -> None:
        flashes.setdefault(g.session.token_hash, []).append((kind, message))

    def back(default: str) -> Any:
        target = request.form.get("next") or default
        if not _local_path(target):
            target = default
        return redirect(target)

    def supervisor_only(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if not g.user.is_supervisor:
                abort(403, description=t(g.lang, "supervisor_only"))
            return view(*args, **kwargs)
        return wrapper

    def _cookie(resp, name: str, value: str, max_age: int | None) -> None:
        resp.set_cookie(name, value, max_age=max_age, httponly=True, samesite="Strict",
                        secure=app.config["SECURE_COOKIES"], path="/")

    @app.get("/favicon.ico")
    def favicon():
        return app.send_static_file("favicon.svg")

    # --- login / logout --------------------------------------------------------------------------
    @app.get("/login")
    def login():
        if g.session is not None:
            return redirect(url_for("dashboard"))
        # reuse the pending token: a second tab (or the browser's favicon fetch) must not void the first form
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        resp = make_response(render_template("login.html", login_csrf=token, error=None,
                                             next=request.args.get("next", "")))
        _cookie(resp, LOGIN_COOKIE, token, 3600)
        return resp

    @app.post("/login")
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
        target = request.form.get("next") or url_for("dashboard")
        if not _local_path(target):
            target = url_for("dashboard")
        resp = redirect(target)
        _cookie(resp, SESSION_COOKIE, token, int(app.config["SESSION_MAX"]))
        resp.delete_cookie(LOGIN_COOKIE, path="/")
        return resp

    @app.post("/logout")
    def logout():
        u.end_session(g.kit.db, g.session.token_hash)
        resp = redirect(url_for("login"))
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    @app.post("/lang")
    def set_lang():
        u.set_lang(g.kit.db, g.user.name, request.form.get("lang", ""))
        return back(url_for("dashboard"))

    # --- dashboard -------------------------------------------------------------------------------
    @app.get("/")
    def dashboard():
        waiting = sum(q.queue_counts(g.kit.db).values())
        quarantined = len(q.open_quarantine(g.kit.db))
        report = cached("reconcile", lambda: rc.reconcile(g.kit))
        items = cached("worklist", lambda: rc.worklist(g.kit))
        totals = report["totals"]
        rows: dict[str, dict[str, int]] = {}

        def ward_row(ward: str | None) -> dict[str, int]:
            return rows.setdefault(ward or "—", dict.fromkeys(
                ("printed", "returned", "missing", "to_review", "to_reenter", "entered"), 0))

        for form in report["forms"]:
            w = ward_row(form.get("ward"))
            w["printed"] += int(form.get("pages") or 0)
            w["returned"] += len(form.get("pages_returned") or [])
            w["missing"] += len(form.get("pages_missing") or [])
            w["to_review"] += int(form.get("to_review") or 0)
        for item in items:
            w = ward_row(item.ward)
            if item.status == "pending":
                w["to_reenter"] += 1
            elif item.status == "entered":
                w["entered"] += 1
        unlinked = sum(1 for i in rc.list_identities(g.kit) if i.get("kind") == "mrn" and not i.get("linked_to"))
        to_reenter = sum(1 for item in items if item.status == "pending")
        return render_template("dashboard.html", rows=sorted(rows.items()), totals=totals, waiting=waiting,
                               quarantined=quarantined, unlinked=unlinked, to_reenter=to_reenter)

    # --- queue and readings ------------------------------------------------------------------------
    def _filters() -> dict[str, str]:
        return {k: request.args[k] for k in ("ward", "template", "reason") if request.args.get(k)}

    @app.get("/queue")
    def queue_view():
        f = _filters()
        items = q.list_queue(g.kit.db, f.get("ward"), f.get("template"), f.get("reason"), limit=200)
        names = _patient_names()
        for item in items:
            item["label"] = lb.field_label(lb.labels(kit_path, item["template"], item["version"], g.lang),
                                           item["field"])
            item["name"] = names.get(item["mrn"] or "")
            item["title"] = lb.form_title(lb.labels(kit_path, item["template"], item["version"], g.lang), item["template"])
        counts = q.queue_counts(g.kit.db, f.get("ward"), f.get("template"))
        return render_template("queue.html", items=items, counts=counts, filters=f,
                               choices=q.filter_choices(g.kit.db), query=urlencode(f),
                               quarantined=len(q.open_quarantine(g.kit.db)))

    @app.get("/review")
    def work():
        f = _filters()
        start = _id_arg(request.args, "start")
        return render_template("review.html", filters=f, query=urlencode(f), start=start or "",
                               strings=STRINGS[g.lang]["js"])

    @app.get("/readings/<int:reading_id>")
    def reading_page(reading_id: int):
        q.reading_detail(g.kit.db, reading_id)  # 404 when unknown
        return redirect(url_for("work", start=reading_id))

    def _reading_json(reading_id: int) -> dict[str, Any]:
        d = q.reading_detail(g.kit.db, reading_id, kit_path)
        d["crop_url"] = url_for("crop_image", reading_id=reading_id) if d["has_crop"] else None
        d["page_url"] = url_for("page_image", capture_id=d["capture_id"]) if d["has_page"] else None
        d["page_link"] = url_for("page_view", capture_id=d["capture_id"])
        d["reason_text"] = reason_text(g.lang, d.get("reason"))
        table = lb.labels(kit_path, d["capture"]["template"], d["capture"]["version"], g.lang)
        d["field_label"] = lb.field_label(table, d["field"])
        d["form_title"] = lb.form_title(table, d["capture"]["template"])
        if d["options"] is not None:
            names = lb.option_labels(table, d["field"])
            d["option_labels"] = [_option_text(o, names.get(o)) for o in d["options"]]
        d["returned"] = _returned(reading_id) if d["review"] is None else None
        d["patient_name"] = _patient_name(d["capture"].get("patient_mrn"), d["capture"].get("downtime_mrn"))
        return d

    def _patient_name(mrn: str | None, downtime_mrn: str | None) -> str | None:
        """The census name of the form's patient (a linked downtime MRN counts as its real MRN)."""
        if not mrn and downtime_mrn:
            row = g.kit.db.execute("SELECT real_mrn FROM identity_links l WHERE downtime_mrn = ? AND revokes IS NULL"
                                   " AND NOT EXISTS (SELECT 1 FROM identity_links r WHERE r.revokes = l.id)"
                                   " ORDER BY id DESC LIMIT 1", [downtime_mrn]).fetchone()
            mrn = row[0] if row else None
        if not mrn:
            return None
        row = g.kit.db.execute("SELECT last_name, first_name FROM patients WHERE mrn = ? ORDER BY snapshot_id DESC"
                               " LIMIT 1", [mrn]).fetchone()
        return f"{row[0]}, {row[1]}" if row else None

    def _returned(reading_id: int) -> dict[str, Any] | None:
        """The undo that sent a reading back to the queue (who, when, why), if one did."""
        row = g.kit.db.execute(
            "SELECT u.actor, u.at, u.note, r.actor, r.decision, r.value FROM reviews u JOIN reviews r"
            " ON r.review_id = u.undoes WHERE u.reading_id = ? AND u.decision = 'undo' ORDER BY u.review_id DESC LIMIT 1",
            [reading_id]).fetchone()
        if row is None:
            return None
        return {"by": row[0], "at": row[1], "note": row[2], "decided_by": row[3], "decision": row[4],
                "value": json.loads(row[5]) if row[5] is not None else None}

    @app.get("/api/next")
    def api_next():
        f = _filters()
        after = _id_arg(request.args, "after") or 0
        keep = _id_arg(request.args, "keep")  # the reading still on the clerk's screen (a prefetch)
        conn = g.kit.db.conn
        # one write transaction: the claim is taken atomically (two clerks asking at once never get
        # the same reading) and the item handed out is waiting in the very state it is shown in (a
        # decision saved in between would otherwise reach the clerk as "seen", and be decided over)
        conn.execute("BEGIN IMMEDIATE")
        try:
            rid = q.claim_next(g.kit.db, g.user.name, after, keep, f.get("ward"), f.get("template"), f.get("reason"),
                               now=app.config["CLOCK"](), seconds=app.config["CLAIM_SECONDS"])
            reading = _reading_json(rid) if rid is not None else None
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        if reading is None:  # nothing free: say how many are on other clerks' screens (they may come back)
            return jsonify({"done": True, "claimed": q.claimed_by_others(g.kit.db, g.user.name,
                                                                         now=app.config["CLOCK"]())})
        return jsonify({"done": False, "reading": reading})

    @app.post("/api/claims")
    def api_claims():
        """Renew the claims on the readings on the clerk's screen; answers the ones still theirs."""
        body = request.get_json(silent=True)
        ids = body.get("reading_ids") if isinstance(body, dict) else None
        if (not isinstance(ids, list) or len(ids) > 10
                or any(type(i) is not int or not 0 < i <= SQLITE_INT_MAX for i in ids)):
            raise BadInput("send reading_ids: a list of at most 10 reading ids")
        held = q.renew_claims(g.kit.db, g.user.name, ids, now=app.config["CLOCK"](),
                              seconds=app.config["CLAIM_SECONDS"])
        return jsonify({"held": held, "seconds": app.config["CLAIM_SECONDS"]})

    @app.get("/api/readings/<int:reading_id>")
    def api_reading(reading_id: int):
        return jsonify({"done": False, "reading": _reading_json(reading_id)})

    @app.post("/api/readings/<int:reading_id>/decision")
    def api_decide(reading_id: int):
        from ..store.decisions import AlreadyDecided, record_review
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadInput("send the decision as a JSON object")
        decision, seen, note = body.get("decision"), body.get("seen_review_id"), body.get("note")
        if seen is not None and (type(seen) is not int or not 0 < seen <= SQLITE_INT_MAX):
            raise BadInput("seen_review_id is the id of the review you saw, or null")
        if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX):
            raise BadInput(f"a note is text of at most {NOTE_MAX} characters")
        detail = q.reading_detail(g.kit.db, reading_id, kit_path)
        value = _checked_value(detail, decision, body.get("value"))
        if decision in ("transcribe", "correct") and detail["options"] is None:
            # the same format and plausibility rules as the handwriting suggestions (templates/values.py)
            from .typed import check_typed
            implausible = check_typed(kit_path, detail, value)
            if implausible and body.get("confirm_implausible") is not True:
                return jsonify({"error": t(g.lang, "implausible", reason=implausible), "implausible": True,
                                "reason": implausible}), 422
            if implausible:
                note = f"implausible, confirmed: {implausible}" + (f" — {note}" if note else "")
                note = note[:NOTE_MAX]
        try:  # the "decided meanwhile?" check and the insert are one transaction
            review_id = record_review(g.kit.db, reading_id, decision, value, g.user.name, note,
                                      expect_review_id=seen, suggestion=detail.get("suggestion"))
        except AlreadyDecided as exc:
            return jsonify({"error": t(g.lang, "already_decided", who=exc.by or "?"), "conflict": True}), 409
        return jsonify({"ok": True, "review_id": review_id})

    @app.get("/img/crop/<int:reading_id>")
    def crop_image(reading_id: int):
        row = g.kit.db.execute("SELECT crop_path FROM readings WHERE reading_id = ?", [reading_id]).fetchone()
        if row is None:
            abort(404)
        if row[0]:  # a crop written at scan time (scans before crops were cut on demand)
            return send_file(q.kit_file(kit_path, row[0]), max_age=0)
        from ..scan.crops import field_crop_png  # cut from the archived original, as the engine framed it
        png = field_crop_png(g.kit.db.conn, kit_path, reading_id) or q.field_crop_from_page(
            g.kit.db, kit_path, reading_id)
        if png is None:
            abort(404)
        return app.response_class(png, mimetype="image/png")

    @app.get("/img/page/<int:capture_id>")
    def page_image(capture_id: int):
        row = g.kit.db.execute("SELECT image_path FROM captures WHERE capture_id = ?", [capture_id]).fetchone()
        if row is None:
            abort(404)
        return send_file(q.kit_file(kit_path, row[0]), max_age=0)

    @app.get("/page/<int:capture_id>")
    def page_view(capture_id: int):
        page = q.page_overlay(g.kit.db, capture_id, kit_path)
        table = lb.labels(kit_path, page["capture"].get("template"), page["capture"].get("version"), g.lang)
        for f in page["fields"]:
            f["label"] = lb.field_label(table, f["field"])
        return render_template("page.html", page=page)

    # --- decisions and undo --------------------------------------------------------------------
    @app.get("/decisions")
    def decisions():
        rows = g.kit.db.execute(
            "SELECT r.review_id, r.reading_id, r.decision, r.value, r.actor, r.at, r.undoes, rd.sheet_id, rd.field,"
            " EXISTS (SELECT 1 FROM reviews x WHERE x.undoes = r.review_id), c.template, c.version FROM reviews r"
            " JOIN readings rd ON rd.reading_id = r.reading_id JOIN captures c ON c.capture_id = rd.capture_id"
            " ORDER BY r.review_id DESC LIMIT 200").fetchall()
        items = [{"review_id": r[0], "reading_id": r[1], "decision": r[2],
                  "value": json.loads(r[3]) if r[3] is not None else None, "actor": r[4], "at": r[5],
                  "undoes": r[6], "sheet_id": r[7], "field": r[8], "undone": bool(r[9]),
                  "label": lb.field_label(lb.labels(kit_path, r[10], r[11], g.lang), r[8])} for r in rows]
        from ..store.decisions import last_own_review
        mine = last_own_review(g.kit.db, g.user.name, _session_start())
        return render_template("decisions.html", items=items, own_last=mine["review_id"] if mine else None)

    @app.post("/reviews/<int:review_id>/undo")
    def undo(review_id: int):
        from ..store.decisions import undo_own_review, undo_review
        note = request.form.get("note") or None
        if g.user.is_supervisor:
            undo_review(g.kit.db, review_id, g.user.name, note)
        else:  # a clerk takes back a decision of their own, made in this session
            try:
                undo_own_review(g.kit.db, g.user.name, _session_start(), review_id, note)
            except FallbackkitError as exc:
                flash("error", str(exc))
                return back(url_for("decisions"))
        flash("ok", t(g.lang, "undone", id=review_id))
        return back(url_for("decisions"))

    def _session_start():
        import datetime as dt
        return dt.datetime.fromtimestamp(int(g.session.started_at), dt.timezone.utc)  # reviews keep whole seconds

    @app.post("/api/undo-last")
    def api_undo_last():
        """Undo my own latest decision of this session; the reading comes back to be decided again."""
        from ..store.decisions import undo_own_review
        own = undo_own_review(g.kit.db, g.user.name, _session_start())
        return jsonify({"ok": True, "reading_id": own["reading_id"], "review_id": own["review_id"]})

    @app.get("/api/progress")
    def api_progress():
        """Where the clerk is: decided in this session, waiting (with the queue's filters), pace, and
        (with end=1) what else is open: conflicts, quarantined pages, unlinked downtime MRNs."""
        import datetime as dt
        f = _filters()
        since = _session_start()
        waiting = sum(q.queue_counts(g.kit.db, f.get("ward"), f.get("template")).values()) if not f.get("reason") \
            else q.queue_counts(g.kit.db, f.get("ward"), f.get("template")).get(f["reason"], 0)
        times = [dt.datetime.fromisoformat(r[0]) for r in g.kit.db.conn.execute(
            "SELECT at FROM reviews WHERE actor = ? AND decision != 'undo' AND NOT EXISTS"
            " (SELECT 1 FROM reviews u WHERE u.undoes = reviews.review_id) ORDER BY review_id DESC LIMIT 2000",
            [g.user.name])]
        times = [t_ for t_ in times if t_ >= since]
        done = len(times)
        pace = (max(times) - min(times)).total_seconds() / (done - 1) if done >= 2 else None
        out: dict[str, Any] = {"decided": done, "waiting": waiting, "position": done + 1 if waiting else done,
                               "total": done + waiting, "pace_s": round(pace, 1) if pace else None,
                               "left_s": round(pace * waiting) if pace else None}
        if request.args.get("end"):
            out["open"] = _open_counts()
        return jsonify(out)

    def _open_counts() -> dict[str, int]:
        report = cached("reconcile", lambda: rc.reconcile(g.kit))
        unlinked = sum(1 for i in rc.list_identities(g.kit) if i.get("kind") == "mrn" and not i.get("linked_to"))
        return {"conflicts": int((report.get("totals") or {}).get("conflicts") or 0),
                "quarantine": len(q.open_quarantine(g.kit.db)), "identities": unlinked}

    # --- people (supervisors): lift a lock after wrong passwords -------------------------------
    @app.get("/people")
    @supervisor_only
    def people():
        return render_template("people.html", items=u.list_users(g.kit.db))

    @app.post("/people/<name>/unlock")
    @supervisor_only
    def unlock(name: str):
        u.unlock_user(g.kit.db, name, g.user.name)
        flash("ok", t(g.lang, "unlocked", name=name))
        return redirect(url_for("people"))

    # --- conflicts -------------------------------------------------------------------------------
    @app.get("/conflicts")
    def conflicts():
        f = _filters()
        items = []
        for form in cached("reconcile", lambda: rc.reconcile(g.kit))["forms"]:
            if (f.get("ward") and form.get("ward") != f["ward"]) or \
                    (f.get("template") and form.get("template") != f["template"]):
                continue
            for c in form.get("conflicts", []):
                if c.get("resolved"):
                    continue
                caps = [{**cap, "value_json": json.dumps(cap.get("value"), ensure_ascii=False),
                         "crop": bool(cap.get("reading_id"))} for cap in c.get("captures", [])]
                # a mark field is corrected by picking one of its options, never by free text
                options = None
                first = next((cap["reading_id"] for cap in caps if cap.get("reading_id")), None)
                if first is not None:
                    detail = q.reading_detail(g.kit.db, first)
                    table = lb.labels(kit_path, form.get("template"), form.get("version"), g.lang)
                    c["label"] = lb.field_label(table, c["field"])
                    if detail["options"] is not None:
                        names = lb.option_labels(table, c["field"])
                        options = [{"json": json.dumps(o, ensure_ascii=False),
                                    "text": _option_text(o, names.get(o)) or _fmt(o)} for o in detail["options"]]
                items.append({**c, "captures": caps, "form": form, "options": options})
        names = _patient_names()
        sheets: dict[str, dict[str, Any]] = {}   # one group per sheet: "take this scan for the whole sheet"
        for item in items:
            group = sheets.setdefault(item["sheet_id"], {"sheet_id": item["sheet_id"], "form": item["form"],
                                                         "patient": names.get(item["form"].get("real_mrn") or ""),
                                                         "title": lb.form_title(lb.labels(
                                                             kit_path, item["form"].get("template"),
                                                             item["form"].get("version"), g.lang),
                                                             item["form"].get("template")),
                                                         "items": [], "captures": {}})
            group["items"].append(item)
            for cap in item["captures"]:
                group["captures"][cap["capture_id"]] = None
        for group in sheets.values():
            cids = sorted(group["captures"])
            marks = ",".join("?" * len(cids))
            when = dict(g.kit.db.conn.execute(f"SELECT capture_id, captured_at FROM captures WHERE capture_id IN ({marks})",
                                              cids).fetchall())
            group["captures"] = [{"capture_id": cid, "n": n, "at": when.get(cid)} for n, cid in enumerate(cids, 1)]
        return render_template("conflicts.html", items=items, sheets=list(sheets.values()), filters=f,
                               choices=q.filter_choices(g.kit.db))

    def _patient_names() -> dict[str, str]:
        """Real MRN -> "Last, First" from the latest census snapshot (clerks know patients by name)."""
        return {r[0]: f"{r[1]}, {r[2]}" for r in g.kit.db.conn.execute(
            "SELECT mrn, last_name, first_name FROM patients WHERE snapshot_id = (SELECT MAX(id) FROM census_snapshots)")}

    @app.post("/api/conflicts/sheet")
    def api_take_sheet():
        """Take one capture for every open conflict of its sheet (one transaction, each field audited)."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("sheet_id"), str) \
                or type(body.get("capture_id")) is not int or not 0 < body["capture_id"] <= SQLITE_INT_MAX:
            raise BadInput("send {sheet_id: text, capture_id: id}")
        out = rc.resolve_sheet_from_capture(g.kit, body["sheet_id"], body["capture_id"], g.user.name)
        return jsonify({"ok": True, **out})

    @app.post("/conflicts/resolve")
    def resolve():
        sheet_id, field = request.form.get("sheet_id", ""), request.form.get("field", "")
        chosen = _id_arg(request.form, "capture_id")
        if request.form.get("typed") is not None and request.form.get("typed", "").strip():
            value: Any = request.form["typed"].strip()
            chosen = None
        else:
            try:
                value = json.loads(request.form.get("value", "null"))
            except ValueError:
                raise BadInput("the value sent is not valid JSON")
        row = g.kit.db.execute("SELECT reading_id FROM readings WHERE sheet_id = ? AND field = ? LIMIT 1",
                               [ids.normalize(sheet_id), field]).fetchone()
        if row is None:
            raise NotFound(f"no reading of {field} on sheet {sheet_id}")
        detail = q.reading_detail(g.kit.db, row[0])
        if detail["options"] is not None:
            ok = (isinstance(value, list) and all(v in detail["options"] for v in value)) \
                if detail["type"] == "multichoice" else value in detail["options"]
            if not ok:
                raise BadInput(f"{field} takes one of its printed options, not {value!r}")
        rc.resolve_conflict(g.kit, sheet_id, field, value, g.user.name, chosen_capture_id=chosen)
        if request.headers.get("Accept") == "application/json":  # the conflicts screen, without a reload
            return jsonify({"ok": True, "sheet_id": ids.normalize(sheet_id), "field": field})
        flash("ok", t(g.lang, "conflict_resolved", field=field, sheet=sheet_id))
        return back(url_for("conflicts"))

    # --- quarantine ------------------------------------------------------------------------------
    @app.get("/quarantine")
    def quarantine():
        from ..scan.pipeline import UNTRUSTED_REASONS
        return render_template("quarantine.html", items=q.open_quarantine(g.kit.db), untrusted=UNTRUSTED_REASONS)

    @app.post("/quarantine/<int:quarantine_id>/assign")
    def assign(quarantine_id: int):
        from ..scan.pipeline import UNTRUSTED_REASONS, assign_quarantined
        sheet_id = request.form.get("sheet_id", "").strip()
        row = g.kit.db.execute("SELECT reason FROM quarantine WHERE quarantine_id = ?", [quarantine_id]).fetchone()
        reason = row[0] if row else None
        try:  # a forged or foreign page: supervisors only (the library refuses anyone else)
            capture_id = assign_quarantined(g.kit, quarantine_id, sheet_id, g.user.name,
                                            supervisor=g.user.is_supervisor)
        except FallbackkitError as exc:
            flash("error", str(exc))
            return redirect(url_for("quarantine"))
        if reason in UNTRUSTED_REASONS:
            flash("warn", t(g.lang, "assigned_untrusted", reason=reason, sheet=ids.normalize(sheet_id),
                             capture=capture_id))
        else:
            flash("ok", t(g.lang, "assigned", sheet=ids.normalize(sheet_id), capture=capture_id))
        return back(url_for("quarantine"))

    # --- identities ------------------------------------------------------------------------------
    @app.get("/identities")
    def identities():
        items = [i for i in rc.list_identities(g.kit) if i.get("kind") == "mrn"]
        suggestions: dict[str, list[dict[str, Any]]] = {}
        for s in rc.suggest_identities(g.kit):
            suggestions.setdefault(s["downtime_mrn"], []).append(s)
        no_suggestion = {i["downtime_mrn"]: rc.no_suggestion_reason(g.kit, i) for i in items
                         if not i["linked_to"] and i["downtime_mrn"] not in suggestions}
        return render_template("identities.html", items=items, suggestions=suggestions, no_suggestion=no_suggestion)

    @app.get("/identities/check")
    def identity_check():
        dt, real = request.args.get("downtime_mrn", "").strip(), request.args.get("real_mrn", "").strip()
        if not dt or not real:
            raise BadInput(t(g.lang, "link_needs_both"))
        return render_template("identity_check.html", p=rc.identity_preview(g.kit, dt, real),
                               reason=request.args.get("reason", ""), error=None)

    @app.post("/identities/link")
    def link():
        dt, real = request.form.get("downtime_mrn", "").strip(), request.form.get("real_mrn", "").strip()
        if not dt or not real:
            raise BadInput(t(g.lang, "link_needs_both"))
        reason = request.form.get("reason") or "review station"
        try:
            preview = rc.identity_preview(g.kit, dt, real)
            already = preview["linked_to"] is not None
            # the paper and the census disagree (or the MRN is not in the census): a second, explicit step
            if preview["mismatches"] and not already and request.form.get("confirm") != "1":
                return render_template("identity_check.html", p=preview, reason=reason,
                                       error=t(g.lang, "link_confirm_needed")), 409
            rc.link_identity(g.kit, dt, real, g.user.name, reason, confirmed=preview["mismatches"] or None)
        except FallbackkitError as exc:
            flash("error", str(exc))
            return redirect(url_for("identities"))
        flash("ok", t(g.lang, "linked", dt=dt, real=real))
        return back(url_for("identities"))

    # --- worklist --------------------------------------------------------------------------------
    @app.get("/worklist")
    def worklist():
        ward = request.args.get("ward") or None
        status = request.args.get("status", "pending")
        page = _id_arg(request.args, "page") or 1
        items = rc.worklist(g.kit, ward=ward, status=None if status == "all" else status)
        grouped: dict[str, list[Any]] = {}
        for item in items:  # per patient, each patient's items keeping the back-load order
            grouped.setdefault(item.patient_mrn or "—", []).append(item)
        forms = {r[0]: (r[1], r[2]) for r in g.kit.db.conn.execute("SELECT form_id, template, version FROM forms")}
        names = _patient_names()
        paper_names = {i["downtime_mrn"]: i["name"] for i in rc.list_identities(g.kit) if i.get("name")}

        def table_of(item: Any) -> dict[str, Any]:
            template, version = forms.get(item.form_id, (None, None))
            return lb.labels(kit_path, template, version, g.lang)

        def label_of(item: Any, key: str) -> str:
            return lb.value_label(table_of(item), key)

        def shown(item: Any, key: str, value: Any) -> str:
            """A value as the clerk reads it: an option with its printed label ("male (M)")."""
            table = table_of(item)
            names = lb.option_labels(table, key) or lb.option_labels(table, f"c1.{key}")  # a grid row
            if names and isinstance(value, str):
                return _option_text(value, names.get(value)) or value
            if names and isinstance(value, list):
                return ", ".join(_option_text(x, names.get(x)) or str(x) for x in value) or "—"
            return _fmt(value)

        def values_of(item: Any) -> list[tuple[str, Any]]:
            """The item's values in the order they are printed on the form."""
            table = table_of(item)
            return sorted(item.values.items(), key=lambda kv: lb.form_position(table, kv[0]))

        patients = [{"mrn": mrn, "items": its, "name": names.get(mrn) or paper_names.get(its[0].downtime_mrn or ""),
                     "pending": sum(1 for i in its if i.status == "pending")} for mrn, its in grouped.items()]
        per_page = app.config["WORKLIST_PATIENTS_PER_PAGE"]
        pages = max(1, -(-len(patients) // per_page))
        page = min(page, pages)
        on_page = patients[(page - 1) * per_page: page * per_page]
        return render_template("worklist.html", patients=on_page, ward=ward or "", status=status,
                               choices=q.filter_choices(g.kit.db), label_of=label_of, values_of=values_of, shown=shown,
                               page=page, pages=pages, n_patients=len(patients), n_items=len(items),
                               query=urlencode({k: v for k, v in (("ward", ward), ("status", status)) if v}))

    @app.post("/worklist/mark")
    def mark():
        item_id, status = request.form.get("item_id", ""), request.form.get("status", "")
        if status not in ("entered", "not-needed", "pending"):
            raise BadInput("status must be entered, not-needed or pending")
        wants_json = request.headers.get("Accept") == "application/json"  # the worklist's keys, no reload
        try:
            rc.mark_item(g.kit, item_id, status, g.user.name, request.form.get("note") or None)
        except FallbackkitError as exc:
            if wants_json:
                return jsonify({"error": str(exc)}), 409
            flash("error", str(exc))
            return back(url_for("worklist"))
        message = t(g.lang, "marked", item=item_id, status=t(g.lang, "status_" + status))
        if wants_json:
            return jsonify({"ok": True, "item_id": item_id, "status": status, "message": message,
                            "done": f"{t(g.lang, 'status_' + status)} · {g.user.name}"})
        flash("ok", message)
        return back(url_for("worklist"))

    return app


class StoreId(IntegerConverter):
    """A URL id that fits a SQLite integer: a larger one matches no route (404), never a 500."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", SQLITE_INT_MAX)
        super().__init__(map, *args, **kwargs)


def _id_arg(source: Any, name: str) -> int | None:
    """An optional id from a query or form: digits that fit SQLite, else 400."""
    text = source.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) > SQLITE_INT_MAX:
        raise BadInput(f"{name} must be an id (digits)")
    return int(text)


def _local_path(target: str) -> bool:
    """Only paths on this station may be redirected to (no //host, no /\\host, no scheme)."""
    return target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target \
        and all(ord(ch) > 31 for ch in target)


def _option_text(value: Any, label: str | None) -> str | None:
    """An option as printed on the form, with its stored value when the print is only a letter."""
    if not isinstance(value, str) or not label:
        return None
    return label if label.casefold() == value.casefold() else f"{value.replace('_', ' ')} ({label})"


def _fmt(value: Any) -> str:
    """A decided value as a clerk reads it."""
    if value is None:
        return "—"
    if value is True:
        return "☑"
    if value is False:
        return "☐"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "—"
    return str(value)


def _checked_value(detail: dict[str, Any], decision: str, value: Any) -> Any:
    """Refuse a value the field cannot take (fail closed: the clerk sees why)."""
    if decision not in ("confirm", "correct", "transcribe", "illegible"):
        raise BadInput("decision must be confirm, correct, transcribe or illegible")
    if decision in ("confirm", "illegible"):
        return None if decision == "illegible" else detail["value"]
    options = detail["options"]
    if options is not None:
        if detail["type"] == "multichoice":
            if not isinstance(value, list) or any(v not in options for v in value):
                raise BadInput("pick options of this field")
            return sorted(set(value))
        if value not in options:
            raise BadInput("pick one of the options of this field")
        return value
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 500:
        raise BadInput("type the value as text (at most 500 characters)")
    value = value.strip()
    if detail["type"] == "number" and value and not all(c.isdigit() or c in ".,-" for c in value):
        raise BadInput("a number field takes digits only")
    return value or None
