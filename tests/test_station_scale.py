"""The station at hospital scale (issue 16): what each screen and each keystroke of a clerk asks of
the store. Bounded, indexed reads; a decision that brings its own form's summary up to date in its
own transaction; readers that never take the write lock. Timings are for bench/bench_review.py
--large (100,000 captures, six clerks); these tests check the mechanics on a small real kit."""
from __future__ import annotations

import re

import pytest

from fallbackkit.reconcile import summary
from fallbackkit.review import app as station_app
from fallbackkit.review import create_app
from fallbackkit.store.decisions import record_review

from reconcile_helpers import fake_scan, geometry
from review_helpers import add_people
from test_review_app import csrf_of, login

# Tables that grow with the captures: a query of a screen may search them by index, never walk them.
# (patients: every census snapshot. review_claims holds one row per clerk at work, quarantine the
# pages that could not be read.)
GROWING = ("readings", "reviews", "captures", "audit", "sheets", "forms", "worklist_items", "worklist_marks",
           "form_summary", "form_reports", "form_reasons", "patients")
# Walks that are bounded all the same, and why.
BOUNDED = (
    "ORDER BY id DESC LIMIT ?",                     # the audit chain's last row: one step from the end
    "SELECT count(*) FROM audit",                   # the audit head for kit.json, at most once a second
    "SELECT COUNT(*) FROM sheets",                  # sheets printed: a count over the primary key (0.6 ms at 100k)
    "ORDER BY r.review_id DESC LIMIT ?",            # the Decisions screen: the newest decisions, newest first
)


def walks(conn, statements: list[str]) -> list[tuple[str, str]]:
    """(statement, plan) for every statement whose plan walks a growing table (SCAN, not SEARCH)."""
    found = []
    for sql in statements:
        if not re.match(r"\s*(SELECT|WITH|INSERT|UPDATE|DELETE)", sql, re.I):
            continue
        plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql)]
        bad = [line for line in plan if (re.match(rf"SCAN ({'|'.join(GROWING)})\b", line)
                                         or re.match(r"SCAN (\w+)\b", line) and _alias_of_growing(sql, line))
               and "INDEX form_summary_open_conflicts" not in line]  # a partial index: open conflicts only
        if bad and not any(known.replace("?", "") in re.sub(r"LIMIT \d+", "LIMIT ", sql) for known in BOUNDED):
            found.append((sql, " | ".join(plan)))
    return found


def _alias_of_growing(sql: str, line: str) -> bool:
    alias = re.match(r"SCAN (\w+)", line).group(1)
    return any(re.search(rf"\b{table}\s+(AS\s+)?{alias}\b", sql, re.I) for table in GROWING)


@pytest.fixture
def traced(monkeypatch):
    """Every statement the station's connections run (expanded, as SQLite ran it)."""
    statements: list[str] = []
    real = station_app.connect

    def connect(*args, **kwargs):
        db = real(*args, **kwargs)
        db.conn.set_trace_callback(statements.append)
        return db
    monkeypatch.setattr(station_app, "connect", connect)
    return statements


def _store_with_work(kit) -> None:
    """Every sheet of ward 3B scanned with unsure fields; the MAR sheets twice (a conflict each)."""
    for sid in [r[0] for r in kit.db.conn.execute("SELECT sheet_id FROM sheets ORDER BY rowid")]:
        fields = geometry(kit, sid)
        marks = [f["name"] for f in fields if f["type"] == "checkbox"]
        handwritten = [f["name"] for f in fields if f["type"] in ("initials", "number", "text")]
        fake_scan(kit, sid, {name: "x" for name in handwritten[:6]}, unsure=marks[:2])
        if marks:
            fake_scan(kit, sid, {marks[0]: True, **{name: "x" for name in handwritten[:6]}}, unsure=marks[1:2])
    summary.refresh(kit)


def test_station_screens_search_by_index_and_never_walk_a_growing_table(kit, ward_pack, traced):
    _store_with_work(kit)
    add_people(kit)
    client = create_app(kit.path).test_client()
    login(client, "clara")
    token = csrf_of(client)
    seen: dict[str, list] = {}
    after = 0
    for step in range(6):
        del traced[:]
        got = client.get(f"/api/next?after={after}" if after else "/api/next").get_json()
        seen[f"next item {step}"] = walks(kit.db.conn, traced)
        reading = got["reading"]
        del traced[:]
        resp = client.post(f"/api/readings/{reading['reading_id']}/decision",
                           json={"decision": "illegible", "seen_review_id": None}, headers={"X-CSRF-Token": token})
        assert resp.status_code == 200
        seen[f"decision {step}"] = walks(kit.db.conn, traced)
        after = reading["reading_id"]
    initials = kit.db.conn.execute("SELECT reading_id FROM readings WHERE type = 'initials' AND status = 'review'"
                                   " AND field LIKE '%.s%' ORDER BY reading_id DESC LIMIT 1").fetchone()[0]
    for path in ("/", "/queue", "/conflicts", "/conflicts?ward=3B&page=2", "/worklist", "/worklist?status=all&page=2", "/identities",
                 "/decisions", "/api/progress", "/api/progress?end=1", f"/api/readings/{initials}"):
        del traced[:]
        assert client.get(path).status_code == 200, path
        seen[path] = walks(kit.db.conn, traced)
    assert {k: v for k, v in seen.items() if v} == {}


