"""Reconciliation rules one at a time, on a real printed kit with captures stored row by row
(tests/reconcile_helpers.py writes what the scan stage writes). The end-to-end scenarios from
scanned paper are in test_reconcile_scan.py."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from fallbackkit.cli import cli
from fallbackkit.errors import BadInput, Conflict, NotFound
from fallbackkit.generate import print_blank
from fallbackkit.payload import SheetPayload
from fallbackkit.reconcile import (link_identity, list_identities, mark_item, merge_store, reconcile,
                                   suggest_identities, unlink_identity, worklist)
from fallbackkit.reconcile.core import TOTAL_KEYS
from fallbackkit.store import open_kit
from fallbackkit.store.kit import now_iso

from reconcile_helpers import (fake_quarantine, fake_scan, forms_of, sheets_of, transcribe,
                               transcribe_pending)


def form(report, form_id):
    return next(f for f in report["forms"] if f["form_id"] == form_id)


def codes(report, form_id):
    return sorted((f["code"], f["field"]) for f in form(report, form_id)["flags"])


# --- what came back ------------------------------------------------------------------------------
def test_quarantine_only_until_assigned(kit, ward_pack):
    lab = forms_of(kit, "lab-request")[0]
    fake_quarantine(kit, lab)                       # code readable, marks not: the scanner quarantined it
    fake_quarantine(kit, None, reason="no_code")    # a page nobody can place yet
    report = reconcile(kit)
    assert form(report, lab)["state"] == "quarantine_only" and form(report, lab)["pages_in_quarantine"] == [1]
    t = report["totals"]
    assert t["quarantined_pages"] == 2
    assert t["sheets_returned"] == 0 and t["sheets_never_returned"] == t["sheets_printed"] - 1
    # a clerk assigns the page: it counts as returned
    qid = kit.db.conn.execute("SELECT quarantine_id FROM quarantine WHERE payload IS NOT NULL").fetchone()[0]
    cid = fake_scan(kit, lab, {"tests": ["cbc"], "collected_at": "x", "collector_initials": "x",
                               "ordering_clinician": "x", "priority": "stat", "specimen": "blood"})
    with kit.db.conn:
        kit.db.conn.execute("INSERT INTO quarantine_assignments (quarantine_id, sheet_id, capture_id, actor, at)"
                            " VALUES (?, ?, ?, 'clerk', ?)", [qid, lab, cid, now_iso()])
    report = reconcile(kit)
    assert form(report, lab)["state"] == "complete" and report["totals"]["quarantined_pages"] == 1
    assert report["totals"]["sheets_returned"] == 1


def test_a_forged_code_in_quarantine_names_no_sheet(kit, ward_pack):
    lab = forms_of(kit, "lab-request")[0]
    qid = fake_quarantine(kit, None, reason="bad_signature")
    forged = SheetPayload(kit.kit_id, "lab-request", 1, lab, 1, 1).encode(b"not the kit secret")
    with kit.db.conn:
        kit.db.conn.execute("UPDATE quarantine SET payload = ? WHERE quarantine_id = ?", [forged, qid])
    report = reconcile(kit)
    assert form(report, lab)["state"] == "never_returned" and report["totals"]["quarantined_pages"] == 1


def test_totals_keys_and_missing_pages(kit, ward_pack):
    vitals = forms_of(kit, "vitals")[0]  # two sheets (registration and MAR are one now)
    fake_scan(kit, sheets_of(kit, vitals)[1])
    report = reconcile(kit)
    assert tuple(report["totals"]) == TOTAL_KEYS
    f = form(report, vitals)
    assert (f["state"], f["pages_returned"], f["pages_missing"]) == ("missing_pages", [2], [1])
    assert report["totals"]["forms_incomplete"] == len(report["forms"])


def test_duplicates_agree_and_handwriting_disagreement(kit, ward_pack):
    lab = forms_of(kit, "lab-request")[0]
    values = {"tests": ["cbc"], "collected_at": "x", "priority": "routine"}
    first = fake_scan(kit, lab, values)
    second = fake_scan(kit, lab, values)
    f = form(reconcile(kit), lab)
    assert f["duplicates"] == [{"sheet_id": lab, "page": 1, "kept": second, "others": [first], "agree": True}]
    # both transcribed, differently: a conflict for a person
    transcribe(kit, first, {"collected_at": "28/11/2026 08:10"})
    transcribe(kit, second, {"collected_at": "28/11/2026 08:40"})
    f = form(reconcile(kit), lab)
    assert [(c["field"], c["resolved"]) for c in f["conflicts"]] == [("collected_at", False)]


# --- clinical consistency ------------------------------------------------------------------------
def test_lab_request_flags(kit, ward_pack):
    empty, good, unsure = forms_of(kit, "lab-request")[:3]
    fake_scan(kit, empty, {"priority": "routine", "specimen": "blood", "ordering_clinician": "x",
                           "collector_initials": "x"})
    fake_scan(kit, good, {"tests": ["crp"], "priority": "routine", "specimen": "blood", "ordering_clinician": "x",
                          "collected_at": "x", "collector_initials": "x"})
    fake_scan(kit, unsure, {"priority": "routine", "specimen": "blood", "ordering_clinician": "x",
                            "collected_at": "x", "collector_initials": "x"}, unsure=["tests"])
    report = reconcile(kit)
    assert codes(report, empty) == [("lab_no_collection_time", "collected_at"), ("lab_no_test", "tests")]
    assert codes(report, good) == []
    assert codes(report, unsure) == []   # unknown until reviewed: counted as to review, not flagged
    assert form(report, unsure)["to_review"] == 4  # 3 handwritten fields + the unsure tests
    messages = [f["message"] for f in form(report, empty)["flags"]]
    assert all(m and m[0].islower() for m in messages)


def test_registration_flags(kit, ward_pack, tmp_path):
    print_blank(kit, "registration", 1, tmp_path / "reg.pdf", actor="t")
    census, blank = forms_of(kit, "registration")[0], forms_of(kit, "registration")[-1]
    for form_id in (census, blank):
        (p1,) = sheets_of(kit, form_id)  # one sheet (issue 15 item 2)
        fake_scan(kit, p1, {"first_name": "x", "birth_date": "x", "arrival_time": "x",
                            "recorded_at": "x", "recorder_initials": "x"})
    report = reconcile(kit)
    assert codes(report, blank) == [("allergy_not_recorded", "allergies_known"), ("required_missing", "last_name")]
    # a census patient's form has the name printed in its header: not asked again
    assert codes(report, census) == [("allergy_not_recorded", "allergies_known")]


def test_mar_flags(kit, ward_pack):
    used, unused = forms_of(kit, "mar")[:2]
    fake_scan(kit, sheets_of(kit, used)[0],
              {"mar_date": "x", "allergies_checked": "yes", "m1.s1.status": "given", "m1.s1.time": "x",
               "p1.s1.given": True, "p1.s1.initials": "x", "m2.s1.status": "held", "m2.s1.time": "x"},
              unsure=["m1.s2.status"], reasons={"m1.s2.status": "two options marked"})
    fake_scan(kit, sheets_of(kit, unused)[0], {"mar_date": "x", "allergies_checked": "no"})
    report = reconcile(kit)
    got = codes(report, used)
    assert ("mar_multiple_marks", "m1.s2.status") in got
    assert ("mar_prn_no_time", "p1.s1.time") in got
    assert ("mar_slot_incomplete", "m1.s1.initials") in got and ("mar_slot_incomplete", "m2.s1.initials") in got
    unmarked = [f for c, f in got if c == "mar_dose_unmarked"]
    assert unmarked and "m1.s1.status" not in unmarked and "m1.s2.status" not in unmarked
    assert codes(report, unused) == []  # a chart nobody used that day: no dose flagged as missed
    assert report["totals"]["consistency_flags"] == len(got)


def test_blank_stock_without_identity(kit, blank_lab):
    lab = forms_of(kit, "lab-request")[0]
    fake_scan(kit, lab, {"tests": ["cbc"], "collected_at": "x", "patient_birth_date": "x", "priority": "stat",
                         "specimen": "urine", "ordering_clinician": "x", "collector_initials": "x"})
    assert codes(reconcile(kit), lab) == [("identity_missing", "patient_name")]


# --- identities ----------------------------------------------------------------------------------
def test_identity_links(kit, tmp_path):
    print_blank(kit, "registration", 2, tmp_path / "reg.pdf", actor="t")
    print_blank(kit, "lab-request", 1, tmp_path / "lab.pdf", actor="t")
    ids = list_identities(kit)
    kinds = sorted({i["kind"] for i in ids})
    assert kinds == ["accession", "encounter", "mrn"]
    mrns = [i["downtime_mrn"] for i in ids if i["kind"] == "mrn"]
    assert len(mrns) == 3 and all(i["linked_to"] is None for i in ids)
    accession = next(i["downtime_mrn"] for i in ids if i["kind"] == "accession")
    with pytest.raises(BadInput, match="accession"):
        link_identity(kit, accession, "100001", "clerk", "x")
    with pytest.raises(NotFound):
        link_identity(kit, "DTM99999999", "100001", "clerk", "x")
    with pytest.raises(BadInput, match="itself a downtime"):
        link_identity(kit, mrns[0], mrns[1], "clerk", "x")
    # one real MRN absorbs two downtime MRNs (registered twice during the outage)
    link_identity(kit, mrns[0], "100001", "clerk", "same wristband")
    link_identity(kit, mrns[1].lower(), "100001", "clerk", "same wristband")
    with pytest.raises(Conflict, match="already linked to 100001"):
        link_identity(kit, mrns[0], "100002", "clerk", "x")
    unlink_identity(kit, mrns[0], "supervisor", "wrong patient")
    link_identity(kit, mrns[0], "100002", "supervisor", "corrected")
    linked = {i["downtime_mrn"]: i["linked_to"] for i in list_identities(kit)}
    assert linked[mrns[0]] == "100002" and linked[mrns[1]] == "100001"
    rows = kit.db.conn.execute("SELECT COUNT(*) FROM identity_links").fetchone()[0]
    assert rows == 4  # history kept: link, link, revocation, new link
    actions = [r[0] for r in kit.db.conn.execute("SELECT action FROM audit WHERE action LIKE 'identity.%' ORDER BY id")]
    assert actions == ["identity.link", "identity.link", "identity.unlink", "identity.link"]
    # one identity alone (the station's check and link) is the same entry as in the whole list
    everything = list_identities(kit)
    for ident in everything:
        assert list_identities(kit, only=ident["downtime_mrn"]) == [ident]
    assert list_identities(kit, only="DTM99999999") == []


def test_suggestions_ignore_accents_case_and_order(kit, tmp_path):
    print_blank(kit, "registration", 1, tmp_path / "reg.pdf", actor="t")
    reg = forms_of(kit, "registration")[0]
    p = kit.db.conn.execute("SELECT mrn, last_name, first_name, birth_date FROM patients"
                            " WHERE last_name != '' ORDER BY mrn").fetchall()
    target = next(r for r in p if any(ord(ch) > 127 for ch in r[1] + r[2])) if any(
        any(ord(ch) > 127 for ch in r[1] + r[2]) for r in p) else p[0]
    import unicodedata
    def plain(s):
        return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    cid = fake_scan(kit, sheets_of(kit, reg)[0], {"last_name": "x", "first_name": "x", "birth_date": "x"})
    transcribe(kit, cid, {"last_name": plain(target[2]).lower(), "first_name": plain(target[1]).upper(),
                          "birth_date": target[3]})
    before = kit.db.conn.total_changes
    suggestions = suggest_identities(kit)
    assert kit.db.conn.total_changes == before
    assert suggestions[0]["real_mrn"] == target[0] and suggestions[0]["score"] >= 0.9
    assert "same birth date" in suggestions[0]["why"]
    assert all(s["score"] <= suggestions[0]["score"] for s in suggestions)


# --- worklist ------------------------------------------------------------------------------------
def test_worklist_ids_order_and_care_times(kit, ward_pack):
    vit = forms_of(kit, "vitals")[0]
    reg = forms_of(kit, "registration")[0]
    cid = fake_scan(kit, sheets_of(kit, vit)[0], {"obs_date": "x", "c1.time": "x", "c1.pulse": "x",
                                                  "c2.time": "x", "c2.avpu": "voice", "c3.spo2": "x"})
    fake_scan(kit, sheets_of(kit, reg)[0], {"allergies_known": "no"})
    transcribe_pending(kit, cid, {"obs_date": "2026-11-28", "c1.time": "14:30", "c1.pulse": "88", "c2.time": "06:15",
                                  "c3.spo2": "97"})
    items = worklist(kit)
    assert [i.item_id for i in items] == [f"{reg}:registration", f"{vit}:c2", f"{vit}:c1", f"{vit}:c3"]
    c1 = items[2]
    assert c1.kind == "vitals" and c1.care_time == "2026-11-28T14:30" and c1.values["pulse"] == "88"
    assert items[3].care_time is None  # no time written in column 3: nothing is guessed
    assert items[0].patient_mrn == kit.db.conn.execute("SELECT patient_mrn FROM forms WHERE form_id = ?",
                                                       [reg]).fetchone()[0]
    assert [i.item_id for i in worklist(kit)] == [i.item_id for i in items]  # stable ids, same order
    assert worklist(kit, ward="ICU") == []
    with pytest.raises(BadInput):
        worklist(kit, status="done")


def test_mark_item_errors(kit, ward_pack):
    lab = forms_of(kit, "lab-request")[0]
    fake_scan(kit, lab, {"tests": ["cbc"], "collected_at": "x"})
    with pytest.raises(NotFound):
        mark_item(kit, f"{lab}:m1.s1", "entered", "clerk")
    with pytest.raises(BadInput):
        mark_item(kit, f"{lab}:order", "done", "clerk")
    with pytest.raises(Conflict, match="collected_at waits for transcription"):
        mark_item(kit, f"{lab}:order", "entered", "clerk")
    assert kit.db.conn.execute("SELECT COUNT(*) FROM worklist_marks").fetchone()[0] == 0


# --- command line --------------------------------------------------------------------------------
def test_cli_commands(kit, ward_pack):
    lab = forms_of(kit, "lab-request")[0]
    cid = fake_scan(kit, lab, {"tests": ["cbc"], "collected_at": "x", "priority": "stat"})
    runner = CliRunner()
    base = ["--kit", str(kit.path), "--user", "clerk"]
    out = runner.invoke(cli, base + ["reconcile", "--json"])
    assert out.exit_code == 0
    doc = json.loads(out.output)
    assert set(doc) == {"totals", "forms"} and tuple(doc["totals"]) == TOTAL_KEYS
    text = runner.invoke(cli, base + ["reconcile"])
    assert text.exit_code == 0 and "sheets printed" in text.output and lab in text.output
    refused = runner.invoke(cli, base + ["worklist", "mark", f"{lab}:order", "entered", "--by", "ann"])
    assert refused.exit_code == 6 and "cannot be marked entered" in refused.output
    transcribe_pending(kit, cid, {"collected_at": "28/11/2026 07:55"})
    ok = runner.invoke(cli, base + ["worklist", "mark", f"{lab}:order", "entered", "--by", "ann"])
    assert ok.exit_code == 0, ok.output
    listed = json.loads(runner.invoke(cli, base + ["worklist", "--json", "--status", "entered"]).output)
    assert [(i["item_id"], i["entered_by"], i["care_time"]) for i in listed] == \
        [(f"{lab}:order", "ann", "2026-11-28T07:55")]
    shown = runner.invoke(cli, base + ["identities", "list"])
    assert shown.exit_code == 0
    bad = runner.invoke(cli, base + ["identities", "link", "DTM00000000", "1", "--reason", "x"])
    assert bad.exit_code == 5 and "not a downtime identifier" in bad.output


# --- merge ---------------------------------------------------------------------------------------
def test_merge_refuses_links_that_would_split_a_patient(kit, tmp_path):
    print_blank(kit, "registration", 1, tmp_path / "reg.pdf", actor="t")
    dt = next(i["downtime_mrn"] for i in list_identities(kit) if i["kind"] == "mrn")
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(kit.path, tmp_path / "station-b")
    other = open_kit(tmp_path / "station-b")
    link_identity(other, dt, "100002", "clerk-b", "b thinks so")
    other.close()
    link_identity(kit, dt, "100001", "clerk-a", "a thinks so")
    before = kit.db.conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
    with pytest.raises(Conflict, match="nothing was merged"):
        merge_store(kit, tmp_path / "station-b", "it")
    assert kit.db.conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == before
    assert kit.db.conn.execute("SELECT COUNT(*) FROM identity_links").fetchone()[0] == 1


def test_merge_brings_decisions_and_marks(kit, ward_pack, tmp_path):
    lab = forms_of(kit, "lab-request")[0]
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(kit.path, tmp_path / "station-b")
    other = open_kit(tmp_path / "station-b")
    cid = fake_scan(other, lab, {"tests": ["cbc"], "collected_at": "x", "priority": "stat"}, tag="b-lab")
    transcribe_pending(other, cid, {"collected_at": "28/11/2026 09:00"})
    mark_item(other, f"{lab}:order", "entered", "clerk-b")
    other.close()
    added = merge_store(kit, tmp_path / "station-b", "it")["added"]
    assert added["captures"] == 1 and added["reviews"] == 1 and added["worklist_marks"] == 1
    item = next(i for i in worklist(kit) if i.item_id == f"{lab}:order")
    assert item.status == "entered" and item.entered_by == "clerk-b" and item.care_time == "2026-11-28T09:00"
    assert merge_store(kit, tmp_path / "station-b", "it")["added"] == {}
    with pytest.raises(BadInput, match="this kit itself"):
        merge_store(kit, kit.path, "it")


def test_resolving_ink_against_no_ink_needs_the_written_value(kit, ward_pack):
    from fallbackkit.reconcile import resolve_conflict
    lab = forms_of(kit, "lab-request")[0]
    with_ink = fake_scan(kit, lab, {"tests": ["cbc"], "collected_at": "x"})
    fake_scan(kit, lab, {"tests": ["cbc"]})
    f = form(reconcile(kit), lab)
    assert [(c["field"], c["resolved"]) for c in f["conflicts"]] == [("collected_at", False)]
    with pytest.raises(BadInput, match="nobody has transcribed"):
        resolve_conflict(kit, lab, "collected_at", None, "clerk", chosen_capture_id=with_ink)
    with pytest.raises(BadInput, match="not a capture of sheet"):
        resolve_conflict(kit, lab, "collected_at", "x", "clerk", chosen_capture_id=99999)
    resolve_conflict(kit, lab, "collected_at", "28/11/2026 08:00", "clerk", chosen_capture_id=with_ink)
    report = reconcile(kit)
    assert form(report, lab)["conflicts"][0]["resolved"] and report["totals"]["conflicts"] == 0
    item = next(i for i in worklist(kit) if i.item_id == f"{lab}:order")
    assert item.care_time == "2026-11-28T08:00"


def test_merge_refuses_a_store_without_the_tables(kit, tmp_path):
    import sqlite3
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE kit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO kit_meta VALUES ('kit_id', ?)", [kit.kit_id])
        conn.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY)")
    with pytest.raises(BadInput, match="older fallbackkit"):
        merge_store(kit, old, "it")
    (tmp_path / "junk.sqlite").write_text("not a database")
    with pytest.raises(BadInput, match="not a fallbackkit store"):
        merge_store(kit, tmp_path / "junk.sqlite", "it")
    with pytest.raises(NotFound):
        merge_store(kit, tmp_path / "nowhere", "it")


def test_merge_warns_when_both_stations_entered_the_same_item(kit, ward_pack, tmp_path):
    lab = forms_of(kit, "lab-request")[0]
    fake_scan(kit, lab, {"tests": ["cbc"], "priority": "stat"}, tag="shared-lab")
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(kit.path, tmp_path / "station-b")
    other = open_kit(tmp_path / "station-b")
    mark_item(other, f"{lab}:order", "entered", "clerk-b")
    other.close()
    mark_item(kit, f"{lab}:order", "entered", "clerk-a")
    runner = CliRunner()
    result = runner.invoke(cli, ["--kit", str(kit.path), "merge", str(tmp_path / "station-b")])
    assert result.exit_code == 0 and "merged:" in result.output
    assert f"{lab}:order was marked entered 2 times" in result.output  # the warning, on stderr
    again = runner.invoke(cli, ["--kit", str(kit.path), "merge", str(tmp_path / "station-b"), "--json"])
    doc = json.loads(again.stdout)
    assert doc["changed"] is False and [d["item_id"] for d in doc["double_entries"]] == [f"{lab}:order"]


def test_new_order_row_without_order_is_flagged_once(kit, ward_pack):
    from fallbackkit.generate import sheet_geometry
    # a MAR printed with its new-order rows and its date on one sheet
    mar, sheet = next((m, s) for m in forms_of(kit, "mar") for s in sheets_of(kit, m)
                      if {"n1.order", "mar_date"} <= {f["name"] for f in sheet_geometry(kit, s)["fields"]})
    fake_scan(kit, sheet, {"mar_date": "x", "allergies_checked": "yes",
                                            "n1.s1.status": "given", "n1.s1.time": "x", "n1.s1.initials": "x",
                                            "n1.s2.status": "given", "n1.s2.time": "x", "n1.s2.initials": "x"})
    got = codes(reconcile(kit), mar)
    assert got.count(("mar_new_order_unreadable", "n1.order")) == 1


def test_two_stations_converge_after_merging_both_ways(kit, ward_pack, tmp_path):
    from fallbackkit.reconcile import verify_chain
    lab_a, lab_b = forms_of(kit, "lab-request")[:2]
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(kit.path, tmp_path / "station-b")
    other = open_kit(tmp_path / "station-b")
    try:
        fake_scan(kit, lab_a, {"tests": ["cbc"], "collected_at": "x"}, tag="a-scan")
        cid = fake_scan(other, lab_b, {"tests": ["crp"], "collected_at": "x"}, tag="b-scan")
        transcribe_pending(other, cid, {"collected_at": "28/11/2026 10:00"})
        merge_store(kit, other.path, "it-a")
        merge_store(other, kit.path, "it-b")
        a, b = reconcile(kit), reconcile(other)
        assert a == b and a["totals"]["sheets_returned"] == 2
        assert [i.item_id for i in worklist(kit)] == [i.item_id for i in worklist(other)]
        verify_chain(kit), verify_chain(other)
        merged = [json.loads(r[0]) for r in kit.db.conn.execute("SELECT after FROM audit WHERE action = 'merge.audit'")]
        assert "review.transcribe" in {m["action"] for m in merged}  # B's decision is in A's history
        echoes = [json.loads(r[0]) for r in other.db.conn.execute("SELECT after FROM audit WHERE action = 'merge.audit'")]
        assert all(e["action"] != "review.transcribe" for e in echoes)  # B did not take its own rows back
        # and nothing more to bring either way
        assert merge_store(kit, other.path, "it-a")["added"] == {}
        assert merge_store(other, kit.path, "it-b")["added"] == {}
    finally:
        other.close()


def test_cli_identities(kit, tmp_path):
    print_blank(kit, "registration", 1, tmp_path / "reg.pdf", actor="t")
    reg = forms_of(kit, "registration")[0]
    p = kit.db.conn.execute("SELECT mrn, last_name, first_name, birth_date FROM patients ORDER BY mrn").fetchone()
    cid = fake_scan(kit, sheets_of(kit, reg)[0], {"last_name": "x", "first_name": "x", "birth_date": "x"})
    transcribe(kit, cid, {"last_name": p[1], "first_name": p[2], "birth_date": p[3]})
    dt = next(i["downtime_mrn"] for i in list_identities(kit) if i["kind"] == "mrn")
    runner = CliRunner()
    base = ["--kit", str(kit.path), "--user", "records"]
    suggested = json.loads(runner.invoke(cli, base + ["identities", "suggest", "--json"]).stdout)
    assert suggested[0]["downtime_mrn"] == dt and suggested[0]["real_mrn"] == p[0]
    missing_reason = runner.invoke(cli, base + ["identities", "link", dt, p[0]])
    assert missing_reason.exit_code == 2  # a link needs a reason
    ok = runner.invoke(cli, base + ["identities", "link", dt, p[0], "--reason", "matches census"])
    assert ok.exit_code == 0 and p[0] in ok.output
    clash = runner.invoke(cli, base + ["identities", "link", dt, "999999", "--reason", "x"])
    assert clash.exit_code == 6 and "already linked" in clash.output
    listed = json.loads(runner.invoke(cli, base + ["identities", "list", "--json"]).stdout)
    assert next(i for i in listed if i["downtime_mrn"] == dt)["linked_to"] == p[0]
    assert runner.invoke(cli, base + ["identities", "unlink", dt, "--reason", "wrong"]).exit_code == 0
    assert runner.invoke(cli, base + ["identities", "link", dt, "999999", "--reason", "right one"]).exit_code == 0
    actors = {r[0] for r in kit.db.conn.execute("SELECT actor FROM identity_links")}
    assert actors == {"records"}


def test_merge_maps_decisions_on_captures_both_stations_have(kit, ward_pack, tmp_path):
    lab = forms_of(kit, "lab-request")[0]
    cid = fake_scan(kit, lab, {"tests": ["cbc"], "collected_at": "x"}, tag="before-the-copy")
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(kit.path, tmp_path / "station-b")
    other = open_kit(tmp_path / "station-b")
    transcribe_pending(other, cid, {"collected_at": "28/11/2026 11:30"})
    other.close()
    added = merge_store(kit, tmp_path / "station-b", "it")["added"]
    assert added.get("reviews") == 1 and "readings" not in added and "captures" not in added
    item = next(i for i in worklist(kit) if i.item_id == f"{lab}:order")
    assert item.resolved and item.care_time == "2026-11-28T11:30"


def test_merge_brings_blank_stock_the_other_station_printed(kit, tmp_path):
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(kit.path, tmp_path / "station-b")
    other = open_kit(tmp_path / "station-b")
    printed = print_blank(other, "registration", 1, tmp_path / "b-reg.pdf", actor="ward-b")
    form_id = printed.sheets[0]["form_id"]
    fake_scan(other, form_id, {"allergies_known": "no", "last_name": "x"}, tag="b-blank")
    other.close()
    added = merge_store(kit, tmp_path / "station-b", "it")["added"]
    assert added["forms"] == 1 and added["sheets"] == 1 and added["downtime_ids"] == 2 and added["print_batches"] == 1
    f = form(reconcile(kit), form_id)
    assert f["state"] == "complete" and f["downtime_mrn"] == printed.sheets[0]["mrn"]
    assert printed.sheets[0]["mrn"] in {i["downtime_mrn"] for i in list_identities(kit)}
    # the pools moved on here too: the next blank form printed here gets a new number
    mine = print_blank(kit, "registration", 1, tmp_path / "a-reg.pdf", actor="ward-a")
    assert mine.sheets[0]["mrn"] != printed.sheets[0]["mrn"]
    assert merge_store(kit, tmp_path / "station-b", "it")["added"] == {}


def test_merge_refuses_the_same_downtime_number_on_two_forms(kit, tmp_path):
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(kit.path, tmp_path / "station-b")
    other = open_kit(tmp_path / "station-b")
    print_blank(other, "registration", 1, tmp_path / "b-reg.pdf", actor="ward-b")
    other.close()
    print_blank(kit, "registration", 1, tmp_path / "a-reg.pdf", actor="ward-a")  # same pool copy, same numbers
    with pytest.raises(Conflict, match="printed on different forms"):
        merge_store(kit, tmp_path / "station-b", "it")


def test_numbers_outside_the_templates_range_are_flagged(kit, ward_pack):
    vit = forms_of(kit, "vitals")[0]
    cid = fake_scan(kit, sheets_of(kit, vit)[0], {"obs_date": "x", "c1.time": "x", "c1.temperature": "x",
                                                  "c1.spo2": "x", "c2.time": "x", "c2.pulse": "x", "weight": "x"})
    transcribe_pending(kit, cid, {"obs_date": "2026-11-28", "c1.time": "08:00", "c1.temperature": "52.1",
                                  "c1.spo2": "100", "c2.time": "09:00", "c2.pulse": "300", "weight": "71,5"})
    flagged = [(f["field"], f["message"]) for f in form(reconcile(kit), vit)["flags"] if f["code"] == "out_of_range"]
    assert flagged == [("c1.temperature", "c1.temperature is 52.1: outside the plausible 30-45 — check the paper"),
                       ("c2.pulse", "c2.pulse is 300: outside the plausible 20-250 — check the paper")]


def test_a_slot_with_writing_but_no_mark_waits_on_the_worklist(kit, ward_pack):
    mar = forms_of(kit, "mar")[0]
    cid = fake_scan(kit, sheets_of(kit, mar)[0], {"mar_date": "x", "m1.s1.time": "x", "m1.s1.initials": "x"})
    transcribe_pending(kit, cid, {"mar_date": "2026-11-28", "m1.s1.time": "08:00", "m1.s1.initials": "AB"})
    item = next(i for i in worklist(kit) if i.item_id == f"{mar}:m1.s1")
    assert not item.resolved and "no status is marked" in item.unresolved[-1]
    with pytest.raises(Conflict):
        mark_item(kit, item.item_id, "entered", "clerk")
    mark_item(kit, item.item_id, "not-needed", "clerk")


def test_picking_a_scan_never_makes_an_unsure_mark_the_value(kit, ward_pack):
    """Fail closed: a mark the machine was unsure of is not settled by "take this scan's value";
    the person gives the value itself."""
    from fallbackkit.reconcile import resolve_conflict
    lab = forms_of(kit, "lab-request")[0]
    unsure = fake_scan(kit, lab, {"tests": ["cbc"], "fasting": True}, unsure=["fasting"])
    fake_scan(kit, lab, {"tests": ["cbc"], "fasting": False})
    assert any(c["field"] == "fasting" and not c["resolved"] for c in form(reconcile(kit), lab)["conflicts"])
    with pytest.raises(BadInput, match="unsure"):
        resolve_conflict(kit, lab, "fasting", None, "clerk", chosen_capture_id=unsure)
    assert any(c["field"] == "fasting" and not c["resolved"] for c in form(reconcile(kit), lab)["conflicts"])
    resolve_conflict(kit, lab, "fasting", True, "clerk", chosen_capture_id=unsure)
    assert all(c["resolved"] for c in form(reconcile(kit), lab)["conflicts"] if c["field"] == "fasting")


def test_a_conflict_on_a_mark_is_settled_only_by_a_printed_option(kit, ward_pack):
    """The option check lives in reconcile (not only in the station): free text never becomes a mark."""
    from fallbackkit.reconcile import resolve_conflict
    lab = forms_of(kit, "lab-request")[0]
    fake_scan(kit, lab, {"tests": ["cbc"], "fasting": True})
    fake_scan(kit, lab, {"tests": ["cbc"], "fasting": False})
    with pytest.raises(BadInput, match="printed options"):
        resolve_conflict(kit, lab, "fasting", "yes", "clerk")
    with pytest.raises(BadInput, match="printed options"):
        resolve_conflict(kit, lab, "tests", "cbc", "clerk")  # a multichoice takes a list
    assert any(c["field"] == "fasting" and not c["resolved"] for c in form(reconcile(kit), lab)["conflicts"])
    resolve_conflict(kit, lab, "fasting", False, "clerk")
    assert all(c["resolved"] for c in form(reconcile(kit), lab)["conflicts"] if c["field"] == "fasting")


def test_ward_progress_counts_pages_and_items_per_ward(kit, ward_pack):
    from fallbackkit.reconcile import ward_progress
    report, items = reconcile(kit), worklist(kit)
    rows = ward_progress(report, items)
    assert sum(r["printed"] for r in rows.values()) == sum(int(f.get("pages") or 0) for f in report["forms"])
    assert sum(r["to_reenter"] for r in rows.values()) == sum(1 for i in items if i.status == "pending")
