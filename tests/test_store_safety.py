"""Nothing lost, nobody in (issue 9 items 1, 8, 9, 11, 12, 13; issue 14 items 3 and 6): the store is
never silently recreated, damaged or read-only kits and full disks give one line, the kit is private,
the audit chain is tamper evident, migrations are atomic, unknown errors are one line.

Real files throughout: real SQLite stores cut short, overwritten with random bytes or with a zeroed
header; a real read-only filesystem and a real full one. How those are made here: as root, chmod
does not stop writes (root ignores permission bits), so the read-only kit and the full disk are
tmpfs mounts (`mount -t tmpfs -o size=...`, then `mount -o remount,ro`: EROFS stops root too). When
the tests do not run as root, the read-only kit is a chmod a-w directory instead; the full disk
needs a mount and is skipped without one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from fallbackkit.cli import cli
from fallbackkit.errors import ExitCode
from fallbackkit.generate import print_blank, print_ward
from fallbackkit.generate.sample import write_census
from fallbackkit.reconcile import link_identity
from fallbackkit.review import add_user
from fallbackkit.store import init_kit, migrations, open_kit
from fallbackkit.store.audit import row_hash
from fallbackkit.store.decisions import record_review, undo_review
from kit_helpers import census_kit
from pdf_helpers import render_pages
from reconcile_helpers import fake_scan, forms_of, sheets_of
from scan_pipeline_helpers import write_png


def invoke(kit_dir: Path, *args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["--kit", str(kit_dir), "--user", "tester", *args], input=input)


def one_line_error(result) -> str:
    """The command failed with exactly one line on stderr and no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return lines[0]


def write_page(path: Path, page) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_png(path, page, dpi=150)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cli_kit(tmp_path):
    """A kit made with the CLI, census imported, and a verified backup of it (tmp/backup.sqlite)."""
    kit_dir = tmp_path / "kit"
    assert invoke(kit_dir, "init").exit_code == 0
    patients, meds = write_census(tmp_path / "census")
    assert invoke(kit_dir, "census", "import", str(patients), "--meds", str(meds)).exit_code == 0
    result = invoke(kit_dir, "backup", "--out", str(tmp_path / "backup.sqlite"))
    assert result.exit_code == 0, result.output
    return kit_dir


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs (a real small or read-only filesystem)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        where = tmp_path / name
        _mount_tmpfs(where, size)
        mounted.append(where)
        return where
    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


# --- item 1: only init creates a store ---------------------------------------------------------
def _break_missing(store: Path, tmp_path: Path) -> None:
    store.unlink()


def _break_empty(store: Path, tmp_path: Path) -> None:
    store.write_bytes(b"")


def _break_not_sqlite(store: Path, tmp_path: Path) -> None:
    store.write_text("mrn,last_name\n100001,Dupont\n")


def _break_foreign(store: Path, tmp_path: Path) -> None:
    other = init_kit(tmp_path / "other", actor="tester")
    other.close()
    shutil.copyfile(other.store_path, store)


@pytest.mark.parametrize("damage", [_break_missing, _break_empty, _break_not_sqlite, _break_foreign],
                         ids=["missing", "empty", "not-sqlite", "other-kit"])
def test_only_init_creates_a_store(cli_kit, tmp_path, damage):
    store = cli_kit / "store.sqlite"
    damage(store, tmp_path)
    before = sha(store) if store.exists() else None
    scans = tmp_path / "scans"
    scans.mkdir()
    patients, _ = write_census(tmp_path / "census2")
    for args in (["check"], ["readings"], ["scan", str(scans)], ["reconcile"], ["census", "import", str(patients)],
                 ["users", "add", "ann", "--role", "clerk"]):
        result = invoke(cli_kit, *args, input="long enough password\n")
        assert result.exit_code == ExitCode.INTEGRITY, (args, result.output)
        line = one_line_error(result)
        assert str(store) in line and "fallbackkit restore" in line, line
        assert (sha(store) if store.exists() else None) == before, f"{args} changed or created the store"
        assert not store.with_name("store.sqlite-wal").exists()
    # the remedy works on exactly such a kit
    result = invoke(cli_kit, "restore", str(tmp_path / "backup.sqlite"))
    assert result.exit_code == 0, result.output
    check = invoke(cli_kit, "check")
    assert check.exit_code == 0, check.output
    assert json.loads(invoke(cli_kit, "sheets", "list", "--json").stdout) == []
    assert "census.import" in {r[0] for r in sqlite3.connect(store).execute("SELECT action FROM audit")}


