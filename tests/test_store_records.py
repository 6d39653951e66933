"""store/ owns what it stores: one `atomic()`, one effective value of a reading after people's
decisions (asked the same way by the station, scan, reconcile and export), one quarantine listing,
and a scanned page stored whole or not at all. Real kit, real SQLite, rows as the scanner writes them."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fallbackkit.cli import cli
from fallbackkit.export.collect import iter_stores
from fallbackkit.reconcile.state import iter_capture_values
from fallbackkit.review.queue import open_quarantine, page_overlay
from fallbackkit.scan.pipeline import list_quarantine as cli_quarantine
from fallbackkit.scan.pipeline import list_readings
from fallbackkit.store import decisions
from fallbackkit.store.captures import NewReading, ScannedPage, store_page
from fallbackkit.store.quarantine import QuarantineItem, list_quarantine
from fallbackkit.store.readings import current_reviews, effective_readings
from fallbackkit.store.transactions import atomic

from reconcile_helpers import fake_quarantine, fake_scan, forms_of, sheets_of


def count_statements(conn):
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    return seen


# --- atomic() ---------------------------------------------------------------------------------
def test_atomic_nests_with_savepoints_and_the_outermost_block_commits(kit):
    conn = kit.db.conn
    conn.execute("CREATE TABLE t (x INTEGER)")
    with atomic(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(RuntimeError):
            with atomic(conn):
                conn.execute("INSERT INTO t VALUES (2)")
                raise RuntimeError("inner block fails")
        with atomic(conn):
            conn.execute("INSERT INTO t VALUES (3)")
        assert conn.in_transaction  # nothing committed before the outer block ends
    assert not conn.in_transaction
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == [1, 3]
    with pytest.raises(RuntimeError):
        with atomic(conn):
            conn.execute("INSERT INTO t VALUES (4)")
            with atomic(conn):
                conn.execute("INSERT INTO t VALUES (5)")
            raise RuntimeError("outer block fails")
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == [1, 3]


def test_a_decision_inside_a_failing_block_is_not_kept(kit, ward_pack):
    """record_review inside a caller's atomic(): a savepoint, so the caller's failure undoes it
    (before, write_transaction joined the caller's transaction and store_page needed a wrapper)."""
    sid = sheets_of(kit, forms_of(kit, "lab-request", "3B")[0])[0]
    cid = fake_scan(kit, sid, {}, unsure=["fasting"])
    rid = kit.db.conn.execute("SELECT reading_id FROM readings WHERE capture_id = ? AND field = 'fasting'",
                              [cid]).fetchone()[0]
    with pytest.raises(RuntimeError):
        with atomic(kit.db):
            decisions.record_review(kit.db, rid, "correct", True, "clara")
            raise RuntimeError("the caller gives up")
    assert decisions.current_review(kit.db, rid) is None
    assert not kit.db.conn.execute("SELECT 1 FROM audit WHERE action = 'review.correct'").fetchone()


# --- the effective value ------------------------------------------------------------------------
def _decided_kit(kit):
    """Readings with every kind of decision: corrected, corrected then undone, corrected, undone and
    decided again, transcribed, illegible; plus a second capture of the same sheet."""
    sid = sheets_of(kit, forms_of(kit, "lab-request", "3B")[0])[0]
    cid = fake_scan(kit, sid, {"fasting": True}, unsure=["fasting", "priority"])
    names = {r[1]: r[0] for r in kit.db.conn.execute("SELECT reading_id, field, type FROM readings"
                                                      " WHERE capture_id = ?", [cid])}
    conn = kit.db.conn
    hand = [n for n, t in conn.execute("SELECT field, type FROM readings WHERE capture_id = ?", [cid])
            if t in ("text", "number", "datetime")]
    decisions.record_review(conn, names["fasting"], "correct", False, "clara")
    undone = decisions.record_review(conn, names["priority"], "correct", "routine", "clara")
    decisions.undo_review(conn, undone, "sam", "wrong box")
    first = decisions.record_review(conn, names[hand[0]], "transcribe", "12", "clara")
    decisions.undo_review(conn, first, "sam")
    decisions.record_review(conn, names[hand[0]], "transcribe", "21", "bob")
    decisions.record_review(conn, names[hand[1]], "illegible", None, "bob")
    second = fake_scan(kit, sid, {"fasting": True})
    return sid, cid, second, names, hand


def test_every_stage_sees_the_same_value_after_decisions(kit, ward_pack):
    sid, cid, second, names, hand = _decided_kit(kit)
    ours = {r.reading_id: r for r in effective_readings(kit.db)}
    assert ours[names["fasting"]].value is False and ours[names["fasting"]].source == "correct"
    assert ours[names["priority"]].source == "machine" and not ours[names["priority"]].resolved  # undone: waits again
    assert ours[names[hand[0]]].value == "21" and ours[names[hand[0]]].reviewer == "bob"
    assert ours[names[hand[1]]].source == "illegible" and ours[names[hand[1]]].resolved
    want = {rid: (r.value, r.resolved, r.source, r.reviewer) for rid, r in ours.items()}
    # the review station (one reading, and a page overlay), decisions, reconcile, export, `readings list`
    for rid in names.values():
        one = decisions.effective_reading(kit.db, rid)
        assert (one["value"], one["resolved"], one["source"], one["reviewer"]) == want[rid]
    overlay_seen = {f["reading_id"]: (f["value"], f["resolved"], f["source"])
                    for f in page_overlay(kit.db, cid)["fields"]}
    assert all(overlay_seen[rid] == want[rid][:3] for rid in overlay_seen)
    for _cid, values in iter_capture_values(kit):
        for v in values.values():
            assert (v.value, v.resolved, v.source, v.reviewer) == want[v.reading_id]
    for r in (r for store in iter_stores(kit) for r in store.readings):
        assert (r.value, r.resolved, r.source, r.reviewer) == want[r.reading_id]
    latest = {r["reading_id"]: r for r in list_readings(kit, sheet_id=sid)}
    assert {r["capture_id"] for r in latest.values()} == {second}  # the sheet's latest capture only
    assert decisions.current_review(kit.db, names["priority"]) is None
    assert set(current_reviews(kit.db)) == {names["fasting"], names[hand[0]], names[hand[1]]}


def test_the_effective_value_is_one_query_not_one_per_reading(kit, ward_pack):
    """`readings list` and the station's page overlay asked once per reading before."""
    for form_id in forms_of(kit, "lab-request", "3B")[:3]:
        fake_scan(kit, sheets_of(kit, form_id)[0], {"fasting": True}, unsure=["priority"])
    readings = kit.db.conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    assert readings > 20
    seen = count_statements(kit.db.conn)
    list_readings(kit)
    kit.db.conn.set_trace_callback(None)
    assert len([s for s in seen if "reviews" in s]) <= 2, seen
    cid = kit.db.conn.execute("SELECT MAX(capture_id) FROM captures").fetchone()[0]
    seen = count_statements(kit.db.conn)
    list(effective_readings(kit.db, capture_ids=[cid]))
    kit.db.conn.set_trace_callback(None)
    assert len(seen) == 2, seen


# --- one quarantine listing ---------------------------------------------------------------------
def test_one_quarantine_listing_with_one_set_of_names(kit, ward_pack):
    sid = sheets_of(kit, forms_of(kit, "lab-request", "3B")[0])[0]
    fake_quarantine(kit)
    fake_quarantine(kit, sid, reason="poor_marks")
    items = list_quarantine(kit.db)
    assert [type(i) for i in items] == [QuarantineItem, QuarantineItem]
    names = set(items[0].as_dict())
    assert {"quarantine_id", "capture_id", "reason", "file", "page_index", "image_path", "payload"} <= names
    assert open_quarantine(kit.db) == [i.as_dict() for i in items]  # the review station
    # the CLI: the same records, plus the two names it always had (page = page_index, image = image_path)
    assert [{k: v for k, v in r.items() if k in names} for r in cli_quarantine(kit)] == [i.as_dict() for i in items]
    out = CliRunner().invoke(cli, ["--kit", str(kit.path), "quarantine", "list", "--json"])
    assert out.exit_code == 0, out.output
    assert [set(r) for r in json.loads(out.output)] == [names | {"page", "image"}] * 2
    assert [r["page"] for r in json.loads(out.output)] == [i.page_index for i in items]


# --- a scanned page, whole or not at all ----------------------------------------------------------
def _page(kit, sheet_id: str, readings) -> ScannedPage:
    s = kit.db.conn.execute("SELECT template, version, page, pages FROM sheets WHERE sheet_id = ?",
                            [sheet_id]).fetchone()
    sha = "ab" * 32
    with kit.db.conn:
        kit.db.conn.execute("INSERT OR IGNORE INTO input_files (sha256, size, kind, pages, status, first_path,"
                            " started_at) VALUES (?, 1, 'png', 1, 'started', 'x.png', 'now')", [sha])
    return ScannedPage(sha, 1, "read", sheet_id, s[0], s[1], s[2], s[3], 0, None, 0.1, 150.0, {}, None, 10, 10,
                       readings=tuple(readings))


def test_a_page_that_fails_half_way_leaves_nothing_behind(kit, ward_pack):
    sid = sheets_of(kit, forms_of(kit, "lab-request", "3B")[0])[0]
    twice = [NewReading("fasting", "checkbox", "{}", True, 0.99, "accepted", None, None)] * 2  # UNIQUE fails
    assert store_page(kit.db, _page(kit, sid, twice)) is None
    assert kit.db.conn.execute("SELECT COUNT(*) FROM captures").fetchone()[0] == 0
    stored = store_page(kit.db, _page(kit, sid, twice[:1]))
    assert stored is not None and stored.accepted == 1 and stored.review == 0
    assert store_page(kit.db, _page(kit, sid, twice[:1])) is None  # the same page again: stored once
    assert kit.db.conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 1
