"""Merging a big station in chunks (issue 16): one transaction per chunk of new captures, so a
merge killed midway keeps what it committed and, run again, goes on to the same result as a merge
that was never interrupted. Real SQLite stores, fault injected between chunks."""
from __future__ import annotations

import json
import shutil

import pytest

from fallbackkit.reconcile import merge, merge_store, reconcile
from fallbackkit.store import open_kit
from fallbackkit.store.decisions import record_review

from reconcile_helpers import fake_scan, geometry


class Killed(Exception):
    pass


def _rows(kit, table: str) -> int:
    return kit.db.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


@pytest.fixture
def stations(kit, ward_pack, tmp_path):
    """Two copies of the kit taken before scanning (a and b) and a third station that scanned 12
    sheets and decided some readings."""
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for name in ("a", "b", "scanner"):
        shutil.copytree(kit.path, tmp_path / name)
    other = open_kit(tmp_path / "scanner")
    sheets = [r[0] for r in other.db.conn.execute("SELECT sheet_id FROM sheets ORDER BY rowid LIMIT 12")]
    for k, sid in enumerate(sheets):
        fields = geometry(other, sid)
        cid = fake_scan(other, sid, {fields[0]["name"]: True}, unsure=[fields[0]["name"]], tag=f"s{k}")
        if k % 3 == 0:
            rid = other.db.conn.execute("SELECT reading_id FROM readings WHERE capture_id = ? AND status = 'review'",
                                        [cid]).fetchone()[0]
            record_review(other.db, rid, "confirm", None, "clerk-c")
    other.close()
    return tmp_path


def test_a_merge_killed_between_chunks_resumes_to_the_same_result(stations, monkeypatch):
    monkeypatch.setattr(merge, "CAPTURES_PER_CHUNK", 5)
    remote = open_kit(stations / "scanner")
    readings_of = dict(remote.db.conn.execute("SELECT capture_id, COUNT(*) FROM readings GROUP BY capture_id"))
    remote.close()
    straight = open_kit(stations / "b")
    merge_store(straight, stations / "scanner", "it")

    a = open_kit(stations / "a")
    done = []

    def crash(start: int) -> None:
        done.append(start)
        if len(done) == 1:
            raise Killed("the power went off after the first chunk")

    monkeypatch.setattr(merge, "_chunk_done", crash)
    with pytest.raises(Killed):
        merge_store(a, stations / "scanner", "it")
    # the first chunk is kept whole: 5 captures, each with all its readings; nothing else yet
    assert _rows(a, "captures") == 5
    per_capture = a.db.conn.execute("SELECT c.file_sha256, COUNT(r.reading_id) FROM captures c"
                                    " LEFT JOIN readings r ON r.capture_id = c.capture_id GROUP BY c.capture_id").fetchall()
    assert all(n == readings_of[k + 1] for k, (_sha, n) in enumerate(per_capture))
    assert _rows(a, "reviews") == 0 and _rows(a, "merge_log") == 0
    part = a.db.conn.execute("SELECT after FROM audit WHERE action = 'merge.part'").fetchall()
    assert len(part) == 1 and json.loads(part[0][0])["added"]["captures"] == 5
    # run again: it goes on from there
    again = merge_store(a, stations / "scanner", "it")
    assert again["added"]["captures"] == 7
    for table in ("captures", "readings", "reviews", "input_files"):
        assert _rows(a, table) == _rows(straight, table), table
    assert reconcile(a, full=True) == reconcile(straight, full=True)
    assert reconcile(a) == reconcile(a, full=True)
    assert merge_store(a, stations / "scanner", "it")["added"] == {}
    a.close()
    straight.close()


def test_a_merge_process_killed_outright_resumes(stations):
    """The real thing: the merging process is killed (SIGKILL) after its first chunk committed."""
    import os
    import subprocess
    import sys
    import textwrap
    script = textwrap.dedent(f"""
        import os, signal
        from fallbackkit.reconcile import merge
        from fallbackkit.store import open_kit
        merge.CAPTURES_PER_CHUNK = 5
        merge._chunk_done = lambda start: os.kill(os.getpid(), signal.SIGKILL)
        merge.merge_store(open_kit({str(stations / "a")!r}), {str(stations / "scanner")!r}, "it")
    """)
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()},
                          capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    a = open_kit(stations / "a")
    assert _rows(a, "captures") == 5 and _rows(a, "merge_log") == 0
    merge_store(a, stations / "scanner", "it")
    straight = open_kit(stations / "b")
    merge_store(straight, stations / "scanner", "it")
    for table in ("captures", "readings", "reviews", "input_files"):
        assert _rows(a, table) == _rows(straight, table), table
    assert reconcile(a) == reconcile(straight, full=True)
    a.close()
    straight.close()