def test_a_missing_secret_is_one_line(cli_kit):
    (cli_kit / "secret.key").unlink()
    result = invoke(cli_kit, "check")
    assert result.exit_code == ExitCode.INTEGRITY and "secret.key is missing" in one_line_error(result)


# --- item 11: damaged store --------------------------------------------------------------------
def _truncate(store: Path) -> None:
    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 2 + 100])


def _truncate_at_page(store: Path) -> None:
    data = store.read_bytes()
    store.write_bytes(data[: 4096 * 3])


def _random_bytes(store: Path) -> None:
    store.write_bytes(os.urandom(store.stat().st_size))


def _zero_header(store: Path) -> None:
    data = bytearray(store.read_bytes())
    data[:100] = bytes(100)
    store.write_bytes(bytes(data))


def _pages_overwritten(store: Path) -> None:
    data = bytearray(store.read_bytes())
    data[4096 * 2: 4096 * 8] = os.urandom(4096 * 6)
    store.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _truncate_at_page, _random_bytes, _zero_header, _pages_overwritten],
                         ids=["truncated", "truncated-at-page", "random-bytes", "header-overwritten",
                              "pages-overwritten"])
def test_damaged_store_every_command_exit_7_nothing_written(cli_kit, tmp_path, damage):
    store = cli_kit / "store.sqlite"
    assert store.stat().st_size > 4096 * 4
    damage(store)
    before = sha(store)
    for args in (["check"], ["readings"], ["reconcile"], ["worklist"], ["scan", str(tmp_path / "census")],
                 ["users", "add", "ann", "--role", "clerk"], ["export", "--format", "csv", "--out", str(tmp_path / "x")],
                 ["backup", "--out", str(tmp_path / "b2.sqlite")], ["audit", "verify"]):
        result = invoke(cli_kit, *args, input="long enough password\n")
        assert result.exit_code == ExitCode.INTEGRITY, (args, result.output)
        line = one_line_error(result)
        assert str(store) in line and "restore" in line, line
        assert sha(store) == before, f"{args} wrote to the damaged store"
        assert not store.with_name("store.sqlite-wal").exists() and not (tmp_path / "b2.sqlite").exists()
    result = invoke(cli_kit, "restore", str(tmp_path / "backup.sqlite"))
    assert result.exit_code == 0, result.output
    kept = list((cli_kit / "backups").glob("unusable-before-restore-*.sqlite"))
    assert len(kept) == 1 and sha(kept[0]) == before, "the damaged store is kept as it was"
    assert invoke(cli_kit, "check").exit_code == 0


# --- item 12: read-only kit --------------------------------------------------------------------
def test_read_only_kit_read_commands_work(tmp_path, tmpfs):
    mnt = tmpfs("ro", "64m") if os.geteuid() == 0 else tmp_path / "ro"
    kit = census_kit(mnt)
    result = print_ward(kit, "3B", tmp_path / "ward.pdf", actor="tester", one_sided=True)
    page = render_pages(result.out_path, dpi=150)[1]  # [0] is the ward cover sheet
    kit.close()
    write_page(tmp_path / "scans" / "p1.png", page)
    assert invoke(mnt / "kit", "scan", "--workers", "0", str(tmp_path / "scans")).exit_code == 0
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    else:
        for p in [mnt / "kit", *(mnt / "kit").rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
    kit_dir = mnt / "kit"
    with pytest.raises(OSError):
        (kit_dir / "probe").write_text("x")
    check = invoke(kit_dir, "check")
    assert check.exit_code == 0 and "read-only" in check.stdout, check.output
    readings = invoke(kit_dir, "readings", "--json")
    assert readings.exit_code == 0 and len(json.loads(readings.stdout)) > 10, readings.output
    assert invoke(kit_dir, "reconcile").exit_code == 0
    for fmt in ("csv", "fhir"):
        out = invoke(kit_dir, "export", "--format", fmt, "--out", str(tmp_path / f"out-{fmt}"))
        assert out.exit_code == 0, out.output
    backup = invoke(kit_dir, "backup", "--out", str(tmp_path / "copy.sqlite"))
    assert backup.exit_code == 0, "a read-only kit can still be copied off its disk: " + backup.output
    for args in (["users", "add", "ann", "--role", "clerk"], ["scan", str(tmp_path / "scans")]):
        write = invoke(kit_dir, *args, input="long enough password\n")
        assert write.exit_code == ExitCode.STORAGE, (args, write.output)
        assert "read-only" in one_line_error(write)


# --- item 13: disk full ------------------------------------------------------------------------
def _fill(disk: Path, leave: int) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(shutil.disk_usage(disk).free - leave, 0))
    return filler


