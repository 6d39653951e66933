"""What every screen of the station shares: the kit of the request, flashes, redirects back,
the supervisor check, the reconcile cache, and how values and ids are read and shown.

The views (review/views/) hold no domain rules: they read the request, call the stage that owns
the rule (review/queue.py, reconcile/, templates/) and render."""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any, Callable

from flask import abort, current_app, g, redirect, request

from ..errors import BadInput
from .i18n import t

SQLITE_INT_MAX = 2 ** 63 - 1

# Tables whose newest row id changes whenever anything the dashboard counts changes (scans write
# captures, people write reviews, marks and links; everything is also audited).
CHANGE_STAMP = (("captures", "capture_id"), ("reviews", "review_id"), ("worklist_marks", "id"),
                ("identity_links", "id"), ("quarantine_assignments", "id"), ("audit", "id"))


def change_stamp(conn) -> tuple:
    return tuple(conn.execute(f"SELECT MAX({col}) FROM {table}").fetchone()[0] for table, col in CHANGE_STAMP)


class StoreConnections:
    """The station's store connections: one per server thread, opened at its first request and
    kept for the next ones. Opening costs a few PRAGMAs and the audit key; closing the last open
    connection of a WAL store checkpoints the whole log (10-25 ms at 100,000 captures). A kept
    connection is always handed back outside any transaction (a request's unfinished one is rolled
    back), so each request sees the store as committed when it starts reading."""

    def __init__(self, open_connection: Callable[[], Any]):
        self._open = open_connection
        self._local = threading.local()

    def get(self) -> Any:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._open()
        return db

    def done(self, db: Any) -> None:
        try:
            if db.conn.in_transaction:
                db.conn.rollback()
        except Exception:  # a broken connection is not kept
            self.discard(db)
            raise

    def discard(self, db: Any) -> None:
        if getattr(self._local, "db", None) is db:
            self._local.db = None
        db.conn.close()


@dataclass
class StationState:
    """Per app: messages waiting for the next page of a session, and computed views of the store."""
    flashes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    cache: dict[str, tuple[tuple, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def state() -> StationState:
    return current_app.extensions["fallbackkit.station"]


def kit_path() -> Path:
    return current_app.config["KIT_PATH"]


def cached(name: str, compute: Callable[[], Any]) -> Any:
    """A full reconcile reads every reading of the kit: it is computed again only when the store changed."""
    st = state()
    stamp = change_stamp(g.kit.db.conn)
    with st.lock:
        hit = st.cache.get(name)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    value = compute()
    with st.lock:
        st.cache[name] = (stamp, value)
    return value


def pager_pages(page: int, pages: int, around: int = 3) -> list[int | None]:
    """Page numbers to link: the first, the last and those around the current one (None: a gap)."""
    shown = sorted({1, pages, *range(max(1, page - around), min(pages, page + around) + 1)})
    out: list[int | None] = []
    for n in shown:
        if out and out[-1] is not None and n > out[-1] + 1:
            out.append(None)
        out.append(n)
    return out


def flash(kind: str, message: str) -> None:
    state().flashes.setdefault(g.session.token_hash, []).append((kind, message))


def pop_flashes() -> list[tuple[str, str]]:
    return state().flashes.pop(g.session.token_hash, []) if g.get("session") else []


def back(default: str) -> Any:
    target = request.form.get("next") or default
    if not local_path(target):
        target = default
    return redirect(target)


def supervisor_only(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not g.user.is_supervisor:
            abort(403, description=t(g.lang, "supervisor_only"))
        return view(*args, **kwargs)
    return wrapper


def filters() -> dict[str, str]:
    """The queue's filters from the query string (ward, template, reason)."""
    return {k: request.args[k] for k in ("ward", "template", "reason") if request.args.get(k)}


def session_start() -> dt.datetime:
    return dt.datetime.fromtimestamp(int(g.session.started_at), dt.timezone.utc)  # reviews keep whole seconds


def id_arg(source: Any, name: str) -> int | None:
    """An optional id from a query or form: digits that fit SQLite, else 400."""
    text = source.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) > SQLITE_INT_MAX:
        raise BadInput(f"{name} must be an id (digits)")
    return int(text)


def json_id(value: Any) -> bool:
    """True for an id sent in a JSON body: an int (not a bool) that fits SQLite."""
    return type(value) is int and 0 < value <= SQLITE_INT_MAX


def local_path(target: str) -> bool:
    """Only paths on this station may be redirected to (no //host, no /\\host, no scheme)."""
    return target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target \
        and all(ord(ch) > 31 for ch in target)


def option_text(value: Any, label: str | None) -> str | None:
    """An option as printed on the form, with its stored value when the print is only a letter."""
    if not isinstance(value, str) or not label:
        return None
    return label if label.casefold() == value.casefold() else f"{value.replace('_', ' ')} ({label})"


def fmt(value: Any) -> str:
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
