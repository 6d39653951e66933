"""A kit is a directory: the SQLite store, the kit secret, the archive of scanned originals.

    KIT/kit.json         kit id and creation time
    KIT/secret.key       random HMAC key for sheet codes (mode 0600)
    KIT/store.sqlite     everything else
    KIT/form_templates/  the templates this kit prints (copied at init, so a kit is self-contained)
    KIT/archive/         scanned input files, content-addressed (scan stage)
"""
from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from .. import ids
from ..errors import KitExists, KitNotFound
from . import migrations
from .audit import append_audit

SHIPPED_TEMPLATES = Path(__file__).resolve().parents[2] / "form_templates"
POOL_PREFIXES = {"mrn": "DTM", "encounter": "DTE", "accession": "DTA"}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def default_actor() -> str:
    return os.environ.get("FALLBACKKIT_USER") or getpass.getuser()


def connect(path: Path) -> sqlite_utils.Database:
    db = sqlite_utils.Database(path)
    db.conn.execute("PRAGMA journal_mode=WAL")
    db.conn.execute("PRAGMA synchronous=NORMAL")
    db.conn.execute("PRAGMA foreign_keys=ON")
    db.conn.execute("PRAGMA busy_timeout=30000")
    return db


@dataclass
class Kit:
    path: Path
    kit_id: str
    secret: bytes
    db: sqlite_utils.Database = field(repr=False)

    @property
    def templates_dir(self) -> Path:
        return self.path / "form_templates"

    @property
    def archive_dir(self) -> Path:
        return self.path / "archive"

    @property
    def store_path(self) -> Path:
        return self.path / "store.sqlite"

    def close(self) -> None:
        self.db.conn.close()


def init_kit(path: Path | str, actor: str | None = None,
             templates_from: Path | None = None) -> Kit:
    path = Path(path)
    if (path / "kit.json").exists() or (path / "store.sqlite").exists():
        raise KitExists(f"a kit already exists at {path}",
                        hint="use it as it is, or choose another directory with --kit")
    path.mkdir(parents=True, exist_ok=True)
    kit_id = ids.new_kit_id()
    secret_path = path / "secret.key"
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    os.chmod(secret_path, 0o600)
    source = Path(templates_from) if templates_from else SHIPPED_TEMPLATES
    if source.is_dir():
        shutil.copytree(source, path / "form_templates", dirs_exist_ok=False)
    (path / "archive").mkdir(exist_ok=True)
    db = connect(path / "store.sqlite")
    migrations.migrate(db)
    created = now_iso()
    with db.conn:
        db["kit_meta"].insert_all([{"key": "kit_id", "value": kit_id},
                                   {"key": "created_at", "value": created}])
        db["id_pools"].insert_all(
            [{"kind": k, "prefix": p, "next_value": 1} for k, p in POOL_PREFIXES.items()])
        append_audit(db, actor or default_actor(), "kit.init", kit_id, None,
                     {"kit_id": kit_id, "path": str(path)})
    tmp = path / "kit.json.tmp"
    tmp.write_text(json.dumps({"kit_id": kit_id, "created_at": created, "format": 1}, indent=2))
    os.replace(tmp, path / "kit.json")
    return Kit(path, kit_id, _read_secret(secret_path), db)


def _read_secret(path: Path) -> bytes:
    return bytes.fromhex(path.read_text().strip())


def open_kit(path: Path | str) -> Kit:
    path = Path(path)
    meta = path / "kit.json"
    if not meta.exists():
        raise KitNotFound(f"no kit at {path}",
                          hint="run `fallbackkit init` there, or point --kit / FALLBACKKIT_KIT at your kit")
    kit_id = json.loads(meta.read_text())["kit_id"]
    db = connect(path / "store.sqlite")
    migrations.migrate(db)  # a kit made by an older version gets the newer tables
    return Kit(path, kit_id, _read_secret(path / "secret.key"), db)