def test_disk_full_during_scan(tmp_path, tmpfs):
    disk = tmpfs("small", "12m")
    kit = census_kit(disk)
    result = print_ward(kit, "3B", tmp_path / "ward.pdf", actor="tester", one_sided=True)
    kit.close()
    scans = tmp_path / "scans"
    for i, page in enumerate(render_pages(result.out_path, dpi=150)[:4]):
        write_page(scans / f"p{i}.png", page)
    filler = _fill(disk, 120_000)
    scan = invoke(disk / "kit", "scan", "--workers", "0", str(scans))
    assert scan.exit_code == ExitCode.STORAGE, scan.output
    line = one_line_error(scan)
    assert str(disk) in line and "full" in line and "kept" in line, line
    stored = sqlite3.connect(disk / "kit" / "store.sqlite").execute(
        "SELECT count(*) FROM input_files WHERE status = 'done'").fetchone()[0]
    assert f"{stored} files of this scan were read and stored completely" in line
    assert not list((disk / "kit").rglob("*.tmp")), "no half-written file left in archive/, pages/, crops/"
    filler.unlink()
    check = invoke(disk / "kit", "check", "--archive")
    assert check.exit_code == 0, "the store stays sound: " + check.output
    again = invoke(disk / "kit", "scan", "--workers", "0", "--json", str(scans))
    assert again.exit_code == 0, again.output
    assert invoke(disk / "kit", "check", "--archive").exit_code == 0


def test_disk_full_during_users_add(tmp_path, tmpfs):
    """A kit of its own: no connection left open elsewhere keeps a write-ahead log with room in it."""
    disk = tmpfs("small2", "8m")
    kit = census_kit(disk)
    kit.close()
    assert not (disk / "kit" / "store.sqlite-wal").exists()
    filler = _fill(disk, 0)
    users = invoke(disk / "kit", "users", "add", "bob", "--role", "clerk", input="long enough password\n")
    assert users.exit_code == ExitCode.STORAGE, users.output
    line = one_line_error(users)
    assert str(disk) in line and "full" in line and "kept" in line, line
    filler.unlink()
    assert invoke(disk / "kit", "check").exit_code == 0
    assert "bob" not in invoke(disk / "kit", "users", "list").stdout


def test_stale_tmp_files_are_cleaned_on_the_next_run(cli_kit):
    stale = cli_kit / "archive" / "ab" / "abcd.png.99999999.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"half a file")
    alive = cli_kit / "archive" / "ab" / f"abce.png.{os.getppid()}.tmp"  # a running process's: kept
    alive.write_bytes(b"being written")
    assert invoke(cli_kit, "readings").exit_code == 0
    assert not stale.exists() and alive.exists()


