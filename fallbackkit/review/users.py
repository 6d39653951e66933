"""People who may use the review station: accounts, passwords, sessions, login throttling.

Passwords are hashed with scrypt and a random salt per user. Sessions live in the store (not in a
signed cookie) so that logging out, expiry and a supervisor disabling an account take effect at once.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..errors import BadInput, Conflict, NotFound
from ..store.audit import append_audit
from ..store.kit import now_iso

ROLES = ("clerk", "supervisor")
LANGS = ("en", "fr", "nl")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
MIN_PASSWORD = 8

SESSION_MAX_SECONDS = 8 * 3600      # absolute: a working day
SESSION_IDLE_SECONDS = 30 * 60      # idle: the PC left unattended
LOCK_FAILURES = 5                   # failed logins for one name ...
LOCK_WINDOW_SECONDS = 15 * 60       # ... within this window lock the name for the rest of it


def _conn(conn):
    return conn.conn if hasattr(conn, "conn") else conn


def hash_password(password: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024,
                          dklen=32).hex()


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
        raise BadInput(f"user name {name!r} is not usable",
                       hint="use letters, digits and . _ - @ (at most 64 characters)")
    return name


def add_user(conn, name: str, role: str, password: str, actor: str, lang: str = "en") -> dict[str, Any]:
    conn = _conn(conn)
    name = _check_name(name)
    if role not in ROLES:
        raise BadInput(f"role must be one of {', '.join(ROLES)}")
    if lang not in LANGS:
        raise BadInput(f"language must be one of {', '.join(LANGS)}")
    if len(password) < MIN_PASSWORD:
        raise BadInput("the password is too short", hint=f"use at least {MIN_PASSWORD} characters")
    salt = secrets.token_bytes(16)
    digest = hash_password(password, salt)
    with conn:
        if conn.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone():
            raise Conflict(f"user {name} already exists", hint="choose another name")
        conn.execute(
            "INSERT INTO users (name, role, pw_hash, salt, kdf, lang, active, created_at, created_by)"
            " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
            [name, role, digest, salt.hex(), f"scrypt:n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}", lang, now_iso(), actor])
        append_audit(conn, actor, "user.add", f"user:{name}", None, {"role": role, "lang": lang})
    return {"name": name, "role": role, "lang": lang}


def list_users(conn) -> list[dict[str, Any]]:
    conn = _conn(conn)
    rows = conn.execute("SELECT name, role, lang, active, created_at, created_by FROM users ORDER BY name").fetchall()
    return [{"name": r[0], "role": r[1], "lang": r[2], "active": bool(r[3]), "locked": is_locked(conn, r[0]),
             "created_at": r[4], "created_by": r[5]} for r in rows]


def set_lang(conn, name: str, lang: str) -> None:
    conn = _conn(conn)
    if lang not in LANGS:
        raise BadInput(f"language must be one of {', '.join(LANGS)}")
    with conn:
        before = conn.execute("SELECT lang FROM users WHERE name = ?", [name]).fetchone()
        if before is None:
            raise NotFound(f"no user {name}")
        conn.execute("UPDATE users SET lang = ? WHERE name = ?", [lang, name])
        append_audit(conn, name, "user.lang", f"user:{name}", {"lang": before[0]}, {"lang": lang})


@dataclass
class User:
    name: str
    role: str
    lang: str

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"


def _parse_kdf(kdf: str) -> dict[str, int]:
    params = dict(part.split("=") for part in kdf.split(":", 1)[1].split(","))
    return {k: int(v) for k, v in params.items()}


def is_supervisor(conn, name: str | None) -> bool:
    """Whether name is an active supervisor account of the kit."""
    row = _conn(conn).execute("SELECT role, active FROM users WHERE name = ?", [(name or "").strip()]).fetchone()
    return bool(row and row[0] == "supervisor" and row[1])


def _failures(conn, name: str, now: float) -> int:
    """Failed logins that count towards a lock: within the window, after the last unlock, and not
    made while the name was already locked (so guessing on a locked name does not extend the lock)."""
    row = conn.execute("SELECT unlocked_at FROM users WHERE name = ?", [name]).fetchone()
    since = max(now - LOCK_WINDOW_SECONDS, (row[0] or 0) if row else 0)
    return conn.execute(
        "SELECT COUNT(*) FROM login_attempts WHERE user_name = ? AND at > ? AND ok = 0 AND while_locked = 0",
        [name, since]).fetchone()[0]


def authenticate(conn, name: str, password: str, remote: str | None = None,
                 now: float | None = None) -> User | None:
    """The user when name and password match, the account is active and the name is not locked;
    None otherwise.

    Every attempt is recorded. After LOCK_FAILURES failures within LOCK_WINDOW_SECONDS the name is
    refused even with the right password until the window has passed (slows down guessing) or a
    supervisor unlocks it (`users unlock`). Attempts while locked do not make the lock longer."""
    conn = _conn(conn)
    now = time.time() if now is None else now
    name = (name or "").strip()[:64]
    failures = _failures(conn, name, now)
    row = conn.execute("SELECT name, role, lang, pw_hash, salt, kdf, active FROM users WHERE name = ?",
                       [name]).fetchone()
    ok = False
    if row is not None:
        params = _parse_kdf(row[5])
        digest = hash_password(password or "", bytes.fromhex(row[4]), params["n"], params["r"], params["p"])
        ok = hmac.compare_digest(digest, row[3]) and bool(row[6])
    else:  # same cost whether or not the name exists
        hash_password(password or "", b"0" * 16)
    locked = failures >= LOCK_FAILURES
    with conn:
        conn.execute("INSERT INTO login_attempts (user_name, at, ok, remote, while_locked) VALUES (?, ?, ?, ?, ?)",
                     [name, now, int(ok and not locked), remote, int(locked)])
        if ok and not locked:
            append_audit(conn, name, "user.login", f"user:{name}", None, {"remote": remote})
    if ok and not locked:
        return User(row[0], row[1], row[2])
    return None


def is_locked(conn, name: str, now: float | None = None) -> bool:
    conn = _conn(conn)
    now = time.time() if now is None else now
    return _failures(conn, name, now) >= LOCK_FAILURES


def _existing(conn, name: str) -> tuple:
    row = conn.execute("SELECT name, role, active FROM users WHERE name = ?", [(name or "").strip()]).fetchone()
    if row is None:
        raise NotFound(f"no user {name}", hint="see `fallbackkit users list`")
    return row


def unlock_user(conn, name: str, actor: str, now: float | None = None) -> bool:
    """Lift a lock at once (a supervisor checked who is at the keyboard). Returns whether it was locked."""
    conn = _conn(conn)
    now = time.time() if now is None else now
    name = _existing(conn, name)[0]
    was = is_locked(conn, name, now)
    with conn:
        conn.execute("UPDATE users SET unlocked_at = ? WHERE name = ?", [now, name])
        append_audit(conn, actor, "user.unlock", f"user:{name}", {"locked": was}, {"locked": False})
    return was


def disable_user(conn, name: str, actor: str) -> int:
    """The account can no longer log in and its open sessions end now. Returns the sessions ended."""
    conn = _conn(conn)
    name, _role, active = _existing(conn, name)
    with conn:
        conn.execute("UPDATE users SET active = 0 WHERE name = ?", [name])
        ended = conn.execute("UPDATE review_sessions SET ended_at = ?, end_reason = 'disabled'"
                             " WHERE user_name = ? AND ended_at IS NULL", [time.time(), name]).rowcount
        append_audit(conn, actor, "user.disable", f"user:{name}", {"active": bool(active)},
                     {"active": False, "sessions_ended": ended})
    return ended


def enable_user(conn, name: str, actor: str) -> None:
    conn = _conn(conn)
    name, _role, active = _existing(conn, name)
    with conn:
        conn.execute("UPDATE users SET active = 1 WHERE name = ?", [name])
        append_audit(conn, actor, "user.enable", f"user:{name}", {"active": bool(active)}, {"active": True})


def set_password(conn, name: str, password: str, actor: str) -> int:
    """A new password (new salt); the user's open sessions end. Returns the sessions ended."""
    conn = _conn(conn)
    name = _existing(conn, name)[0]
    if len(password) < MIN_PASSWORD:
        raise BadInput("the password is too short", hint=f"use at least {MIN_PASSWORD} characters")
    salt = secrets.token_bytes(16)
    digest = hash_password(password, salt)
    with conn:
        conn.execute("UPDATE users SET pw_hash = ?, salt = ?, kdf = ? WHERE name = ?",
                     [digest, salt.hex(), f"scrypt:n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}", name])
        ended = conn.execute("UPDATE review_sessions SET ended_at = ?, end_reason = 'password'"
                             " WHERE user_name = ? AND ended_at IS NULL", [time.time(), name]).rowcount
        append_audit(conn, actor, "user.passwd", f"user:{name}", None, {"sessions_ended": ended})
    return ended


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def start_session(conn, user: User, now: float | None = None) -> tuple[str, str]:
    """A new session for user: (cookie token, CSRF token)."""
    conn = _conn(conn)
    now = time.time() if now is None else now
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with conn:
        conn.execute("INSERT INTO review_sessions (token_hash, user_name, csrf, created_at, last_seen)"
                     " VALUES (?, ?, ?, ?, ?)", [_token_hash(token), user.name, csrf, now, now])
    return token, csrf


