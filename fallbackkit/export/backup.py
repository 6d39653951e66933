"""Backup, restore and check of the kit's store.

A backup is a consistent copy made with SQLite's online backup API (safe while the review
station is writing), verified before it is renamed into place: integrity check, same kit id and
the same row count in every table. A restore verifies the file first, refuses another kit's
store unless forced, and keeps a safety copy of the current store before replacing it. A restore
also works when the kit's store is missing or damaged (that is what it is for): the damaged files
are then moved aside as they are, and the backup is written to a new file renamed into place.

Each backup carries the audit chain's head (kit_meta 'backup_audit_head', written with the backup's
own audit row just before the copy), so a backup whose last audit rows were deleted is refused; `check` compares the store with the head kept in kit.json.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from ..errors import BadInput, Conflict, IntegrityFailure, NotFound
from ..store import migrations
from ..store.audit import append_audit, audit_head, audit_key, head_problem, verify_audit
from ..store.coverage import audit_coverage
from ..store.kit import Kit, connect, loose_modes, make_private, now_iso, read_kit_meta, update_kit_meta

log = logging.getLogger(__name__)
BACKUP_HEAD_KEY = "backup_audit_head"


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                       " AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in _tables(conn)}


def _kit_id(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT value FROM kit_meta WHERE key = 'kit_id'").fetchone()
    except sqlite3.DatabaseError:
        return None
    return row[0] if row else None


def _recorded_head(conn: sqlite3.Connection) -> dict | None:
    try:
        row = conn.execute("SELECT value FROM kit_meta WHERE key = ?", [BACKUP_HEAD_KEY]).fetchone()
        return json.loads(row[0]) if row else None
    except (sqlite3.DatabaseError, ValueError):
        return None


def inspect_store(path: Path | str, secret: bytes | None = None) -> dict[str, Any]:
    """Open a store file read-only and say whether it is sound: integrity, audit chain (verified
    when SECRET, the kit's secret, is given), its recorded head, kit id, counts."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no file {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            integrity = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            kit_id = _kit_id(conn)
            counts = row_counts(conn)
            audit_rows, broken, truncated = 0, None, None
            if "audit" in counts and secret is not None:
                audit_rows, broken = verify_audit(conn, audit_key(secret))
                truncated = head_problem(conn, _recorded_head(conn), "the backup")
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise IntegrityFailure(f"{path} is not a readable kit store: {exc}",
                               hint="use another backup file") from None
    return {"path": str(path), "integrity": integrity,
            "ok": integrity == ["ok"] and broken is None and not truncated and bool(kit_id),
            "kit_id": kit_id, "counts": counts, "audit_rows": audit_rows, "audit_broken_at": broken,
            "audit_verified": secret is not None, "audit_truncated": truncated}


def _store_files(kit: Kit) -> set[Path]:
    store = kit.store_path.resolve()
    return {store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")}


def backup(kit: Kit, out: Path | str, actor: str) -> dict[str, Any]:
    out = Path(out)
    if out.is_dir():
        raise BadInput(f"{out} is a directory", hint="give a file name, e.g. kit-backup-2026-11-28.sqlite")
    if out.resolve() in _store_files(kit):
        raise BadInput(f"{out} is the kit's own store", hint="write the backup to another file, ideally another disk")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not kit.read_only:  # a read-only kit can still be copied off its disk, without this entry
        with kit.db.conn:  # record the backup in the store, so the copy carries its own entry and the head
            append_audit(kit.db.conn, actor, "kit.backup", str(out), None, {"at": now_iso()})
            kit.db.conn.execute("INSERT OR REPLACE INTO kit_meta (key, value) VALUES (?, ?)",
                                [BACKUP_HEAD_KEY, json.dumps(audit_head(kit.db.conn))])
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        target = sqlite3.connect(tmp)
        try:
            kit.db.conn.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            source_counts = row_counts(kit.db.conn)
        finally:
            target.close()
        os.chmod(tmp, 0o600)
        report = inspect_store(tmp, kit.secret)
        problems = []
        if report["integrity"] != ["ok"]:
            problems.append("integrity check: " + "; ".join(report["integrity"][:3]))
        if report["kit_id"] != kit.kit_id:
            problems.append(f"kit id {report['kit_id']} instead of {kit.kit_id}")
        if report["audit_broken_at"] is not None:
            problems.append(f"audit chain broken at row {report['audit_broken_at']}")
        if report["counts"] != source_counts:
            diff = [t for t in set(source_counts) | set(report["counts"])
                    if source_counts.get(t) != report["counts"].get(t)]
            problems.append("row counts differ in " + ", ".join(sorted(diff)))
        if problems:
            raise IntegrityFailure(f"the backup copy failed verification: {'; '.join(problems)}",
                                   hint="nothing was written; check the disk and try again")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    kit.save_audit_head()
    log.debug("backup %s verified: %s", out, report["counts"])
    return {"file": str(out), "kit_id": kit.kit_id, "tables": len(report["counts"]),
            "rows": sum(report["counts"].values()), "size": out.stat().st_size}


def restore(kit: Kit, source: Path | str, actor: str, force: bool = False) -> dict[str, Any]:
    """Replace the kit's store with a verified backup; the current store is kept as a safety copy first
    (as it is, when it is missing or damaged: kit.db is None then, see open_kit(for_restore=True))."""
    source = Path(source)
    if source.resolve() in _store_files(kit):
        raise BadInput(f"{source} is the kit's own store", hint="name a backup file made by `fallbackkit backup`")
    report = inspect_store(source, kit.secret)
    if report["integrity"] != ["ok"]:
        raise IntegrityFailure(f"{source} fails the integrity check: {'; '.join(report['integrity'][:3])}",
                               hint="use another backup file")
    if not report["kit_id"]:
        raise BadInput(f"{source} is not a fallbackkit store (no kit id)")
    foreign = report["kit_id"] != kit.kit_id
    if foreign and not force:
        raise Conflict(f"{source} belongs to kit {report['kit_id']}, this is kit {kit.kit_id}",
                       hint="restore it into that kit, or add --force to replace this kit's store anyway")
    if not foreign:  # another kit's chain is keyed by that kit's secret: it cannot be verified here
        if report["audit_broken_at"] is not None:
            raise IntegrityFailure(f"{source}: the audit chain is broken at row {report['audit_broken_at']}",
                                   hint="this file was altered after it was written; use another backup")
        if report["audit_truncated"]:
            raise IntegrityFailure(f"{source}: {report['audit_truncated']}",
                                   hint="this file was altered after it was written; use another backup")
    stamp = now_iso().replace(":", "").replace("-", "")[:15]
    if kit.db is not None:
        safety = kit.path / "backups" / f"before-restore-{stamp}.sqlite"
        safety_file = backup(kit, safety, actor)["file"]
        source_conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            source_conn.backup(kit.db.conn)  # page-level copy into the open store, under its own lock
        finally:
            source_conn.close()
    else:
        safety_file = _replace_unusable_store(kit, source, stamp)
    migrations.migrate(kit.db)  # a backup made by an older version gets the newer tables
    with kit.db.conn:
        append_audit(kit.db.conn, actor, "kit.restore", str(source),
                     {"safety_copy": safety_file, "kit_id": kit.kit_id, "store_problem": kit.store_problem},
                     {"kit_id": report["kit_id"], "forced": force})
    warning = None
    if foreign:
        # the directory now holds the other kit's store: kit.json must say so, or every later
        # command would label that kit's data with this kit's id
        update_kit_meta(kit.path, kit_id=report["kit_id"], restored_from=str(source), previous_kit_id=kit.kit_id)
        kit.kit_id = report["kit_id"]
        warning = (f"this directory is now kit {report['kit_id']}: put that kit's secret.key here, "
                   "or its printed sheets will not verify when scanned")
    kit.store_problem = None
    update_kit_meta(kit.path, audit_head=audit_head(kit.db.conn))  # the restored history is the one to hold to
    return {"restored_from": str(source), "safety_copy": safety_file, "kit_id": report["kit_id"],
            "rows": sum(report["counts"].values()), "warning": warning}


def _replace_unusable_store(kit: Kit, source: Path, stamp: str) -> str | None:
    """The store is missing or damaged: keep its files as they are, write the backup to a new file
    and rename it into place. Returns where the damaged store was kept (None when it was missing)."""
    store = kit.store_path
    kept = None
    backups = kit.path / "backups"
    backups.mkdir(mode=0o700, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        old = store.with_name(store.name + suffix)
        if old.exists():
            target = backups / f"unusable-before-restore-{stamp}.sqlite{suffix}"
            shutil.copyfile(old, target)
            make_private(target)
            kept = kept or str(target)
    tmp = store.with_name(f"{store.name}.{os.getpid()}.restoring")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        source_conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        target = sqlite3.connect(tmp)
        try:
            source_conn.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
            source_conn.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        # a write-ahead log left by the damaged store must not be replayed onto the restored one
        for suffix in ("-wal", "-shm"):
            store.with_name(store.name + suffix).unlink(missing_ok=True)
        os.replace(tmp, store)
    finally:
        tmp.unlink(missing_ok=True)
    kit.db = connect(store)
    log.info("store %s was %s: replaced by %s (kept as %s)", store, kit.store_problem, source, kept)
    return kept


def check_archive(kit: Kit) -> list[str]:
    """Every scanned original recorded as archived is there with the bytes it had (SHA-256)."""
    problems = []
    for sha, rel, first in kit.db.conn.execute(
            "SELECT sha256, archive_path, first_path FROM input_files WHERE archive_path IS NOT NULL ORDER BY sha256"):
        path = kit.path / rel
        if not path.is_file():
            problems.append(f"{rel} (from {first}) is missing")
            continue
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != sha:
            problems.append(f"{rel} (from {first}) has changed")
    return problems


def check(kit: Kit, archive: bool = False) -> dict[str, Any]:
    """Integrity check, audit-chain verification (HMAC, and its head against kit.json), audit
    coverage of every decision, role and census change (and, with archive, the scanned originals);
    raises IntegrityFailure naming what failed. Modes looser than 0700/0600 are warnings."""
    conn = kit.db.conn
    integrity = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    fk = conn.execute("PRAGMA foreign_key_check").fetchall()
    rows, broken = verify_audit(conn, audit_key(kit.secret))
    truncated = head_problem(conn, read_kit_meta(kit.path).get("audit_head"), "kit.json")
    uncovered = audit_coverage(conn) if broken is None else []
    archive_problems = check_archive(kit) if archive else []
    failed = []
    if archive_problems:
        failed.append(f"archive: {len(archive_problems)} originals missing or changed, first "
                      f"{archive_problems[0]}")
    if integrity != ["ok"]:
        failed.append("integrity check: " + "; ".join(integrity[:3]))
    if fk:
        failed.append(f"foreign keys: {len(fk)} rows point at missing rows (first in table {fk[0][0]})")
    if broken is not None:
        failed.append(f"audit chain broken at row {broken}")
    if truncated:
        failed.append(truncated)
    failed += uncovered
    loose = loose_modes(kit.path)
    warnings = []
    if loose:
        warnings.append(f"{len(loose)} files or folders of the kit can be read by other users of this computer"
                        f" (first: {loose[0]}): run `chmod -R go-rwx {kit.path}`")
    head = audit_head(conn)
    result = {"integrity": integrity, "foreign_key_problems": len(fk), "audit_rows": rows,
              "audit_broken_at": broken, "audit_head": head, "audit_problems": ([truncated] if truncated else [])
              + uncovered, "archive_checked": archive, "archive_problems": archive_problems,
              "loose_modes": loose, "warnings": warnings, "read_only": kit.read_only, "ok": not failed}
    if failed:
        raise IntegrityFailure("check failed: " + "; ".join(failed),
                               hint="restore the latest good backup (`fallbackkit restore FILE`) and tell IT")
    return result