# --- item 8: private modes ---------------------------------------------------------------------
def test_kit_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        kit_dir = tmp_path / "kit"
        assert invoke(kit_dir, "init").exit_code == 0
        patients, meds = write_census(tmp_path / "census")
        assert invoke(kit_dir, "census", "import", str(patients), "--meds", str(meds)).exit_code == 0
        assert invoke(kit_dir, "print", "--ward", "3B", "--out", str(tmp_path / "w.pdf")).exit_code == 0
        write_page(tmp_path / "scans" / "p.png", render_pages(tmp_path / "w.pdf", dpi=150)[1])
        assert invoke(kit_dir, "scan", "--workers", "1", str(tmp_path / "scans")).exit_code == 0
        assert invoke(kit_dir, "backup", "--out", str(kit_dir / "backups" / "b.sqlite")).exit_code == 0
        kit = open_kit(kit_dir)  # the library too: store files and folders made private
        from fallbackkit.scan.pageview import page_image_png  # and a page image made when looked at
        page_image_png(kit.db.conn, kit.path, kit.db.conn.execute("SELECT MIN(capture_id) FROM captures").fetchone()[0])
        kit.close()
        paths = [kit_dir, *kit_dir.rglob("*")]
        assert any(p.parent.name == "pages" or p.parent.parent.name == "pages" for p in paths)
        assert any("crops" in p.parts for p in paths) and any("archive" in p.parts for p in paths)
        loose = [f"{p} {stat.S_IMODE(p.stat().st_mode):o}" for p in paths
                 if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)]
        assert loose == []
        check = invoke(kit_dir, "check")
        assert check.exit_code == 0 and "warning" not in check.stderr
        (kit_dir / "store.sqlite").chmod(0o644)
        (kit_dir / "pages").chmod(0o755)
        check = invoke(kit_dir, "check")
        assert check.exit_code == 0 and "warning:" in check.stderr and "other users" in check.stderr
        assert "chmod -R go-rwx" in check.stderr
    finally:
        os.umask(old)


# --- item 9: tamper-evident audit log -----------------------------------------------------------
@pytest.fixture
def busy_kit(tmp_path):
    """A kit with every kind of audited change: census, reviews and an undo, a link, users."""
    kit = census_kit(tmp_path)
    print_ward(kit, "3B", tmp_path / "w.pdf", actor="tester")
    blank = print_blank(kit, "registration", 1, tmp_path / "b.pdf", actor="tester")
    form = forms_of(kit, "vitals", "3B")[0]
    capture = fake_scan(kit, sheets_of(kit, form)[0], {"temp_0800": "37.2"})
    ids = [r[0] for r in kit.db.conn.execute("SELECT reading_id FROM readings WHERE capture_id = ? LIMIT 3",
                                             [capture])]
    first = record_review(kit.db.conn, ids[0], "correct", "x", "clerk1")
    record_review(kit.db.conn, ids[1], "confirm", None, "clerk2")
    undo_review(kit.db.conn, first, "sup", "wrong field")
    downtime = kit.db.conn.execute("SELECT value FROM downtime_ids WHERE kind = 'mrn' LIMIT 1").fetchone()[0]
    link_identity(kit, downtime, "100001", "clerk1", "wristband")
    add_user(kit.db, "ann", "clerk", "long enough password", "tester")
    assert blank.sheets
    kit.close()
    kit_dir = tmp_path / "kit"
    check = invoke(kit_dir, "check")
    assert check.exit_code == 0, check.output
    return kit_dir


def _edit(kit_dir: Path, sql: str, params=()) -> None:
    conn = sqlite3.connect(kit_dir / "store.sqlite")
    with conn:
        conn.execute(sql, params)
    conn.close()


def test_deleting_the_last_audit_rows_shows(busy_kit, tmp_path):
    _edit(busy_kit, "DELETE FROM audit WHERE id > (SELECT MAX(id) - 2 FROM audit)")
    for command in ("check", "audit"):
        result = invoke(busy_kit, *([command] if command == "check" else ["audit", "verify"]))
        assert result.exit_code == ExitCode.INTEGRITY
        assert "rows were deleted" in one_line_error(result)


def test_a_backup_cut_short_is_refused(busy_kit, tmp_path):
    bk = tmp_path / "bk.sqlite"
    assert invoke(busy_kit, "backup", "--out", str(bk)).exit_code == 0
    conn = sqlite3.connect(bk)
    with conn:
        conn.execute("DELETE FROM audit WHERE id = (SELECT MAX(id) FROM audit)")
    conn.close()
    result = invoke(busy_kit, "restore", str(bk))
    assert result.exit_code == ExitCode.INTEGRITY and "rows were deleted" in one_line_error(result)


