"""Summaries kept up to date on write (issue 16): after any sequence of scans, decisions, undos,
links, marks, quarantined pages and merges, the kept per-form state equals the full recompute.
Real SQLite, a real printed kit, captures stored as the scan stage stores them."""
from __future__ import annotations

import json
import random
import re
import shutil

import pytest

from fallbackkit.errors import FallbackkitError
from fallbackkit.generate import print_blank
from fallbackkit.reconcile import link_identity, list_identities, mark_item, merge_store, reconcile, worklist
from fallbackkit.reconcile import summary
from fallbackkit.review import queue as q
from fallbackkit.store import open_kit
from fallbackkit.store.decisions import record_review, undo_review

from reconcile_helpers import fake_quarantine, fake_scan, geometry

HANDWRITTEN = {"number", "datetime", "text", "initials", "signature"}


def _random_values(rng: random.Random, kit, sheet_id: str) -> tuple[dict, list[str]]:
    values, unsure = {}, []
    for f in geometry(kit, sheet_id):
        name, ftype = f["name"], f["type"]
        r = rng.random()
        if ftype in HANDWRITTEN:
            if r < 0.15:
                values[name] = "x"
        elif ftype == "checkbox":
            values[name] = r < 0.3
        elif ftype == "choice" and f.get("options"):
            values[name] = rng.choice([o["value"] for o in f["options"]]) if r < 0.4 else None
        elif ftype == "multichoice" and f.get("options"):
            values[name] = [f["options"][0]["value"]] if r < 0.4 else []
        if rng.random() < 0.05:
            unsure.append(name)
    return values, unsure


def _waiting(kit) -> list[tuple[int, str]]:
    return kit.db.conn.execute(
        "SELECT rd.reading_id, rd.type FROM readings rd WHERE rd.status = 'review' AND NOT EXISTS"
        " (SELECT 1 FROM reviews r WHERE r.reading_id = rd.reading_id) ORDER BY rd.reading_id").fetchall()


def _decide(rng: random.Random, kit, actor: str) -> None:
    waiting = _waiting(kit)
    if not waiting:
        return
    rid, ftype = rng.choice(waiting)
    if ftype in HANDWRITTEN:
        value = rng.choice(["12", "28/11/2026 09:00", "A.B.", "DUPONT, Marie", None])
        record_review(kit.db, rid, "transcribe", value, actor)
    elif ftype == "checkbox":
        record_review(kit.db, rid, "correct", rng.random() < 0.5, actor)
    else:
        record_review(kit.db, rid, "confirm", None, actor)


def _undo(rng: random.Random, kit) -> None:
    rows = kit.db.conn.execute("SELECT review_id FROM reviews v WHERE decision != 'undo' AND NOT EXISTS"
                               " (SELECT 1 FROM reviews u WHERE u.undoes = v.review_id) ORDER BY review_id").fetchall()
    if rows:
        undo_review(kit.db, rng.choice(rows)[0], "supervisor", "test")


def _mark(rng: random.Random, kit) -> None:
    items = worklist(kit, full=rng.random() < 0.5)
    if not items:
        return
    item = rng.choice(items)
    status = rng.choice(["entered", "not-needed", "pending"])
    try:
        mark_item(kit, item.item_id, status, "clerk")
    except FallbackkitError:
        pass  # refused (unresolved, already entered): nothing written


def _link(rng: random.Random, kit) -> None:
    free = [i["downtime_mrn"] for i in list_identities(kit) if i["kind"] == "mrn" and not i["linked_to"]]
    if free:
        try:
            link_identity(kit, rng.choice(free), rng.choice(["100001", "100002", "100003"]), "clerk", "wristband")
        except FallbackkitError:
            pass


def _scan(rng: random.Random, kit, tag: str | None = None) -> None:
    sheets = [r[0] for r in kit.db.conn.execute("SELECT sheet_id FROM sheets ORDER BY sheet_id")]
    sid = rng.choice(sheets)
    values, unsure = _random_values(rng, kit, sid)
    fake_scan(kit, sid, values, unsure=unsure, tag=tag)