def _station(kit):
    if not kit.db.conn.execute("SELECT 1 FROM users WHERE name = 'clara'").fetchone():
        add_people(kit)
    client = create_app(kit.path).test_client()
    login(client, "clara")
    return client, csrf_of(client)


def test_a_decision_commits_with_its_forms_summary_so_no_reader_finds_a_mark(kit, ward_pack, traced):
    """The review, its audit row and the form's recomputed summary are one transaction: a reader
    never finds the decision's mark (it would recompute the form itself, under the write lock)."""
    _store_with_work(kit)
    client, token = _station(kit)
    reading = client.get("/api/next").get_json()["reading"]
    fid = kit.db.conn.execute("SELECT form_id FROM sheets WHERE sheet_id = ?", [reading["sheet_id"]]).fetchone()[0]
    before = kit.db.conn.execute("SELECT to_review FROM form_summary WHERE form_id = ?", [fid]).fetchone()[0]
    del traced[:]
    resp = client.post(f"/api/readings/{reading['reading_id']}/decision",
                       json={"decision": "illegible", "seen_review_id": None}, headers={"X-CSRF-Token": token})
    assert resp.status_code == 200
    writes = [s for s in traced if re.match(r"(BEGIN|COMMIT|ROLLBACK|INSERT INTO reviews|DELETE FROM summary_dirty)", s)]
    assert writes[0] == "BEGIN IMMEDIATE" and writes[-1] == "COMMIT"
    # (SQLite reports a statement again for each trigger it runs)
    assert list(dict.fromkeys(w.split(" (")[0] for w in writes[1:-1])) == ["INSERT INTO reviews",
                                                                         "DELETE FROM summary_dirty"]
    assert summary.pending_forms(kit) == 0
    assert kit.db.conn.execute("SELECT to_review FROM form_summary WHERE form_id = ?", [fid]).fetchone()[0] == before - 1


def test_the_next_item_is_shown_as_it_is_when_handed_out(kit, ward_pack, monkeypatch):
    """The claim is a short write; the item is read afterwards in one snapshot. A decision saved by
    someone else between the two never reaches the clerk as "seen" (they would decide over it):
    the clerk is handed the next free reading instead, undecided."""
    from fallbackkit.review import queue as q
    _store_with_work(kit)
    client, _ = _station(kit)
    real = q.claim_next
    decided = []

    def claim_then_someone_decides(conn, actor, *args, **kwargs):
        rid = real(conn, actor, *args, **kwargs)
        if rid is not None and not decided:  # a supervisor decides it from another connection, in between
            record_review(kit.db, rid, "illegible", None, "sam")
            decided.append(rid)
        return rid
    monkeypatch.setattr(q, "claim_next", claim_then_someone_decides)
    got = client.get("/api/next").get_json()
    assert decided and got["reading"]["reading_id"] != decided[0]
    assert got["reading"]["review"] is None
    held = kit.db.conn.execute("SELECT reading_id FROM review_claims WHERE actor = 'clara'").fetchall()
    assert held == [(got["reading"]["reading_id"],)]


def test_screens_read_while_another_connection_holds_the_write_lock(kit, ward_pack, monkeypatch):
    """Readers never wait for a writer: with a scan (or another clerk's decision) holding the write
    lock, every screen answers at once (busy timeout 0: a view that needed the lock would fail)."""
    _store_with_work(kit)
    client, _ = _station(kit)
    rid = client.get("/api/next").get_json()["reading"]["reading_id"]
    real = station_app.connect

    def impatient(*args, **kwargs):
        db = real(*args, **kwargs)
        db.conn.execute("PRAGMA busy_timeout=0")
        return db
    monkeypatch.setattr(station_app, "connect", impatient)
    client, _ = _station(kit)
    writer = real(kit.path / "store.sqlite")
    writer.conn.execute("BEGIN IMMEDIATE")
    try:
        for path in ("/", "/queue", "/conflicts", "/worklist", "/identities", "/decisions", "/api/progress",
                     f"/api/readings/{rid}"):
            assert client.get(path).status_code == 200, path
    finally:
        writer.conn.rollback()
        writer.conn.close()