def test_the_report_and_kit_json_carry_the_audit_head(busy_kit, tmp_path):
    result = invoke(busy_kit, "report", "--out", str(tmp_path / "r.html"), "--json")
    assert result.exit_code == 0, result.output
    rows = sqlite3.connect(busy_kit / "store.sqlite").execute("SELECT count(*), MAX(id) FROM audit").fetchone()
    assert f"Audit log: {rows[0]} rows, last row {rows[1]}" in (tmp_path / "r.html").read_text()
    head = json.loads((busy_kit / "kit.json").read_text())["audit_head"]
    assert (head["rows"], head["last_id"]) == rows


def test_rewriting_the_chain_without_the_secret_shows(busy_kit):
    """Change a review's audit row and recompute every later hash as plain SHA-256 (what the chain was
    before): without the kit secret the HMAC cannot be recomputed."""
    conn = sqlite3.connect(busy_kit / "store.sqlite")
    rows = conn.execute("SELECT id, ts, actor, action, object, before, after FROM audit ORDER BY id").fetchall()
    target = next(r[0] for r in rows if r[3] == "review.correct")
    prev = conn.execute("SELECT hash FROM audit WHERE id < ? ORDER BY id DESC LIMIT 1", [target]).fetchone()[0]
    with conn:
        for rid, ts, actor, action, obj, before, after in rows:
            if rid < target:
                continue
            if rid == target:
                actor = "someone-else"
            digest = row_hash(prev, ts, actor, action, obj, before, after)
            conn.execute("UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE id = ?", [actor, prev, digest, rid])
            prev = digest
    conn.close()
    kit = json.loads((busy_kit / "kit.json").read_text())
    kit["audit_head"]["last_hash"] = prev  # even with kit.json edited to match
    (busy_kit / "kit.json").write_text(json.dumps(kit))
    result = invoke(busy_kit, "check")
    assert result.exit_code == ExitCode.INTEGRITY and f"audit chain broken at row {target}" in one_line_error(result)


@pytest.mark.parametrize("sql, expected", [
    ("UPDATE reviews SET value = '\"39.9\"' WHERE decision = 'confirm'", "reviews without a matching audit row"),
    ("UPDATE reviews SET actor = 'mallory' WHERE decision = 'undo'", "reviews without a matching audit row"),
    ("DELETE FROM reviews WHERE decision = 'undo'", "audited reviews missing from the store"),
    ("UPDATE users SET role = 'supervisor' WHERE name = 'ann'", "user ann has role supervisor"),
    ("UPDATE patients SET allergies = 'none' WHERE mrn = (SELECT MIN(mrn) FROM patients)", "census snapshot 1"),
    ("INSERT INTO identity_links (downtime_mrn, real_mrn, actor, reason, at) SELECT value, '100002', 'x', 'y', 'z'"
     " FROM downtime_ids WHERE kind = 'mrn' LIMIT 1", "identity links without a matching audit row"),
], ids=["review-value", "undo-actor", "review-deleted", "role", "patient", "link"])
def test_direct_edits_of_audited_tables_are_caught(busy_kit, sql, expected):
    _edit(busy_kit, sql)
    result = invoke(busy_kit, "check")
    assert result.exit_code == ExitCode.INTEGRITY, result.output
    assert expected in one_line_error(result)


