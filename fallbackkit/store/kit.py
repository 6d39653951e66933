"""A kit is a directory: the SQLite store, the kit secret, the archive of scanned originals.

    KIT/kit.json         kit id and creation time
    KIT/secret.key       random HMAC key for sheet codes (mode 0600)
    KIT/store.sqlite     everything else
    KIT/form_templates/  the templates this kit prints (copied at init, so a kit is self-contained)
    KIT/archive/         scanned input files, content-addressed (scan stage)

Only `init` creates a store. Every other command opens an existing one and refuses (IntegrityFailure,
exit 7) a store that is missing, empty, not a SQLite file, truncated or of another kit, so that a
lost store is never silently replaced by an empty one. A kit on a read-only disk or directory is
opened read-only (SQLite `mode=ro`, or `immutable=1` when no write-ahead log is pending), so the
read commands still work. The kit directory is kept private: 0700, the store files 0600.
"""
from __future__ import annotations

import datetime as _dt
import getpass
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from .. import ids
from ..errors import (DiskFull, FallbackkitError, IntegrityFailure, KitExists, KitNotFound, KitReadOnly,
                      StorageFailure)
from ..files import pid_alive as _pid_alive
from . import migrations
from .audit import append_audit, audit_head, head_problem, register_audit_key
from .transactions import StoreConnection, write_lock

log = logging.getLogger(__name__)

SHIPPED_TEMPLATES = Path(__file__).resolve().parents[2] / "form_templates"
POOL_PREFIXES = {"mrn": "DTM", "encounter": "DTE", "accession": "DTA"}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def default_actor() -> str:
    return os.environ.get("FALLBACKKIT_USER") or getpass.getuser()


SQLITE_MAGIC = b"SQLite format 3\x00"
RESTORE_HINT = "restore it from a backup: `fallbackkit restore BACKUP_FILE` (then `fallbackkit check`)"
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
HEAD_SAVE_INTERVAL = 1.0  # seconds between two audit-head writes to kit.json by one process
_HEAD_SAVED: dict[str, float] = {}
STORE_SUFFIXES = ("", "-wal", "-shm")