def assert_kept_equals_full(kit) -> None:
    full = reconcile(kit, full=True)
    kept = reconcile(kit)
    assert kept["totals"] == full["totals"]
    assert kept["forms"] == json.loads(json.dumps(full["forms"]))
    items = [i.as_dict() for i in worklist(kit, full=True)]
    assert [i.as_dict() for i in summary.iter_items(kit)] == json.loads(json.dumps(items))
    assert summary.queue_counts(kit) == q.queue_counts(kit.db)
    rows: dict[str, dict[str, int]] = {}
    for form in full["forms"]:
        w = rows.setdefault(form["ward"] or "—", dict.fromkeys(
            ("printed", "returned", "missing", "to_review", "to_reenter", "entered"), 0))
        w["printed"] += form["pages"]
        w["returned"] += len(form["pages_returned"])
        w["missing"] += len(form["pages_missing"])
        w["to_review"] += form["to_review"]
    for item in items:
        w = rows[item["ward"] or "—"]
        w["to_reenter"] += item["status"] == "pending"
        w["entered"] += item["status"] == "entered"
    assert summary.ward_rows(kit) == rows
    for ward in (None, "3B"):
        for status in (None, "pending", "entered"):
            grouped: dict = {}
            for item in items:
                if (ward is None or item["ward"] == ward) and (status is None or item["status"] == status):
                    grouped.setdefault(item["patient_mrn"], []).append(item)
            pages = []
            for page in range(1, len(grouped) // 3 + 2):
                pages += summary.worklist_patients(kit, ward, status, per_page=3, page=page, items_per_patient=1000)
            assert [(p["mrn"], [i.as_dict() for i in p["items"]], p["n_items"], p["pending"]) for p in pages] == [
                (mrn, json.loads(json.dumps(its)), len(its), sum(1 for i in its if i["status"] == "pending"))
                for mrn, its in grouped.items()]
            assert summary.item_counts(kit, ward, status) == (sum(map(len, grouped.values())), len(grouped))
    identities = [i for i in list_identities(kit) if i["kind"] == "mrn"]
    assert summary.unlinked_identities(kit) == sum(1 for i in identities if not i["linked_to"])
    assert summary.names_on_paper(kit, [i["downtime_mrn"] for i in identities]) == {
        i["downtime_mrn"]: i["name"] for i in identities if i["name"]}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kept_summaries_equal_the_full_recompute_after_random_work(kit, ward_pack, tmp_path, seed):
    rng = random.Random(seed)
    print_blank(kit, "registration", 2, tmp_path / "reg.pdf", actor="t")
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(kit.path, tmp_path / "station-b")
    other = open_kit(tmp_path / "station-b")
    for k in range(6):  # the other station scans and decides on its own copy
        _scan(rng, other, tag=f"b-{seed}-{k}")
        _decide(rng, other, "clerk-b")
    other.close()
    steps = ["scan"] * 6 + ["decide"] * 6 + ["undo"] * 2 + ["mark"] * 2 + ["link", "quarantine", "merge"]
    for n in range(40):
        step = rng.choice(steps)
        if step == "scan":
            _scan(rng, kit)
        elif step == "decide":
            _decide(rng, kit, rng.choice(["clara", "sam"]))
        elif step == "undo":
            _undo(rng, kit)
        elif step == "mark":
            _mark(rng, kit)
        elif step == "link":
            _link(rng, kit)
        elif step == "quarantine":
            sid = rng.choice([r[0] for r in kit.db.conn.execute("SELECT sheet_id FROM sheets ORDER BY sheet_id")])
            fake_quarantine(kit, sid)
        elif step == "merge":
            merge_store(kit, tmp_path / "station-b", "it")
        if rng.random() < 0.3:  # the views sometimes read between writes, sometimes not
            summary.refresh(kit)
        if n % 13 == 12:
            assert_kept_equals_full(kit)
    assert_kept_equals_full(kit)
    totals = reconcile(kit)["totals"]
    assert totals["sheets_returned"] >= 5 and totals["readings_to_review"] + totals["conflicts"] > 0


def test_a_write_marks_its_form_in_its_own_transaction(kit, ward_pack):
    summary.refresh(kit)
    assert summary.pending_forms(kit) == 0
    sid, fid = kit.db.conn.execute("SELECT sheet_id, form_id FROM sheets ORDER BY rowid LIMIT 1").fetchone()
    conn = kit.db.conn
    conn.execute("BEGIN")
    conn.execute("INSERT INTO input_files (sha256, size, kind, pages, status, first_path, started_at)"
                 " VALUES ('abc', 1, 'png', 1, 'done', 'x.png', 'now')")
    conn.execute("INSERT INTO captures (file_sha256, page_index, status, sheet_id, captured_at)"
                 " VALUES ('abc', 1, 'read', ?, 'now')", [sid])
    assert [r[0] for r in conn.execute("SELECT form_id FROM summary_dirty")] == [fid]
    conn.rollback()  # the write is undone, and so is its mark
    assert summary.pending_forms(kit) == 0
    cid = fake_scan(kit, sid, unsure=[geometry(kit, sid)[0]["name"]])
    assert [r[0] for r in conn.execute("SELECT form_id FROM summary_dirty")] == [fid]
    assert summary.refresh(kit) == 1 and summary.pending_forms(kit) == 0
    rid = conn.execute("SELECT reading_id FROM readings WHERE capture_id = ? AND status = 'review'", [cid]).fetchone()[0]
    before = summary.totals(kit)["readings_to_review"]
    record_review(kit.db, rid, "confirm", None, "clara")
    assert [r[0] for r in conn.execute("SELECT form_id FROM summary_dirty")] == [fid]
    assert summary.totals(kit)["readings_to_review"] == before - 1


def test_summary_queries_use_indexes_not_readings(kit, ward_pack):
    summary.refresh(kit)
    conn = kit.db.conn
    plans = {
        "conflicts": "SELECT s.form_id FROM form_summary s JOIN forms f ON f.form_id = s.form_id"
                     " WHERE s.conflicts > 0 ORDER BY f.rowid LIMIT 10",
        "patients": "SELECT patient, MIN(first_key), SUM(items) FROM worklist_patients WHERE status = 'pending'"
                    " GROUP BY patient ORDER BY 2 LIMIT 20",
        "patient counts": "SELECT patient, ward, status, COUNT(*), MIN(sort_key) FROM worklist_items"
                          " WHERE patient IS 'x' GROUP BY ward, status",
        "patient items": "SELECT item FROM worklist_items WHERE status = 'pending' AND patient IS 'x'"
                         " ORDER BY sort_key LIMIT 200",
    }
    for name, sql in plans.items():
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "readings" not in plan, (name, plan)
        assert "SCAN form_summary" not in plan or "INDEX" in plan, (name, plan)
        assert "SCAN worklist_items" not in plan or "COVERING INDEX" in plan, (name, plan)


def _conflicting_scans(kit, n: int) -> list[str]:
    """n MAR sheets scanned twice with a different mark on the second capture (a conflict each)."""
    sheets = []
    for sid in [r[0] for r in kit.db.conn.execute("SELECT sheet_id FROM sheets ORDER BY rowid")]:
        marks = [f for f in geometry(kit, sid) if f["type"] == "checkbox"]
        if not marks:
            continue
        fake_scan(kit, sid, {marks[0]["name"]: True})
        fake_scan(kit, sid, {marks[0]["name"]: False})
        sheets.append(sid)
        if len(sheets) == n:
            break
    return sheets


def test_station_screens_read_the_kept_summaries_and_page(kit, ward_pack):
    from fallbackkit.review import create_app
    from review_helpers import add_people
    from test_review_app import csrf_of, login
    sheets = _conflicting_scans(kit, 3)
    forms = {kit.db.conn.execute("SELECT form_id FROM sheets WHERE sheet_id = ?", [s]).fetchone()[0] for s in sheets}
    add_people(kit)
    app = create_app(kit.path)
    assert summary.pending_forms(kit) == 0  # the station brings the summaries up to date when it starts
    app.config["CONFLICT_FORMS_PER_PAGE"] = 1
    client = app.test_client()
    login(client, "clara")
    pages = [client.get(f"/conflicts?page={n}").get_data(as_text=True) for n in range(1, len(forms) + 1)]
    shown = [set(re.findall(r'<section class="sheetgroup card" data-sheet="([^"]+)"', p)) for p in pages]
    assert all(len(s) == 1 for s in shown) and set().union(*shown) == set(sheets)
    assert 'class="pager"' in pages[0] and 'href="/conflicts?page=2"' in pages[0]
    # a decision saved through the station: its form is recomputed in the same request
    cid = fake_scan(kit, sheets[0], unsure=[geometry(kit, sheets[0])[0]["name"]])
    before = summary.totals(kit)["readings_to_review"]
    dash = client.get("/").get_data(as_text=True)
    rid = kit.db.conn.execute("SELECT reading_id FROM readings WHERE capture_id = ? AND status = 'review'",
                              [cid]).fetchone()[0]
    token = csrf_of(client)
    resp = client.post(f"/api/readings/{rid}/decision", json={"decision": "confirm", "seen_review_id": None},
                       headers={"X-CSRF-Token": token})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert summary.pending_forms(kit) == 0
    assert summary.totals(kit)["readings_to_review"] == before - 1
    assert client.get("/").get_data(as_text=True) != dash
    assert_kept_equals_full(kit)
    # the worklist: a page of patients, or one patient's items
    page = client.get("/worklist?status=all").get_data(as_text=True)
    mrns = re.findall(r'<details class="card patient" data-mrn="([^"]+)"', page)
    assert mrns
    one = client.get(f"/worklist?status=all&patient={mrns[0]}").get_data(as_text=True)
    assert re.findall(r'<details class="card patient" data-mrn="([^"]+)"', one) == [mrns[0]]
    app.config["WORKLIST_ITEMS_PER_PATIENT"] = 1
    page = client.get("/worklist?status=all").get_data(as_text=True)
    assert "more items of this patient" in page and f"patient={mrns[0]}" in page


def test_a_kit_setting_changed_by_an_upsert_marks_every_form(kit, ward_pack):
    """The time zone changes care times everywhere: every form is recomputed (and the upsert that
    writes the setting is not broken by the trigger's own insert)."""
    from fallbackkit.store.settings import set_setting
    summary.refresh(kit)
    set_setting(kit, "tz", "Europe/Paris", "it")
    set_setting(kit, "tz", "Europe/Brussels", "it")
    assert summary.pending_forms(kit) == kit.db.conn.execute("SELECT COUNT(*) FROM forms").fetchone()[0]
    assert_kept_equals_full(kit)


def test_a_backup_marks_no_form(kit, ward_pack, tmp_path):
    """A backup writes the audit head it carries into kit_meta, where the settings live: that is no
    setting, so the station's next decision must not recompute every form (minutes at 100k)."""
    from fallbackkit.export.backup import backup
    from fallbackkit.reconcile.identity import set_real_mrn_pattern
    summary.refresh(kit)
    backup(kit, tmp_path / "b1.sqlite", "it")
    backup(kit, tmp_path / "b2.sqlite", "it")  # the second one updates the key
    assert summary.pending_forms(kit) == 0
    set_real_mrn_pattern(kit, "[0-9]{6}", "it")  # any other key of kit_meta still marks every form
    assert summary.pending_forms(kit) == kit.db.conn.execute("SELECT COUNT(*) FROM forms").fetchone()[0]


@pytest.mark.parametrize("per_commit", [1, 2])
def test_a_scan_stores_each_page_with_its_forms_summary(kit, blank_lab, monkeypatch, per_commit):
    """A scan brings its pages' form summaries up to date in the pages' own transaction (a group of
    PAGES_PER_COMMIT pages): another process (the station) never finds a scanned form marked, so no
    view recomputes it (at 100k captures a view used to recompute every form the scan had touched so
    far), and it sees every page of a group counted as the group lands."""
    import sqlite3

    from fallbackkit.scan import pipeline
    from fallbackkit.scan.pipeline import scan_paths
    station = sqlite3.connect(kit.path / "store.sqlite")  # what another process sees between pages
    real, seen = pipeline.store_page, []

    def store_page(conn, page):
        seen.append((station.execute("SELECT COUNT(*) FROM summary_dirty").fetchone()[0],
                     station.execute("SELECT COALESCE(SUM(returned), 0) FROM form_summary").fetchone()[0]))
        return real(conn, page)
    summary.refresh(kit)
    monkeypatch.setattr(pipeline, "store_page", store_page)
    monkeypatch.setattr(pipeline, "PAGES_PER_COMMIT", per_commit)
    monkeypatch.setattr(pipeline, "SECONDS_PER_COMMIT", 3600.0)
    scan_paths(kit, [blank_lab.out_path], workers=0, progress=False)
    seen.append((station.execute("SELECT COUNT(*) FROM summary_dirty").fetchone()[0],
                 station.execute("SELECT COALESCE(SUM(returned), 0) FROM form_summary").fetchone()[0]))
    station.close()
    pages = len(seen) - 1
    # no mark between groups; each group counted as it lands, all of them in the end
    assert seen == [(0, n // per_commit * per_commit) for n in range(pages)] + [(0, pages)]
    assert_kept_equals_full(kit)


def _other_station(kit, tmp_path, seed: int, refreshed: bool = True):
    """A copy of the kit (b) that scans three sheets in four, rescans some (duplicates, conflicts),
    decides, links and marks on its own; its summaries brought up to date as its views do.
    Returns the random source and the (sheet id, file tag) of its scans."""
    rng = random.Random(seed)
    print_blank(kit, "registration", 8, tmp_path / "reg.pdf", actor="t")
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(kit.path, tmp_path / "station-b")
    other = open_kit(tmp_path / "station-b")
    sheets = [r[0] for r in other.db.conn.execute("SELECT sheet_id FROM sheets ORDER BY rowid")]
    scanned = []
    for k, sid in enumerate(sheets):
        if k % 4 == 3:
            continue
        values, unsure = _random_values(rng, other, sid)
        scanned.append((sid, f"b-{seed}-{k}"))
        fake_scan(other, sid, values, unsure=unsure, tag=scanned[-1][1])
        if k % 5 == 0:  # scanned again, with other marks
            values, unsure = _random_values(rng, other, sid)
            fake_scan(other, sid, values, unsure=unsure, tag=f"b-{seed}-{k}-again")
    for _ in range(8):
        _decide(rng, other, "clerk-b")
    for _ in range(2):
        _link(rng, other)
    for _ in range(3):
        _mark(rng, other)
    summary.refresh(other)
    if not refreshed:  # one more scan its views have not seen yet
        fake_scan(other, sheets[-1], {}, tag=f"b-{seed}-last")
        assert summary.pending_forms(other) == 1
    other.close()
    return rng, scanned


def _spy_copies(monkeypatch) -> list[int]:
    copied: list[int] = []
    real = summary.copy_kept
    monkeypatch.setattr(summary, "copy_kept", lambda *a: copied.append(real(*a)) or copied[-1])
    return copied


def _form_of(kit, sheet_id: str) -> str:
    return kit.db.conn.execute("SELECT form_id FROM sheets WHERE sheet_id = ?", [sheet_id]).fetchone()[0]


@pytest.mark.parametrize("seed", [1, 2])
def test_a_merge_copies_the_other_stations_summaries_of_forms_held_only_there(kit, ward_pack, tmp_path, seed,
                                                                               monkeypatch):
    """Forms this station holds nothing of get the other station's kept summaries (copied, not
    recomputed; a page scanned twice named by this station's capture and reading ids); forms both
    hold (also by the same scanned file, read differently here), a form whose link or item mark
    differs here are recomputed: the kept state equals the full recompute."""
    from fallbackkit.store.kit import now_iso
    rng, scanned = _other_station(kit, tmp_path, seed)
    other = open_kit(tmp_path / "station-b")
    their_links = {i["downtime_mrn"] for i in list_identities(other) if i["linked_to"]}
    their_items = [i.item_id for i in summary.iter_items(other)]
    scanned_once = {r[0] for r in other.db.conn.execute("SELECT form_id FROM form_summary WHERE duplicates = 0")}
    other.close()
    mine = scanned[len(scanned) // 2:][:6]
    for k, (sid, tag) in enumerate(mine):  # the same file as the other's scan (read otherwise), or another
        values, unsure = _random_values(rng, kit, sid)
        fake_scan(kit, sid, values, unsure=unsure, tag=tag if k % 2 else f"a-{seed}-{k}")
    _decide(rng, kit, "clara")
    held = {_form_of(kit, sid) for sid, _ in mine}
    only_there = {_form_of(kit, sid) for sid, _ in scanned} - held
    dts = dict(kit.db.conn.execute("SELECT form_id, downtime_mrn FROM forms WHERE downtime_mrn IS NOT NULL"))
    dt = next(dts[f] for f in sorted(only_there & scanned_once) if f in dts and dts[f] not in their_links)
    link_identity(kit, dt, "100009", "clerk", "wristband")  # a link only this station made
    item = next(i for i in their_items if i.split(":")[0] in only_there & scanned_once and dts.get(i.split(":")[0]) != dt)
    with kit.db.conn:  # a mark only this station has, on an item of a form it holds nothing else of
        kit.db.conn.execute("INSERT INTO worklist_marks (item_id, status, actor, at, note) VALUES (?, 'not-needed',"
                            " 'clerk-a', ?, 'seen on the ward')", [item, now_iso()])
    summary.refresh(kit)
    copied = _spy_copies(monkeypatch)
    merge_store(kit, tmp_path / "station-b", "it")
    assert copied and copied[0] > 0
    assert summary.pending_forms(kit) > 0  # and others left to recompute
    assert_kept_equals_full(kit)
    merge_store(kit, tmp_path / "station-b", "it")  # nothing new: nothing copied again
    assert len(copied) == 1  # no new capture: nothing to copy, not even looked at
    assert_kept_equals_full(kit)


def test_a_merge_into_a_station_that_must_recompute_everything_copies_too(kit, ward_pack, tmp_path, monkeypatch):
    """Every form marked (a migration, a setting): the forms held only there are copied, every
    other form is marked one by one, and the sums per ward, reason and patient are right."""
    _other_station(kit, tmp_path, 5)
    summary.refresh(kit)
    kit.db.conn.execute("INSERT INTO summary_dirty (form_id) VALUES ('**')")
    kit.db.conn.commit()
    copied = _spy_copies(monkeypatch)
    merge_store(kit, tmp_path / "station-b", "it")
    assert copied[0] > 0
    assert kit.db.conn.execute("SELECT COUNT(*) FROM summary_dirty WHERE form_id = '**'").fetchone()[0] == 0
    assert_kept_equals_full(kit)


def test_nothing_is_copied_from_a_station_whose_summaries_are_not_current(kit, ward_pack, tmp_path, monkeypatch):
    _other_station(kit, tmp_path, 7, refreshed=False)
    copied = _spy_copies(monkeypatch)
    merge_store(kit, tmp_path / "station-b", "it")
    assert copied == [0]
    assert_kept_equals_full(kit)


def test_nothing_is_copied_when_a_setting_or_a_template_differs(kit, ward_pack, tmp_path, monkeypatch):
    from fallbackkit.store.settings import set_setting
    _other_station(kit, tmp_path, 8)
    set_setting(kit, "tz", "Europe/Brussels", "it")
    copied = _spy_copies(monkeypatch)
    merge_store(kit, tmp_path / "station-b", "it")
    assert copied == [0]
    assert_kept_equals_full(kit)


def test_a_killed_merge_resumed_copies_what_it_may_and_equals_the_full_recompute(kit, ward_pack, tmp_path,
                                                                                monkeypatch):
    """Killed after its first chunk: the forms of that chunk are this station's now (recomputed),
    the rest are copied when the merge is run again; the kept state equals the full recompute."""
    from fallbackkit.reconcile import merge

    class Killed(Exception):
        pass

    _other_station(kit, tmp_path, 9)
    monkeypatch.setattr(merge, "CAPTURES_PER_CHUNK", 4)

    def crash(start: int) -> None:
        raise Killed("the power went off after the first chunk")
    monkeypatch.setattr(merge, "_chunk_done", crash)
    with pytest.raises(Killed):
        merge_store(kit, tmp_path / "station-b", "it")
    monkeypatch.setattr(merge, "_chunk_done", lambda start: None)
    copied = _spy_copies(monkeypatch)
    merge_store(kit, tmp_path / "station-b", "it")
    assert copied[0] > 0
    assert_kept_equals_full(kit)


def test_printing_brings_the_new_forms_summaries_up_to_date(kit, ward_pack, tmp_path):
    """A print writes its forms' summaries in its own transaction ("printed, none returned"): the
    reports see the pack at once, and the first scan afterwards recomputes only the forms it read."""
    assert summary.pending_forms(kit) == 0
    printed = kit.db.conn.execute("SELECT COUNT(*) FROM forms").fetchone()[0]
    assert kit.db.conn.execute("SELECT COUNT(*), SUM(returned) FROM form_summary").fetchone() == (printed, 0)
    print_blank(kit, "vitals", 3, tmp_path / "blank.pdf", actor="tester")
    assert summary.pending_forms(kit) == 0
    assert kit.db.conn.execute("SELECT COUNT(*) FROM form_summary").fetchone()[0] == printed + 3
    assert_kept_equals_full(kit)


def test_a_layout_is_parsed_once_and_again_only_if_its_stored_geometry_differs(kit, ward_pack):
    from fallbackkit.reconcile import state
    lhash = kit.db.conn.execute("SELECT layout_hash FROM sheets ORDER BY rowid LIMIT 1").fetchone()[0]
    first = state.load_registry(kit).layouts[lhash]
    assert state.load_registry(kit).layouts[lhash] is first  # the parsed copy, not a new parse
    with pytest.raises(AttributeError):
        first.fields = {}  # readers share it: it cannot be replaced
    geometry = json.loads(kit.db.conn.execute("SELECT geometry FROM layouts WHERE hash = ?", [lhash]).fetchone()[0])
    geometry["fields"] = geometry["fields"][:1]
    with kit.db.conn:
        kit.db.conn.execute("UPDATE layouts SET geometry = ? WHERE hash = ?", [json.dumps(geometry), lhash])
    again = state.load_registry(kit).layouts[lhash]
    assert list(again.fields) == [geometry["fields"][0]["name"]] != list(first.fields)