def test_decisions_merged_from_another_station_are_covered(tmp_path):
    """Reviews, undos and links made at station B arrive with B's audit rows (wrapped in merge.audit,
    with other row ids): `check` on the merged kit finds each one, and still catches an edit."""
    from fallbackkit.export import check
    from fallbackkit.reconcile import merge_store
    kit = census_kit(tmp_path)
    print_ward(kit, "3B", tmp_path / "w.pdf", actor="tester")
    print_blank(kit, "registration", 1, tmp_path / "b.pdf", actor="tester")
    fake_scan(kit, sheets_of(kit, forms_of(kit, "vitals", "3B")[1])[0], {}, tag="a-first")  # ids differ from B's
    kit.close()
    shutil.copytree(tmp_path / "kit", tmp_path / "station-b")
    other = open_kit(tmp_path / "station-b")
    capture = fake_scan(other, sheets_of(other, forms_of(other, "vitals", "3B")[0])[0], {}, tag="b-scan")
    ids = [r[0] for r in other.db.conn.execute("SELECT reading_id FROM readings WHERE capture_id = ? LIMIT 2",
                                               [capture])]
    undone = record_review(other.db.conn, ids[0], "correct", "y", "clerk-b")
    record_review(other.db.conn, ids[1], "correct", "z", "clerk-b")
    undo_review(other.db.conn, undone, "sup-b")
    downtime = other.db.conn.execute("SELECT value FROM downtime_ids WHERE kind = 'mrn' LIMIT 1").fetchone()[0]
    link_identity(other, downtime, "100003", "clerk-b", "wristband")
    other.close()
    kit = open_kit(tmp_path / "kit")
    added = merge_store(kit, tmp_path / "station-b", "it")["added"]
    assert added["reviews"] == 3 and added["identity_links"] == 1
    assert check(kit)["ok"]
    kit.close()
    _edit(tmp_path / "kit", "UPDATE reviews SET value = '\"w\"' WHERE actor = 'clerk-b' AND decision = 'correct'"
                            " AND undoes IS NULL AND value = '\"z\"'")
    result = invoke(tmp_path / "kit", "check")
    assert result.exit_code == ExitCode.INTEGRITY and "reviews without a matching audit row" in one_line_error(result)


def test_moving_the_hmac_marker_to_pass_plain_sha_rows_shows(busy_kit):
    """Downgrade: drop the marker and the migration row, rewrite history as plain SHA-256 (no secret
    needed), let the migration put the marker after the last row. kit.json still says where the HMAC
    began."""
    conn = sqlite3.connect(busy_kit / "store.sqlite")
    with conn:
        conn.execute("DELETE FROM _migrations WHERE name = 'm0004_audit_hmac'")
        conn.execute("DELETE FROM kit_meta WHERE key = 'audit_hmac_from'")
        conn.execute("UPDATE audit SET actor = 'mallory' WHERE action = 'review.correct'")
        prev = "0" * 64
        for rid, ts, actor, action, obj, before, after in conn.execute(
                "SELECT id, ts, actor, action, object, before, after FROM audit ORDER BY id").fetchall():
            digest = row_hash(prev, ts, actor, action, obj, before, after)
            conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", [prev, digest, rid])
            prev = digest
    conn.close()
    meta = json.loads((busy_kit / "kit.json").read_text())
    meta["audit_head"]["last_hash"] = prev
    (busy_kit / "kit.json").write_text(json.dumps(meta))
    result = invoke(busy_kit, "check")
    assert result.exit_code == ExitCode.INTEGRITY and "the marker was moved" in one_line_error(result)


