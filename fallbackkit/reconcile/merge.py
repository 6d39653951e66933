"""Merging another scanning station of the same kit into this one.

Several stations may scan in parallel, each with a copy of the kit. `merge OTHER` brings the other
station's work here: input files (and the archived originals, page images and crops), captures,
readings, quarantine, people's decisions, identity links, worklist marks, sheets it printed, and
its audit rows. Rows are matched by natural keys, never by integer ids (those differ between
stations), so merging twice changes nothing. The other station's audit rows are appended to the
local chain as 'merge.audit' rows that carry the remote row (its hash and content): the local
chain stays verifiable and the remote history stays readable.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from ..errors import BadInput, Conflict, FallbackkitError, NotFound
from ..files import STEM_PATTERN
from ..store.audit import append_audit
from ..store.readings import indexes_set_aside, restore_indexes, set_aside_indexes
from ..store.transactions import atomic
from ..store.kit import Kit, now_iso


REMOTE = "remote-audit:"
MERGED_TABLES = ("layouts", "print_batches", "forms", "sheets", "downtime_ids", "id_pools", "input_files",
                 "captures", "readings", "quarantine", "quarantine_assignments", "reviews", "identity_links",
                 "worklist_marks", "audit")


def _open_remote(other: Path) -> tuple[sqlite3.Connection, Path]:
    store = other / "store.sqlite" if other.is_dir() else other
    if not store.exists():
        raise NotFound(f"no kit store at {other}", hint="give a kit directory or its store.sqlite file")
    try:
        conn = sqlite3.connect(f"file:{store.resolve()}?mode=ro", uri=True)
        conn.execute("SELECT value FROM kit_meta WHERE key = 'kit_id'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BadInput(f"{store} is not a fallbackkit store ({exc})",
                       hint="give another station's kit directory or its store.sqlite") from None
    return conn, store.parent


def _columns(conn, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


# The only file paths another store may name: content-addressed, inside the kit's own folders.
_SHA = r"(?P<sha>[0-9a-f]{64})"
_PAGE = _SHA + r"-p[0-9]{1,6}(?:-assigned)?"


@functools.cache
def _shapes() -> dict[str, tuple[re.Pattern, str]]:
    from ..scan.ingest import KINDS  # the archive's extensions (imported late: it loads OpenCV)
    extensions = "|".join(re.escape(ext) for ext in sorted(set(KINDS.values())))
    return {"archive_path": (re.compile(rf"archive/(?P<ab>[0-9a-f]{{2}})/{_SHA}(?:{extensions})"),
                             "archive/ab/<sha256>.<ext>"),
            "image_path": (re.compile(rf"pages/(?P<ab>[0-9a-f]{{2}})/{_PAGE}\.png"), "pages/ab/<sha256>-p<n>.png"),
            "crop_path": (re.compile(rf"crops/(?P<ab>[0-9a-f]{{2}})/{_PAGE}/{STEM_PATTERN}\.png"),
                          "crops/ab/<sha256>-p<n>/<field>.png")}


def _check_path(root: Path, what: str, column: str, rel: Any, sha: str | None) -> None:
    """Refuse a path from another store unless it is one this kit could have written itself."""
    if rel is None:
        return
    pattern, shape = _shapes()[column]
    m = pattern.fullmatch(rel) if isinstance(rel, str) else None
    problem = None
    if m is None:
        problem = f"is not of the form {shape}"
    elif m["ab"] != m["sha"][:2] or (sha is not None and m["sha"] != sha):
        problem = "does not match the file's SHA-256"
    else:
        src = root / rel
        if src.is_symlink() or (src.exists() and not src.resolve().is_relative_to(root.resolve())):
            problem = "is a link to a file outside that kit"
    if problem:
        raise BadInput(f"{what}: {column} {rel!r} {problem}; nothing was merged",
                       hint="that store was damaged or crafted: do not use it; merge the station's backup instead")


def _check_paths(remote: sqlite3.Connection, root: Path) -> None:
    for sha, rel in remote.execute("SELECT sha256, archive_path FROM input_files ORDER BY sha256"):
        _check_path(root, f"input file {sha}", "archive_path", rel, sha)
    for cid, sha, rel in remote.execute("SELECT capture_id, file_sha256, image_path FROM captures ORDER BY capture_id"):
        _check_path(root, f"capture {cid}", "image_path", rel, sha)
    for rid, sha, rel in remote.execute(
            "SELECT r.reading_id, c.file_sha256, r.crop_path FROM readings r LEFT JOIN captures c"
            " ON c.capture_id = r.capture_id WHERE r.crop_path IS NOT NULL ORDER BY r.reading_id"):
        _check_path(root, f"reading {rid}", "crop_path", rel, sha)


def _copy_file(src_root: Path, dst_root: Path, rel: str) -> int:
    src, dst = src_root / rel, dst_root / rel
    if dst.exists() or not src.is_file():
        return 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".merging")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return 1


class _Merger:
    def __init__(self, kit: Kit, remote: sqlite3.Connection, remote_root: Path):
        self.kit, self.remote, self.root = kit, remote, remote_root
        self.local = kit.db.conn
        self.counts: dict[str, int] = {}
        self.files: list[str | None] = []  # copied only once every row merged: a refusal copies nothing
        self.attached = False

    def copy_files(self) -> None:
        copied = sum(_copy_file(self.root, self.kit.path, rel) for rel in dict.fromkeys(self.files) if rel)
        self.files = []
        if copied:
            self.counts["files"] = self.counts.get("files", 0) + copied

    def rows(self, table: str, order: str) -> tuple[list[str], list[dict[str, Any]]]:
        local_cols = set(_columns(self.local, table))
        cols = [c for c in _columns(self.remote, table) if c in local_cols]
        data = [dict(zip(cols, r)) for r in self.remote.execute(
            f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")]
        return cols, data

    def insert(self, table: str, row: dict[str, Any], skip: tuple[str, ...] = ()) -> int:
        cols = [c for c in row if c not in skip]
        cur = self.local.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                 [row[c] for c in cols])
        self.counts[table] = self.counts.get(table, 0) + 1
        return cur.lastrowid

    def registry(self) -> None:
        L = self.local
        # Printed registry: another station may have printed blank stock from its own copy.
        have = {r[0] for r in L.execute("SELECT hash FROM layouts")}
        for row in self.rows("layouts", "hash")[1]:
            if row["hash"] not in have:
                self.insert("layouts", row)
        batch_map: dict[int, int] = {}
        batch_key = ("created_at", "kind", "actor", "ward", "template", "out_path", "sheets")
        local_batches = {tuple(r[1:]): r[0] for r in L.execute(
            f"SELECT id, {', '.join(batch_key)} FROM print_batches")}
        for row in self.rows("print_batches", "id")[1]:
            key = tuple(row.get(k) for k in batch_key)
            batch_map[row["id"]] = local_batches.get(key) or self.insert("print_batches", row, ("id",))
        have = {r[0] for r in L.execute("SELECT form_id FROM forms")}
        for row in self.rows("forms", "rowid")[1]:
            if row["form_id"] not in have:
                row["batch_id"] = batch_map[row["batch_id"]]
                self.insert("forms", row)
        have_sheets = {r[0]: r[1] for r in L.execute("SELECT sheet_id, form_id FROM sheets")}
        for row in self.rows("sheets", "rowid")[1]:
            if row["sheet_id"] in have_sheets:
                if have_sheets[row["sheet_id"]] != row["form_id"]:
                    raise Conflict(f"sheet id {row['sheet_id']} belongs to form {have_sheets[row['sheet_id']]} here "
                                   f"and to form {row['form_id']} at the other station; nothing was merged",
                                   hint="the two stations printed the same sheet id for different forms; tell IT")
                continue
            row["batch_id"] = batch_map[row["batch_id"]]
            self.insert("sheets", row)
        have_ids = {r[0]: r[1] for r in L.execute("SELECT value, form_id FROM downtime_ids")}
        for row in self.rows("downtime_ids", "value")[1]:
            if row["value"] in have_ids:
                if have_ids[row["value"]] != row["form_id"]:
                    raise Conflict(f"downtime identifier {row['value']} was printed on different forms at the two "
                                   f"stations ({have_ids[row['value']]} here, {row['form_id']} there); nothing was merged",
                                   hint="the stations handed out numbers from the same range or pool copy: give each "
                                        "station its own sub-range (`fallbackkit ids load`, docs/ward.md), and tell "
                                        "the ward which sheets carry this number twice")
                continue
            row["batch_id"] = batch_map[row["batch_id"]]
            self.insert("downtime_ids", row)
        for kind, next_value in self.remote.execute("SELECT kind, next_value FROM id_pools"):
            L.execute("UPDATE id_pools SET next_value = MAX(next_value, ?) WHERE kind = ?", [next_value, kind])

        self._links(dry_run=True)  # a merge that would split a patient is refused before anything is written

    def plan_scans(self) -> None:
        """Which remote captures are new here (by natural key); their rows are written in chunks."""
        L = self.local
        have = {r[0] for r in L.execute("SELECT sha256 FROM input_files")}
        self.file_rows = {row["sha256"]: row for row in self.rows("input_files", "sha256")[1] if row["sha256"] not in have}
        local_caps = {(r[1], r[2], r[3]): r[0] for r in L.execute(
            "SELECT capture_id, file_sha256, page_index, source FROM captures")}
        self.cap_map: dict[int, int] = {}
        self.new_captures: list[dict[str, Any]] = []
        matched_sheets = set()
        for row in self.rows("captures", "capture_id")[1]:
            key = (row["file_sha256"], row["page_index"], row["source"])
            if key in local_caps:
                self.cap_map[row["capture_id"]] = local_caps[key]
                matched_sheets.add(row.get("sheet_id"))
            else:
                self.new_captures.append(row)
        self.reading_cols = [c for c in _columns(self.remote, "readings") if c in set(_columns(L, "readings"))]
        self.reading_map: dict[int, int] = {}  # only readings people decided on (reviews map to them)
        self.reviewed = {r[0] for r in self.remote.execute("SELECT DISTINCT reading_id FROM reviews")}
        self.held = self._held_forms(matched_sheets) if self.new_captures else set()  # see summary.copy_kept

    def _held_forms(self, matched_sheets: set[str | None]) -> set[str]:
        """Forms this station holds something of before the merge writes its captures: a capture
        (its own, or one the other station has too), a quarantined page that names it, a page
        identified as one of its sheets. Their summaries are recomputed after the merge; the
        others' may be copied from the other station (summary.copy_kept)."""
        from ..payload import verify as verify_payload
        L = self.local
        sheets = {r[0] for r in L.execute("SELECT DISTINCT sheet_id FROM captures WHERE sheet_id IS NOT NULL")}
        sheets |= {s for s in matched_sheets if s is not None}
        sheets |= {r[0] for r in L.execute("SELECT sheet_id FROM quarantine_assignments WHERE sheet_id IS NOT NULL")}
        for (payload,) in L.execute("SELECT payload FROM quarantine WHERE payload IS NOT NULL"):
            try:
                sheets.add(verify_payload(payload, self.kit.secret, self.kit.kit_id).sheet_id)
            except FallbackkitError:
                continue
        held = set()
        wanted = sorted(sheets)
        for start in range(0, len(wanted), 500):
            part = wanted[start:start + 500]
            held |= {r[0] for r in L.execute(f"SELECT form_id FROM sheets WHERE sheet_id IN ({','.join('?' * len(part))})",
                                             part)}
        return held

    def insert_many(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        cols = list(rows[0])
        self.local.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                               [[row[c] for c in cols] for row in rows])
        self.counts[table] = self.counts.get(table, 0) + len(rows)

    def scan_chunk(self, rows: list[dict[str, Any]]) -> None:
        """New captures with their input files and readings, batched; the caller's transaction.
        A capture and its readings are always stored together (here and when scanning), so only
        the readings of captures new to this kit are brought, streamed by index."""
        L = self.local
        files = [f for f in (self.file_rows.pop(r["file_sha256"], None) for r in rows) if f is not None]
        if not self.attached:
            self.insert_many("input_files", files)
        self.files += [f["archive_path"] for f in files]
        next_cap = L.execute("SELECT COALESCE(MAX(capture_id), 0) FROM captures").fetchone()[0] + 1
        remote_ids = []
        for row in rows:
            remote_ids.append(row["capture_id"])
            if row.get("duplicate_of") is not None:
                row["duplicate_of"] = self.cap_map.get(row["duplicate_of"])
            self.cap_map[row["capture_id"]] = next_cap
            row["capture_id"] = next_cap
            next_cap += 1
            self.files.append(row.get("image_path"))
        if self.attached:
            self._scans_in_sql(files, rows, remote_ids)
            return
        self.insert_many("captures", rows)
        next_reading = L.execute("SELECT COALESCE(MAX(reading_id), 0) FROM readings").fetchone()[0] + 1
        cols = self.reading_cols
        at_id, at_capture = cols.index("reading_id"), cols.index("capture_id")
        at_crop = cols.index("crop_path") if "crop_path" in cols else None
        batch: list[list[Any]] = []
        sql = f"INSERT INTO readings ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        for start in range(0, len(remote_ids), 500):
            part = remote_ids[start:start + 500]
            for values in self.remote.execute(
                    f"SELECT {', '.join(cols)} FROM readings WHERE capture_id IN"
                    f" ({','.join('?' * len(part))}) ORDER BY capture_id, reading_id", part):
                values = list(values)
                if values[at_id] in self.reviewed:
                    self.reading_map[values[at_id]] = next_reading
                values[at_id], values[at_capture] = next_reading, self.cap_map[values[at_capture]]
                next_reading += 1
                if at_crop is not None and values[at_crop]:
                    self.files.append(values[at_crop])
                batch.append(values)
                if len(batch) >= 10_000:
                    L.executemany(sql, batch)
                    self.counts["readings"] = self.counts.get("readings", 0) + len(batch)
                    batch.clear()
        L.executemany(sql, batch)
        self.counts["readings"] = self.counts.get("readings", 0) + len(batch)

    def attach(self, store: Path) -> None:
        """The other store attached (read-only) to this connection, so that a chunk's readings go
        from there to here in one INSERT ... SELECT, never a Python object per reading (3.7 M at
        100,000 captures). Outside any transaction (SQLite's rule for ATTACH)."""
        try:
            self.local.execute("ATTACH DATABASE ? AS merge_source", [store.resolve().as_uri() + "?mode=ro"])
        except sqlite3.Error:
            return  # row by row, as before
        self.local.execute("CREATE TEMP TABLE IF NOT EXISTS merge_captures (remote INTEGER PRIMARY KEY,"
                           " local INTEGER NOT NULL, duplicate_of INTEGER)")
        self.attached = True

    def detach(self) -> None:
        if self.attached:
            self.local.execute("DROP TABLE IF EXISTS temp.merge_captures")
            self.local.execute("DROP TABLE IF EXISTS temp.merge_files")
            self.local.execute("DETACH DATABASE merge_source")
            self.attached = False

    def _scans_in_sql(self, files: list[dict[str, Any]], rows: list[dict[str, Any]], remote_ids: list[int]) -> None:
        """A chunk's input files, captures and readings from the attached store, each by one
        INSERT ... SELECT in the order (and with the ids) the row-by-row copy gives them, in the
        caller's transaction. Readings are numbered by SQLite: a row inserted without its INTEGER
        PRIMARY KEY gets the largest id + 1, in the order the SELECT gives them (numbering them in
        the SELECT, ROW_NUMBER() OVER, cost twice as much)."""
        L = self.local
        if files:
            cols = ", ".join(files[0])
            L.execute("CREATE TEMP TABLE IF NOT EXISTS merge_files (pos INTEGER PRIMARY KEY, sha256 TEXT NOT NULL)")
            L.execute("DELETE FROM temp.merge_files")
            L.executemany("INSERT INTO temp.merge_files (sha256) VALUES (?)", [(f["sha256"],) for f in files])
            picked = ", ".join(f"f.{c}" for c in files[0])
            added = L.execute(f"INSERT INTO input_files ({cols}) SELECT {picked} FROM temp.merge_files t"
                              " CROSS JOIN merge_source.input_files f ON f.sha256 = t.sha256 ORDER BY t.pos").rowcount
            self.counts["input_files"] = self.counts.get("input_files", 0) + added
        L.execute("DELETE FROM temp.merge_captures")
        L.executemany("INSERT INTO temp.merge_captures (remote, local, duplicate_of) VALUES (?, ?, ?)",
                      [(rid, row["capture_id"], row.get("duplicate_of")) for rid, row in zip(remote_ids, rows)])
        # CROSS JOIN: the chunk's captures first, then theirs by key (else SQLite may walk every
        # reading of the other store for each chunk)
        if rows:
            cols = list(rows[0])
            picked = ", ".join("m.local" if c == "capture_id" else "m.duplicate_of" if c == "duplicate_of" else f"c.{c}"
                               for c in cols)
            added = L.execute(f"INSERT INTO captures ({', '.join(cols)}) SELECT {picked} FROM temp.merge_captures m"
                              " CROSS JOIN merge_source.captures c ON c.capture_id = m.remote ORDER BY m.remote").rowcount
            self.counts["captures"] = self.counts.get("captures", 0) + added
        cols = [c for c in self.reading_cols if c != "reading_id"]
        chunk = "FROM temp.merge_captures m CROSS JOIN merge_source.readings r ON r.capture_id = m.remote"
        picked = ", ".join("m.local" if c == "capture_id" else f"r.{c}" for c in cols)
        added = L.execute(f"INSERT INTO readings ({', '.join(cols)}) SELECT {picked} {chunk}"
                          " ORDER BY r.capture_id, r.reading_id").rowcount
        self.counts["readings"] = self.counts.get("readings", 0) + added
        if "crop_path" in cols:
            self.files += [r[0] for r in L.execute(f"SELECT r.crop_path {chunk} WHERE r.crop_path IS NOT NULL"
                                                   " ORDER BY r.capture_id, r.reading_id")]

    def rest(self) -> None:
        """Input files without a new capture, quarantine, decisions, links, marks and history."""
        L = self.local
        cap_map = self.cap_map
        leftover = list(self.file_rows.values())
        self.file_rows = {}
        self.insert_many("input_files", leftover)
        self.files += [f["archive_path"] for f in leftover]
        local_q = {r[1]: r[0] for r in L.execute("SELECT quarantine_id, capture_id FROM quarantine")}
        q_map: dict[int, int] = {}
        for row in self.rows("quarantine", "quarantine_id")[1]:
            cid = cap_map[row["capture_id"]]
            if cid in local_q:
                q_map[row["quarantine_id"]] = local_q[cid]
                continue
            row["capture_id"] = cid
            q_map[row["quarantine_id"]] = self.insert("quarantine", row, ("quarantine_id",))
        have_qa = {tuple(r) for r in L.execute("SELECT quarantine_id, sheet_id, actor, at FROM quarantine_assignments")}
        for row in self.rows("quarantine_assignments", "id")[1]:
            row["quarantine_id"] = q_map[row["quarantine_id"]]
            if row.get("capture_id") is not None:
                row["capture_id"] = cap_map.get(row["capture_id"])
            if (row["quarantine_id"], row["sheet_id"], row["actor"], row["at"]) not in have_qa:
                self.insert("quarantine_assignments", row, ("id",))

        # People's decisions: on the reading of the same capture (by natural key) and field here.
        if self.attached:
            self._map_reviewed_readings()
        local_reviews = {(r[1], r[2], r[3], r[4]): r[0] for r in L.execute(
            "SELECT review_id, reading_id, actor, at, decision FROM reviews")}
        review_map: dict[int, int] = {}
        new_reviews: list[dict[str, Any]] = []
        next_review = L.execute("SELECT COALESCE(MAX(review_id), 0) FROM reviews").fetchone()[0] + 1
        for row in self.rows("reviews", "review_id")[1]:
            rid = self._local_reading(row["reading_id"])
            key = (rid, row["actor"], row["at"], row["decision"])
            if key in local_reviews:
                review_map[row["review_id"]] = local_reviews[key]
                continue
            row["reading_id"] = rid
            if row.get("undoes") is not None:
                row["undoes"] = review_map[row["undoes"]]
            # numbered as SQLite numbers them (the largest id + 1: no AUTOINCREMENT), inserted in batches
            review_map[row["review_id"]] = row["review_id"] = next_review
            next_review += 1
            new_reviews.append(row)
            if len(new_reviews) >= 10_000:
                self.insert_many("reviews", new_reviews)
                new_reviews = []
        self.insert_many("reviews", new_reviews)
        self._links()
        have_marks = {tuple(r) for r in L.execute("SELECT item_id, status, actor, at FROM worklist_marks")}
        for row in self.rows("worklist_marks", "id")[1]:
            if (row["item_id"], row["status"], row["actor"], row["at"]) not in have_marks:
                self.insert("worklist_marks", row, ("id",))

        # History: remote audit rows not already part of our chain (shared history before the kit
        # was copied has the same hashes) nor merged before. A row the other station itself merged
        # from elsewhere is unwrapped, so history reaches every station once and echoes of our own
        # rows are recognised; the other station's 'merge' records are not copied (what they
        # describe arrives as rows), so two stations merging each other settle after one round.
        known = {r[0] for r in L.execute("SELECT hash FROM audit")}
        known |= {r[0][len(REMOTE):] for r in L.execute(
            "SELECT object FROM audit WHERE action = 'merge.audit'")}
        for rid, ts, actor, action, obj, before, after, prev_hash, digest in self.remote.execute(
                "SELECT id, ts, actor, action, object, before, after, prev_hash, hash FROM audit ORDER BY id"):
            if action == "merge":
                continue
            if action == "merge.audit" and obj and obj.startswith(REMOTE) and after:
                original, digest = json.loads(after), obj[len(REMOTE):]
            else:
                original = {"id": rid, "ts": ts, "actor": actor, "action": action, "object": obj,
                            "before": before, "after": after, "prev_hash": prev_hash, "hash": digest}
            if digest in known:
                continue
            append_audit(L, original.get("actor") or actor, "merge.audit", f"{REMOTE}{digest}", None, original)
            known.add(digest)
            self.counts["audit"] = self.counts.get("audit", 0) + 1

    def _links(self, dry_run: bool = False) -> None:
        """Bring the other station's identity links; refuse (Conflict) links that would split a
        patient. dry_run: only check, inside a savepoint rolled back at once."""
        L = self.local
        if dry_run:
            before = self.counts.get("identity_links", 0)
            L.execute("SAVEPOINT merge_links_check")
            try:
                self._links()
            finally:
                L.execute("ROLLBACK TO merge_links_check")
                L.execute("RELEASE merge_links_check")
                self.counts["identity_links"] = before
                if not before:
                    self.counts.pop("identity_links")
            return
        local_links = {(r[1], r[2], r[3], r[4], r[5]): r[0] for r in L.execute(
            "SELECT id, downtime_mrn, real_mrn, actor, at, revokes FROM identity_links")}
        link_map: dict[int, int] = {}
        for row in self.rows("identity_links", "id")[1]:
            revokes = link_map.get(row["revokes"]) if row.get("revokes") is not None else None
            key = (row["downtime_mrn"], row["real_mrn"], row["actor"], row["at"], revokes)
            if key in local_links:
                link_map[row["id"]] = local_links[key]
                continue
            row["revokes"] = revokes
            link_map[row["id"]] = self.insert("identity_links", row, ("id",))
        self._check_links()

    def _map_reviewed_readings(self) -> None:
        """The local reading of every reading the other station's decisions name, in one query
        (the same capture by natural key, the same field: what _local_reading finds one by one)."""
        L = self.local
        L.execute("CREATE TEMP TABLE IF NOT EXISTS merge_capture_map (remote INTEGER PRIMARY KEY, local INTEGER NOT NULL)")
        L.execute("DELETE FROM temp.merge_capture_map")
        L.executemany("INSERT INTO temp.merge_capture_map (remote, local) VALUES (?, ?)", self.cap_map.items())
        for remote_id, local_id in L.execute(
                "SELECT r.reading_id, l.reading_id FROM (SELECT DISTINCT reading_id FROM merge_source.reviews) v"
                " CROSS JOIN merge_source.readings r ON r.reading_id = v.reading_id"
                " CROSS JOIN temp.merge_capture_map m ON m.remote = r.capture_id"
                " CROSS JOIN main.readings l ON l.capture_id = m.local AND l.field = r.field"):
            self.reading_map.setdefault(remote_id, local_id)
        L.execute("DROP TABLE temp.merge_capture_map")

    def _add_reading(self, row: dict[str, Any]) -> int:
        remote_id = row["reading_id"]
        row["capture_id"] = self.cap_map[row["capture_id"]]
        self.reading_map[remote_id] = self.insert("readings", row, ("reading_id",))
        self.files.append(row.get("crop_path"))
        return self.reading_map[remote_id]

    def _local_reading(self, remote_id: int) -> int:
        """The local reading for a remote one: same capture (by natural key), same field."""
        if remote_id in self.reading_map:
            return self.reading_map[remote_id]
        values = self.remote.execute(f"SELECT {', '.join(self.reading_cols)} FROM readings WHERE reading_id = ?",
                                     [remote_id]).fetchone()
        row = dict(zip(self.reading_cols, values))
        found = self.local.execute("SELECT reading_id FROM readings WHERE capture_id = ? AND field = ?",
                                   [self.cap_map[row["capture_id"]], row["field"]]).fetchone()
        if found is None:
            return self._add_reading(row)  # nothing lost: a field this kit's capture lacks
        self.reading_map[remote_id] = found[0]
        return found[0]

    def _check_links(self) -> None:
        revoked = {r[0] for r in self.local.execute("SELECT revokes FROM identity_links WHERE revokes IS NOT NULL")}
        real: dict[str, set[str]] = {}
        for lid, dt, mrn in self.local.execute(
                "SELECT id, downtime_mrn, real_mrn FROM identity_links WHERE revokes IS NULL"):
            if lid not in revoked:
                real.setdefault(dt, set()).add(mrn)
        for dt, mrns in sorted(real.items()):
            if len(mrns) > 1:
                raise Conflict(f"after merging, {dt} would be linked to {' and '.join(sorted(mrns))}; nothing was merged",
                               hint=f"decide which link is right, unlink the other at its station (`identities unlink {dt}`), then merge again")