def store_problem(store: Path) -> str | None:
    """Why STORE cannot be a kit store, judged from the file and its 100-byte header before SQLite
    touches it (SQLite would quietly create a missing or empty file, and a damaged one fails later,
    half-way through a command). None when the file looks sound."""
    if not store.exists():
        return "is missing"
    if not store.is_file():
        return "is not a file"
    size = store.stat().st_size
    if size == 0:
        return "is empty"
    try:
        with open(store, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        return "is not a SQLite database (overwritten or damaged)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1) or header[21:24] != b"\x40\x20\x20":
        return "has a damaged header"
    wal = store.with_name(store.name + "-wal")
    pending_wal = wal.exists() and wal.stat().st_size > 0
    # the header's page count is trustworthy when its change counter matches 'version-valid-for';
    # with a write-ahead log pending, a checkpoint may have been cut short (the log repairs it)
    pages = int.from_bytes(header[28:32], "big")
    if not pending_wal and (size % page_size or (header[24:28] == header[92:96] and size < pages * page_size)):
        return "is truncated"
    return None


def _writable(path: Path) -> bool:
    """The kit directory and its store can be written (False on a read-only mount or directory)."""
    store = path / "store.sqlite"
    return os.access(path, os.W_OK) and (not store.exists() or os.access(store, os.W_OK))


def connect(path: Path, *, read_only: bool = False) -> sqlite_utils.Database:
    """Open the store at PATH. The kit's secret (next to it) keys the audit chain's HMAC."""
    if read_only:
        wal = path.with_name(path.name + "-wal")
        # SQLite needs the -shm file to read a write-ahead log; without a pending log the file is
        # complete and can be opened as immutable (nothing to lock, nothing to create)
        mode = "mode=ro" if wal.exists() and wal.stat().st_size > 0 else "mode=ro&immutable=1"
        conn = sqlite3.connect(f"file:{path.resolve()}?{mode}", uri=True)
        db = sqlite_utils.Database(conn)
    else:
        conn = sqlite3.connect(str(path), factory=StoreConnection)
        conn.write_lock = write_lock(path)
        db = sqlite_utils.Database(conn)
        db.conn.execute("PRAGMA journal_mode=WAL")
        db.conn.execute("PRAGMA synchronous=NORMAL")
    db.conn.execute("PRAGMA foreign_keys=ON")
    db.conn.execute("PRAGMA busy_timeout=30000")
    secret_path = path.with_name("secret.key")
    if secret_path.is_file():
        register_audit_key(db.conn, _read_secret(secret_path))
    return db


def make_private(path: Path) -> None:
    """Directory 0700, file 0600, whatever the umask (patient data: nobody else on the PC reads it)."""
    try:
        os.chmod(path, PRIVATE_DIR if path.is_dir() else PRIVATE_FILE)
    except FileNotFoundError:
        pass
    except PermissionError:  # not ours (a shared folder): `check` warns about its mode
        log.debug("cannot change the mode of %s", path)


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    make_private(path)
    return path


def loose_modes(kit_path: Path) -> list[str]:
    """Files and folders of the kit that others on this computer can read or enter."""
    found = []
    for p in [kit_path, *sorted(kit_path.rglob("*"))]:
        try:
            mode = p.lstat().st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            found.append(f"{p.relative_to(kit_path.parent) if p != kit_path else p} is {mode:o}")
    return found


_TMP_PID = re.compile(r"\.(\d+)\.tmp$")


def clean_stale_tmp(kit_path: Path) -> list[Path]:
    """Remove the temporary files a command left behind when it died or the disk filled up (files
    are written as NAME.PID.tmp and renamed): only those of processes that no longer run."""
    removed = []
    for folder in ("archive", "pages", "crops"):
        root = kit_path / folder
        if not root.is_dir():
            continue
        for tmp in root.rglob("*.tmp"):
            m = _TMP_PID.search(tmp.name)
            if m and int(m.group(1)) != os.getpid() and _pid_alive(int(m.group(1))):
                continue
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        log.info("removed %d temporary files left by an interrupted command", len(removed))
    return removed


@dataclass
class Kit:
    path: Path
    kit_id: str
    secret: bytes
    db: sqlite_utils.Database | None = field(repr=False)
    read_only: bool = False
    #: why the store cannot be used (only set by open_kit(..., for_restore=True)); db is None then
    store_problem: str | None = None
    #: id of the last audit row when open_kit opened the store: a command that added none leaves kit.json alone
    audit_at_open: int | None = None

    @property
    def templates_dir(self) -> Path:
        return self.path / "form_templates"

    @property
    def archive_dir(self) -> Path:
        return self.path / "archive"

    @property
    def store_path(self) -> Path:
        return self.path / "store.sqlite"

    def save_audit_head(self, *, force: bool = True) -> None:
        """Record the audit chain's head in kit.json (what is committed now), so that deleting the
        last audit rows shows in `check`. Skipped on a read-only kit. Without force (a connection
        per request in the review station) at most once a second per kit: the head may lag, which
        is safe (it is a lower bound), and a command run later records it."""
        if self.db is None or self.read_only or self.db.conn.in_transaction:
            return
        key = str(self.path)
        if not force and time.monotonic() - _HEAD_SAVED.get(key, -1e9) < HEAD_SAVE_INTERVAL:
            return
        _HEAD_SAVED[key] = time.monotonic()
        try:
            recorded = read_kit_meta(self.path).get("audit_head")
            last = self.db.conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            if recorded and last and [recorded.get("last_id"), recorded.get("last_hash")] == list(last):
                return  # nothing new (the common case: one cheap query, no count)
            if self.audit_at_open is not None and (last[0] if last else 0) == self.audit_at_open:
                return  # this command recorded nothing: it writes nothing (a dry run stays a dry run)
            head = audit_head(self.db.conn)
            # only ever forward: a store that lost rows must not erase the evidence (restore resets it)
            if recorded != head and head_problem(self.db.conn, recorded, "kit.json", thorough=False) is None:
                update_kit_meta(self.path, audit_head=head)
        except (OSError, sqlite3.Error, FallbackkitError) as exc:  # a full disk must not hide the real error
            log.info("could not record the audit head in kit.json: %s", exc)

    def close(self, *, save_head: bool | None = None) -> None:
        """Close the store. The audit head goes to kit.json (see save_audit_head); save_head=True
        records it now whatever the interval (the CLI, at the end of a command)."""
        if self.db is not None:
            self.save_audit_head(force=bool(save_head))
            self.db.conn.close()


def init_kit(path: Path | str, actor: str | None = None,
             templates_from: Path | None = None, tz: str | None = None) -> Kit:
    """A new kit at PATH. tz: the time zone of the times written on paper (default: this
    computer's), kept as the kit setting 'tz' (store/settings.py)."""
    from .settings import SETTINGS, check_zone, system_zone
    path = Path(path)
    zone = check_zone(tz) if tz else system_zone()
    if (path / "kit.json").exists() or (path / "store.sqlite").exists():
        raise KitExists(f"a kit already exists at {path}",
                        hint="use it as it is, or choose another directory with --kit")
    private_dir(path)
    kit_id = ids.new_kit_id()
    secret_path = path / "secret.key"
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    os.chmod(secret_path, 0o600)
    source = Path(templates_from) if templates_from else SHIPPED_TEMPLATES
    if source.is_dir():
        shutil.copytree(source, path / "form_templates", dirs_exist_ok=False)
    for folder in ("archive", "pages", "crops"):
        private_dir(path / folder)
    store = path / "store.sqlite"
    os.close(os.open(store, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    db = connect(store)
    migrations.migrate(db)
    created = now_iso()
    with db.conn:
        db["kit_meta"].insert_all([{"key": "kit_id", "value": kit_id},
                                   {"key": "created_at", "value": created},
                                   {"key": SETTINGS["tz"].key, "value": zone}])
        db["id_pools"].insert_all(
            [{"kind": k, "prefix": p, "next_value": 1} for k, p in POOL_PREFIXES.items()])
        append_audit(db, actor or default_actor(), "kit.init", kit_id, None,
                     {"kit_id": kit_id, "path": str(path), "tz": zone})
    tmp = path / "kit.json.tmp"
    tmp.write_text(json.dumps({"kit_id": kit_id, "created_at": created, "format": 1,
                               "audit_head": audit_head(db.conn)}, indent=2))
    os.replace(tmp, path / "kit.json")
    for p in [path, *path.rglob("*")]:
        make_private(p)
    return Kit(path, kit_id, _read_secret(secret_path), db)


def _read_secret(path: Path) -> bytes:
    return bytes.fromhex(path.read_text().strip())


def read_kit_meta(path: Path) -> dict:
    meta = path / "kit.json"
    if not meta.exists():
        raise KitNotFound(f"no kit at {path}",
                          hint="run `fallbackkit init` there, or point --kit / FALLBACKKIT_KIT at your kit")
    try:
        data = json.loads(meta.read_text())
        data["kit_id"] = str(data["kit_id"])
    except (ValueError, KeyError, TypeError, OSError):
        raise IntegrityFailure(f"{meta} is damaged (no kit id)",
                               hint="restore it from the backup of the kit directory") from None
    return data


def update_kit_meta(path: Path, **updates) -> dict:
    """Change fields of kit.json atomically (temp file, then rename)."""
    meta = read_kit_meta(path)
    meta.update(updates)
    tmp = path / f"kit.json.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(meta, indent=2))
        os.replace(tmp, path / "kit.json")
    finally:
        tmp.unlink(missing_ok=True)
    return meta


def open_kit(path: Path | str, *, for_restore: bool = False) -> Kit:
    """Open an existing kit. Refuses a store that is missing, damaged or another kit's (exit 7),
    unless for_restore: then the Kit comes back with db None and store_problem saying why, so that
    `restore` can put a backup in place."""
    path = Path(path)
    kit_id = read_kit_meta(path)["kit_id"]
    try:
        secret = _read_secret(path / "secret.key")
    except (OSError, ValueError):
        raise IntegrityFailure(f"{path / 'secret.key'} is missing or damaged: sheets cannot be verified nor the"
                               " audit chain checked", hint="restore secret.key from the backup of the kit directory") from None
    store = path / "store.sqlite"
    writable = _writable(path)
    problem = store_problem(store)
    db = None
    if problem is None:
        db, problem = _open_store(store, kit_id, writable)
    if problem is not None:
        if for_restore:
            log.debug("store %s %s: opened for restore only", store, problem)
            return Kit(path, kit_id, secret, None, read_only=not writable, store_problem=problem)
        raise IntegrityFailure(f"{store} {problem}: nothing was changed", hint=RESTORE_HINT)
    if writable:
        for p in (path, *(store.with_name(store.name + s) for s in STORE_SUFFIXES)):
            make_private(p)
        clean_stale_tmp(path)
    else:
        log.info("kit %s is read-only: opened the store read-only", path)
    log.debug("opened kit %s at %s (%s)", kit_id, path, "read-only" if not writable else "read-write")
    last = db.conn.execute("SELECT MAX(id) FROM audit").fetchone()[0] or 0
    return Kit(path, kit_id, secret, db, read_only=not writable, audit_at_open=last)


def _open_store(store: Path, kit_id: str, writable: bool) -> tuple[sqlite_utils.Database | None, str | None]:
    """Connect, check the kit id, apply pending migrations. Returns (db, None) or (None, problem)."""
    try:
        db = connect(store, read_only=not writable)
    except sqlite3.OperationalError as exc:
        if not writable:
            raise KitReadOnly(f"the kit at {store.parent} is read-only and its store cannot be opened read-only"
                              f" ({exc})", hint="copy the kit directory to a writable disk") from None
        raise
    try:
        row = db.conn.execute("SELECT value FROM kit_meta WHERE key = 'kit_id'").fetchone()
    except sqlite3.DatabaseError as exc:
        db.conn.close()
        msg = str(exc)
        return None, ("is not a kit store (no kit id)" if "no such table" in msg
                      else f"is damaged ({msg})")
    if row is None or row[0] != kit_id:
        db.conn.close()
        found = f"kit {row[0]}" if row else "no kit id"
        return None, f"belongs to {found}, not to kit {kit_id} of kit.json"
    try:
        if writable:
            migrations.migrate(db)  # a kit made by an older version gets the newer tables
        elif migrations.pending(db):
            raise KitReadOnly(f"the kit at {store.parent} is read-only and its store needs an upgrade",
                              hint="copy the kit directory to a writable disk and run the command there")
    except BaseException:
        db.conn.close()
        raise
    return db, None


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    dev = path.stat().st_dev
    while path.parent != path and path.parent.stat().st_dev == dev:
        path = path.parent
    return path


def describe_disk(path: Path) -> str:
    """'the disk mounted at /x (N KiB free)' for messages about the disk holding PATH."""
    try:
        mount = _mount_point(path)
        free = shutil.disk_usage(mount).free
    except OSError:
        return f"the disk holding {path}"
    return f"the disk mounted at {mount} ({free // 1024} KiB free)"


def storage_error(exc: BaseException, kit_dir: Path | None) -> FallbackkitError | None:
    """The one-line error for a storage failure met half-way through a command (disk full, read-only
    kit, damaged store), or None when EXC is not one. SQLite rolls the open transaction back, so what
    earlier transactions committed is kept and the store stays sound."""
    message = str(exc)
    where = Path(getattr(exc, "filename", None) or kit_dir or ".")
    store = (kit_dir / "store.sqlite") if kit_dir else Path("store.sqlite")
    full = (isinstance(exc, OSError) and exc.errno in (28, 122)) or (  # ENOSPC, EDQUOT
        isinstance(exc, sqlite3.OperationalError) and "full" in message)
    io_error = isinstance(exc, sqlite3.OperationalError) and "disk I/O error" in message
    if io_error and not full:  # SQLite says I/O error when its shared-memory file cannot grow on a full disk
        try:
            full = shutil.disk_usage(_mount_point(where)).free < (1 << 20)
        except OSError:
            pass
        if not full:
            return StorageFailure(f"{describe_disk(where)} gave a disk I/O error: this step was not saved; "
                                  "everything saved before it is kept",
                                  hint="check the disk (dmesg, SMART), then `fallbackkit check`")
    if full:
        return DiskFull(f"{describe_disk(where)} is full: this step was not saved; "
                        "everything saved before it is kept and the store is sound",
                        hint="free some space (or move the kit to a larger disk) and run the command again"
                             " (a scan skips the files it already stored)")
    read_only = (isinstance(exc, OSError) and exc.errno in (30, 13)) or (  # EROFS, EACCES
        isinstance(exc, sqlite3.OperationalError) and "readonly" in message)
    if read_only:
        what = where if isinstance(exc, OSError) else (kit_dir or where)
        return KitReadOnly(f"{what} is read-only: this command needs to write there; nothing was changed",
                           hint="read commands (check, readings, reconcile, export --out elsewhere) still work;"
                                " copy the kit to a writable disk to change it")
    # only SQLite's own corruption codes: a constraint violation (IntegrityError) is a bug, not damage,
    # and must not send anyone to restore a backup
    corrupt = isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in message or "not a database" in message or "database corruption" in message)
    if corrupt:
        return IntegrityFailure(f"{store} is damaged ({message})", hint=RESTORE_HINT)
    return None


def files_done(kit: Kit) -> int:
    """Input files read and stored completely (for saying what a failed scan kept)."""
    return kit.db.conn.execute("SELECT count(*) FROM input_files WHERE status = 'done'").fetchone()[0]