def test_old_kits_plain_sha_rows_still_verify_and_new_rows_use_the_hmac(busy_kit):
    """A kit made before the HMAC: its rows are plain SHA-256 and it lacks migration m0004. They are kept
    and verified as written (not rewritten); rows from then on are HMACs."""
    conn = sqlite3.connect(busy_kit / "store.sqlite")
    with conn:
        conn.execute("DELETE FROM _migrations WHERE name = 'm0004_audit_hmac'")
        conn.execute("DELETE FROM kit_meta WHERE key = 'audit_hmac_from'")
        prev = "0" * 64
        for rid, ts, actor, action, obj, before, after in conn.execute(
                "SELECT id, ts, actor, action, object, before, after FROM audit ORDER BY id").fetchall():
            digest = row_hash(prev, ts, actor, action, obj, before, after)
            conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", [prev, digest, rid])
            prev = digest
        old_rows = conn.execute("SELECT MAX(id) FROM audit").fetchone()[0]
    conn.close()
    meta = json.loads((busy_kit / "kit.json").read_text())
    meta.pop("audit_head")
    (busy_kit / "kit.json").write_text(json.dumps(meta))
    assert invoke(busy_kit, "check").exit_code == 0  # upgrades, verifies the plain rows
    add = invoke(busy_kit, "users", "add", "bea", "--role", "clerk", input="long enough password\n")
    assert add.exit_code == 0
    conn = sqlite3.connect(busy_kit / "store.sqlite")
    assert int(conn.execute("SELECT value FROM kit_meta WHERE key = 'audit_hmac_from'").fetchone()[0]) == old_rows + 1
    ts, actor, action, obj, before, after, prev_hash, digest = conn.execute(
        "SELECT ts, actor, action, object, before, after, prev_hash, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    assert digest != row_hash(prev_hash, ts, actor, action, obj, before, after), "the new row is an HMAC"
    conn.close()
    assert invoke(busy_kit, "check").exit_code == 0
    _edit(busy_kit, "UPDATE audit SET actor = 'x' WHERE id = 2")
    result = invoke(busy_kit, "check")
    assert result.exit_code == ExitCode.INTEGRITY and "audit chain broken at row 2" in one_line_error(result)


# --- issue 14 item 3: atomic migrations --------------------------------------------------------
def test_a_failing_migration_leaves_nothing_behind(tmp_path, monkeypatch):
    kit = init_kit(tmp_path / "kit", actor="tester")
    kit.close()
    name = "m9999_broken"
    module = types.ModuleType(f"{migrations.__name__}.{name}")
    module.SCHEMA = "CREATE TABLE half_done (x INTEGER); CREATE INDEX half_done_x ON half_done (x);" \
                    " INSERT INTO no_such_table VALUES (1)"
    monkeypatch.setitem(sys.modules, module.__name__, module)
    shipped = migrations.available()
    monkeypatch.setattr(migrations, "available", lambda: [*shipped, name])
    result = invoke(tmp_path / "kit", "readings")
    assert result.exit_code == ExitCode.INTERNAL and "no_such_table" in one_line_error(result)
    conn = sqlite3.connect(tmp_path / "kit" / "store.sqlite")
    assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'half_done%'").fetchall() == []
    assert conn.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone() is None
    conn.close()
    module.SCHEMA = "CREATE TABLE half_done (x INTEGER); CREATE INDEX half_done_x ON half_done (x)"
    assert invoke(tmp_path / "kit", "readings").exit_code == 0, "the next run applies the fixed migration"
    conn = sqlite3.connect(tmp_path / "kit" / "store.sqlite")
    assert conn.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone() is not None
    conn.close()


# --- issue 14 item 6: --verbose logs, unknown errors are one line -------------------------------
def test_verbose_turns_on_debug_logging_of_the_library(cli_kit):
    quiet = invoke(cli_kit, "readings")
    assert quiet.exit_code == 0 and "DEBUG" not in quiet.stderr
    verbose = invoke(cli_kit, "--verbose", "readings")
    assert verbose.exit_code == 0
    assert "DEBUG fallbackkit.store.kit: opened kit" in verbose.stderr, verbose.stderr
    import logging
    assert logging.getLogger().handlers == [] or all(
        not getattr(h, "_fallbackkit_cli", False) for h in logging.getLogger().handlers), "root logger untouched"


def test_an_unknown_error_is_one_line_with_the_internal_exit_code(cli_kit, monkeypatch):
    import fallbackkit.reconcile.core as reconcile  # the command streams the report (iter_report)

    def broken(kit, full=False):
        raise KeyError("form_id")
    monkeypatch.setattr(reconcile, "iter_report", broken)
    result = invoke(cli_kit, "reconcile")
    assert result.exit_code == ExitCode.INTERNAL
    line = one_line_error(result)
    assert "internal error" in line and "KeyError" in line and "--verbose" in line
    verbose = invoke(cli_kit, "--verbose", "reconcile")
    assert verbose.exit_code == ExitCode.INTERNAL and "Traceback" in verbose.stderr

    def constraint(kit, full=False):  # a bug in a query is not a damaged store: nobody is sent to restore a backup
        raise sqlite3.IntegrityError("UNIQUE constraint failed: reviews.review_id")
    monkeypatch.setattr(reconcile, "iter_report", constraint)
    result = invoke(cli_kit, "reconcile")
    assert result.exit_code == ExitCode.INTERNAL and "restore" not in one_line_error(result)