def _indexes(kit) -> list[tuple]:
    return kit.db.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'readings'"
                               " AND sql IS NOT NULL ORDER BY name").fetchall()  # not the UNIQUE's own


def test_a_bulk_merge_builds_the_indexes_it_set_aside_even_after_a_kill(stations, monkeypatch):
    """Into a station with fewer captures, a large merge inserts readings without their secondary
    indexes and builds them at the end. Killed midway (nothing runs after the kill), the station
    records which indexes are set aside, and the next merge builds them again: same indexes, same
    rows as a merge never interrupted."""
    from fallbackkit.store import readings
    monkeypatch.setattr(merge, "CAPTURES_PER_CHUNK", 5)
    monkeypatch.setattr(merge, "BULK_FROM", 1)
    straight = open_kit(stations / "b")
    wanted = _indexes(straight)
    assert len(wanted) >= 3
    dropped = []
    real_set_aside = readings.set_aside_indexes
    monkeypatch.setattr(merge, "set_aside_indexes", lambda conn: dropped.append(real_set_aside(conn)))
    merge_store(straight, stations / "scanner", "it")
    assert dropped and sorted(dropped[0]) == [n for n, _ in wanted]  # it did set them aside
    assert _indexes(straight) == wanted and readings.indexes_set_aside(straight.db.conn) == []

    a = open_kit(stations / "a")

    def kill(start: int) -> None:
        monkeypatch.setattr(merge, "_restore_indexes", lambda conn: None)  # a kill: nothing runs after it
        raise Killed("kill -9 after the first chunk")
    monkeypatch.setattr(merge, "_chunk_done", kill)
    with pytest.raises(Killed):
        merge_store(a, stations / "scanner", "it")
    assert _rows(a, "captures") == 5 and _indexes(a) == []
    assert readings.indexes_set_aside(a.db.conn) == [n for n, _ in wanted]
    monkeypatch.undo()
    again = merge_store(a, stations / "scanner", "it")
    assert again["added"]["captures"] == 7
    assert _indexes(a) == wanted and readings.indexes_set_aside(a.db.conn) == []
    for table in ("captures", "readings", "reviews", "input_files"):
        assert a.db.conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() == \
            straight.db.conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall(), table
    assert reconcile(a) == reconcile(straight) == reconcile(a, full=True)


def test_a_small_merge_into_a_busy_station_keeps_the_indexes(stations, monkeypatch):
    monkeypatch.setattr(merge, "set_aside_indexes", lambda conn: (_ for _ in ()).throw(AssertionError("set aside")))
    b = open_kit(stations / "b")
    merge_store(b, stations / "scanner", "it")  # 12 new captures: far below BULK_FROM
    assert _indexes(b)


def test_readings_copied_by_sql_are_those_copied_row_by_row(stations, monkeypatch):
    """A chunk's input files, captures and readings go from the attached store by INSERT ... SELECT: the same rows, the
    same ids, the same decisions on them (their readings mapped) as copied one row at a time."""
    monkeypatch.setattr(merge, "CAPTURES_PER_CHUNK", 5)
    import sqlite3
    with sqlite3.connect(stations / "scanner" / "store.sqlite") as raw:
        # the other station's ids differ from those given here (from 101), and two captures are
        # the same page as an earlier one: in the same chunk, in another
        raw.execute("PRAGMA foreign_keys = OFF")
        for table in ("readings", "captures", "quarantine"):
            raw.execute(f"UPDATE {table} SET capture_id = capture_id + 100")
        raw.execute("UPDATE captures SET duplicate_of = 102 WHERE capture_id = 104")
        raw.execute("UPDATE captures SET duplicate_of = 101 WHERE capture_id = 111")
    by_sql = open_kit(stations / "a")
    asked = []
    real = merge._Merger._scans_in_sql
    monkeypatch.setattr(merge._Merger, "_scans_in_sql", lambda self, *a: asked.append(1) or real(self, *a))
    merge_store(by_sql, stations / "scanner", "it")
    assert len(asked) == 3  # 12 captures, 5 a chunk
    monkeypatch.setattr(merge._Merger, "attach", lambda self, store: None)
    by_rows = open_kit(stations / "b")
    merge_store(by_rows, stations / "scanner", "it")
    assert len(asked) == 3
    for table in ("input_files", "captures", "readings", "reviews"):
        assert by_sql.db.conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() == \
            by_rows.db.conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall(), table
    assert _rows(by_sql, "reviews") > 0
    assert by_sql.db.conn.execute("SELECT capture_id, duplicate_of FROM captures WHERE duplicate_of IS NOT NULL"
                                  " ORDER BY 1").fetchall() == [(4, 2), (11, 1)]
    assert "merge_source" not in [r[1] for r in by_sql.db.conn.execute("PRAGMA database_list")]  # detached