@dataclass
class Session:
    token_hash: str
    user: User
    csrf: str
    started_at: float = 0.0   # epoch seconds: a person may undo their own decisions made since


def load_session(conn, token: str | None, max_age: float = SESSION_MAX_SECONDS,
                 idle: float = SESSION_IDLE_SECONDS, now: float | None = None) -> Session | None:
    """The live session for a cookie token, or None (unknown, ended, expired, or user disabled)."""
    if not token:
        return None
    conn = _conn(conn)
    now = time.time() if now is None else now
    th = _token_hash(token)
    row = conn.execute(
        "SELECT s.user_name, s.csrf, s.created_at, s.last_seen, s.ended_at, u.role, u.lang, u.active"
        " FROM review_sessions s JOIN users u ON u.name = s.user_name WHERE s.token_hash = ?", [th]).fetchone()
    if row is None or row[4] is not None:
        return None
    reason = None
    if not row[7]:
        reason = "disabled"
    elif now - row[2] > max_age:
        reason = "expired"
    elif now - row[3] > idle:
        reason = "idle"
    if reason:
        with conn:
            conn.execute("UPDATE review_sessions SET ended_at = ?, end_reason = ? WHERE token_hash = ?",
                         [now, reason, th])
        return None
    if now - row[3] > 30:  # one write per half minute at most, not one per request
        with conn:
            conn.execute("UPDATE review_sessions SET last_seen = ? WHERE token_hash = ?", [now, th])
    return Session(th, User(row[0], row[5], row[6]), row[1], row[2])


def end_session(conn, token_hash: str, reason: str = "logout") -> None:
    conn = _conn(conn)
    with conn:
        conn.execute("UPDATE review_sessions SET ended_at = ?, end_reason = ? WHERE token_hash = ? AND ended_at IS NULL",
                     [time.time(), reason, token_hash])
