"""Export records: what each export wrote and sent, per item (migration m0045).

The record is what lets a later export be honest about the earlier ones: `--since LAST` compares an
item's content with what was last sent, and a resource sent before that the kit no longer stands
behind (a value withdrawn on paper, a decision undone) is sent again as entered-in-error.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from .audit import append_audit
from .kit import now_iso
from .transactions import atomic


def content_hash(resources: Iterable[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(list(resources), sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:  # a chunk at a time: an export at 100,000 captures is gigabytes
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return {"name": path.name, "sha256": digest.hexdigest(), "size": size}


def record_export_if_writable(kit, *args, **kwargs) -> int | None:
    """The record, unless the kit is read-only (an export from a kit on a read-only medium still
    works, as documented; it is then not remembered, and the caller says so)."""
    if kit.read_only:
        return None
    return record_export(kit.db.conn, *args, **kwargs)


def record_export(conn, actor: str, fmt: str, files: list[Path], resources: Counter | dict[str, int],
                  items: Iterable[dict[str, Any]] = (), ward: str | None = None, since: str | None = None) -> int:
    """Write one export record (and its audit row) in one transaction; returns its id.
    items: [{item_id, patient_mrn, status, content_sha256, resources}]."""
    listed = [file_entry(p) for p in files]
    digest = hashlib.sha256(json.dumps([[f["name"], f["sha256"]] for f in listed]).encode()).hexdigest()
    at = now_iso()
    count = [0]

    def rows(export_id: int) -> Iterator[list[Any]]:
        # streamed (an export of 300,000 items need not hold their rows); an item's resources may
        # come as JSON text already (`resources_json`, an export that spooled them)
        for i in items:
            count[0] += 1
            text = i.get("resources_json")
            yield [export_id, i["item_id"], i.get("patient_mrn"), i["status"], i["content_sha256"],
                   text if text is not None else json.dumps(i["resources"], ensure_ascii=False)]
    with atomic(conn) as conn:
        cur = conn.execute(
            "INSERT INTO exports (at, actor, format, ward, since, files, resources, sha256, items)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [at, actor, fmt, ward, since, json.dumps(listed), json.dumps(dict(sorted(resources.items()))), digest, 0])
        export_id = cur.lastrowid
        conn.executemany(
            "INSERT INTO export_items (export_id, item_id, patient_mrn, status, content_sha256, resources)"
            " VALUES (?, ?, ?, ?, ?, ?)", rows(export_id))
        conn.execute("UPDATE exports SET items = ? WHERE export_id = ?", [count[0], export_id])
        append_audit(conn, actor, f"export.{fmt}", f"export:{export_id}", None,
                     {"at": at, "files": [f["name"] for f in listed], "sha256": digest, "items": count[0],
                      "resources": dict(resources), "ward": ward, "since": since})
    return export_id


def last_sent(conn) -> dict[str, dict[str, Any]]:
    """Per item: its latest export row (status, content hash, the resources as sent)."""
    out: dict[str, dict[str, Any]] = {}
    try:
        rows = conn.execute(
            "SELECT i.export_id, i.item_id, i.patient_mrn, i.status, i.content_sha256, i.resources, e.at"
            " FROM export_items i JOIN exports e ON e.export_id = i.export_id ORDER BY i.export_id").fetchall()
    except sqlite3.OperationalError:  # a read-only kit made before m0045: it has exported nothing we know of
        return out
    for export_id, item_id, mrn, status, sha, resources, at in rows:
        out[item_id] = {"export_id": export_id, "patient_mrn": mrn, "status": status, "content_sha256": sha,
                        "resources": json.loads(resources), "at": at}
    return out


_SENT_SQL = ("SELECT i.export_id, i.item_id, i.patient_mrn, i.status, i.content_sha256, i.resources, e.at"
             " FROM export_items i JOIN exports e ON e.export_id = i.export_id")


def last_sent_of_forms(conn, form_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """`last_sent` for the items of these forms only (item ids `FORM:...`), by index: an export that
    goes a batch of forms at a time reads what was sent for that batch, not for the whole kit."""
    out: dict[str, dict[str, Any]] = {}
    try:
        for fid in form_ids:
            _add_sent(out, conn.execute(_SENT_SQL + " WHERE i.item_id >= ? AND i.item_id < ? ORDER BY i.export_id",
                                        [f"{fid}:", f"{fid};"]))  # ';' follows ':'
    except sqlite3.OperationalError:  # a read-only kit made before m0045
        return {}
    return out


def last_sent_item(conn, item_id: str) -> dict[str, Any] | None:
    """`last_sent` of one item id (e.g. `patient:MRN`), or None."""
    out: dict[str, dict[str, Any]] = {}
    try:
        _add_sent(out, conn.execute(_SENT_SQL + " WHERE i.item_id = ? ORDER BY i.export_id", [item_id]))
    except sqlite3.OperationalError:  # a read-only kit made before m0045
        return None
    return out.get(item_id)


def _add_sent(out: dict[str, dict[str, Any]], rows: Iterable[Any]) -> None:
    for export_id, item_id, mrn, status, sha, resources, at in rows:
        out[item_id] = {"export_id": export_id, "patient_mrn": mrn, "status": status, "content_sha256": sha,
                        "resources": json.loads(resources), "at": at}


def exported_at(conn) -> dict[str, str]:
    """item id -> when it was last sent, for items whose latest record is a send (not a withdrawal).
    Reads no resource JSON: the worklist asks this on every build."""
    latest: dict[str, tuple[str, str]] = {}
    try:
        rows = conn.execute("SELECT i.item_id, i.status, e.at FROM export_items i JOIN exports e"
                            " ON e.export_id = i.export_id ORDER BY i.export_id").fetchall()
    except sqlite3.OperationalError:  # a read-only kit made before m0045
        return {}
    for item, status, at in rows:
        latest[item] = (status, at)
    return {item: at for item, (status, at) in latest.items() if status == "sent"}


def exports(conn) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT export_id, at, actor, format, ward, since, files, resources, sha256, items"
                        " FROM exports ORDER BY export_id").fetchall()
    return [{"export_id": r[0], "at": r[1], "actor": r[2], "format": r[3], "ward": r[4], "since": r[5],
             "files": json.loads(r[6]), "resources": json.loads(r[7]), "sha256": r[8], "items": r[9]}
            for r in rows]