CAPTURES_PER_CHUNK = 5000  # new captures (with their readings) per transaction
BULK_FROM = 20_000  # new captures, and at least as many as the station has: readings' indexes built at the end


def _bulk(conn, new_captures: int) -> bool:
    """Many new captures for a station with fewer: insert the readings without their secondary
    indexes and build those once at the end (inserting 3.7 M readings into them was half of a
    merge at 100,000 captures; a sort at the end is a fraction of it)."""
    if new_captures < BULK_FROM:
        return False
    return new_captures >= conn.execute("SELECT COUNT(*) FROM captures").fetchone()[0]


def _chunk_done(start: int) -> None:
    """Called after each committed chunk (tests inject a crash here)."""


def _restore_indexes(conn) -> None:
    if indexes_set_aside(conn):  # also those a killed merge left set aside
        with atomic(conn):
            restore_indexes(conn)


def merge_store(kit: Kit, other: Path | str, actor: str) -> dict[str, Any]:
    """Bring another station's work into this kit. Returns counts of what was added (all zero
    when there was nothing new)."""
    other = Path(other)
    remote, root = _open_remote(other)
    try:
        row = remote.execute("SELECT value FROM kit_meta WHERE key = 'kit_id'").fetchone()
        remote_id = row[0] if row else None
        if remote_id != kit.kit_id:
            raise BadInput(f"{other} belongs to kit {remote_id}, not to this kit ({kit.kit_id}); nothing was merged",
                           hint="merge only stations that were copied from the same kit")
        if root.resolve() == kit.path.resolve():
            raise BadInput(f"{other} is this kit itself", hint="give the other station's kit directory")
        theirs = {r[0] for r in remote.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        ours = {r[0] for r in kit.db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = sorted(t for t in MERGED_TABLES if t in ours and t not in theirs)
        if missing:
            raise BadInput(f"{other} was made by an older fallbackkit (no {', '.join(missing)} table)",
                           hint="run any fallbackkit command on that kit with this version first, then merge")
        _check_paths(remote, root)
        merger = _Merger(kit, remote, root)
        merger.attach(other / "store.sqlite" if other.is_dir() else other)
        try:
            return _merge(kit, merger, other, remote_id, actor)
        finally:
            merger.detach()
    finally:
        remote.close()


def _merge(kit: Kit, merger: _Merger, other: Path, remote_id: str, actor: str) -> dict[str, Any]:
    conn, remote = kit.db.conn, merger.remote
    # One transaction for the printed registry (and the check that links do not split a
    # patient: a refusal writes nothing), one per chunk of new captures (their files, rows and
    # readings, batched; the files copied before the chunk commits), one for the rest. A merge
    # killed midway keeps the chunks it committed; run again, it goes on from there (and
    # builds the indexes a bulk merge set aside: store/readings.py set_aside_indexes).
    with atomic(conn):
        merger.registry()
    merger.plan_scans()
    try:
        if _bulk(conn, len(merger.new_captures)):
            with atomic(conn):  # built once at the end (a crash: at the end of the next merge)
                set_aside_indexes(conn)
        chunks = range(0, len(merger.new_captures), CAPTURES_PER_CHUNK)
        for start in chunks:
            with atomic(conn):
                before = dict(merger.counts)
                merger.scan_chunk(merger.new_captures[start:start + CAPTURES_PER_CHUNK])
                merger.copy_files()
                if len(chunks) > 1:  # a long merge: each committed part is in the audit log at once
                    append_audit(conn, actor, "merge.part", f"kit:{remote_id}", None,
                                 {"from": str(other), "added": {k: v - before.get(k, 0) for k, v in
                                                                merger.counts.items() if v != before.get(k, 0)}})
            _chunk_done(start)
        merger.new_captures = []
        with atomic(conn):
            merger.rest()
            merger.copy_files()
            if merger.attached and chunks:  # new captures: the kept summaries of forms this station held
                from .summary import copy_kept  # nothing of, copied in this transaction
                copy_kept(kit, "merge_source", remote, merger.root, merger.held, merger.cap_map)
            counts = {k: v for k, v in sorted(merger.counts.items()) if v}
            if counts:
                append_audit(conn, actor, "merge", f"kit:{remote_id}", None,
                             {"from": str(other), "added": counts})
                conn.execute("INSERT INTO merge_log (source_kit, source_path, at, actor, counts)"
                             " VALUES (?, ?, ?, ?, ?)", [remote_id, str(other), now_iso(), actor, json.dumps(counts)])
        _restore_indexes(conn)
    except BaseException:
        try:  # a refused or failed merge leaves the indexes as they were (a kill: the next merge)
            _restore_indexes(conn)
        except sqlite3.Error:
            pass  # the error on its way out says more than this one
        raise
    return {"from": str(other), "kit_id": remote_id, "added": counts, "changed": bool(counts),
            "double_entries": double_entries(kit), "shared_ranges": shared_ranges(kit, remote)}


def shared_ranges(kit: Kit, remote: sqlite3.Connection) -> list[dict[str, Any]]:
    """Loaded downtime ranges both stations hold (the kit was copied after `ids load`): they have
    not clashed yet, or merge would have refused, but they will as soon as both print more."""
    tables = {r[0] for r in remote.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "id_ranges" not in tables:
        return []
    ours = kit.db.conn.execute("SELECT kind, first_value, last_value, width FROM id_ranges").fetchall()
    found = []
    for kind, lo, hi, width in remote.execute("SELECT kind, first_value, last_value, width FROM id_ranges"):
        for k, a, b, w in ours:
            if k == kind and a <= hi and lo <= b:
                first, last = max(a, lo), min(b, hi)
                text = f"{str(first).zfill(w) if w else first}-{str(last).zfill(w) if w else last}"
                found.append({"kind": kind, "numbers": text,
                              "message": f"both stations hold the {kind} numbers {text}: the next blank stock "
                                         f"printed at both will clash; give each station its own part "
                                         f"(`fallbackkit ids load --part K/N`, docs/ward.md)"})
    return found


def double_entries(kit: Kit) -> list[dict[str, Any]]:
    """Items marked entered more than once without being reopened in between: two stations (or two
    clerks) may both have typed them into the hospital system. A person must check."""
    runs: dict[str, list[tuple[str, str]]] = {}
    for item_id, status, actor, at in kit.db.conn.execute(
            "SELECT item_id, status, actor, at FROM worklist_marks ORDER BY id"):
        if status == "entered":
            runs.setdefault(item_id, []).append((actor, at))
        else:
            runs.pop(item_id, None)
    return [{"item_id": item_id, "entered": [{"by": a, "at": t} for a, t in marks],
             "message": f"{item_id} was marked entered {len(marks)} times ("
                        + "; ".join(f"by {a} at {t}" for a, t in marks)
                        + "): check the hospital record for a double entry"}
            for item_id, marks in sorted(runs.items()) if len(marks) > 1]
