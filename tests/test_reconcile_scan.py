"""Reconciliation scenarios from real paper: a ward pack printed to PDF, rendered, marked with pen
strokes at chosen places (fallbackkit.scan.marks), written as image files and read back by the
real scan pipeline. Some sheets never come back, one is scanned twice identically, one twice with a
different mark, a two-page form comes back with one page, and a blank-stock registration's downtime
MRN is linked to the census patient it belongs to."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fallbackkit.cli import cli
from fallbackkit.errors import BadInput, Conflict, IntegrityFailure
from fallbackkit.generate import import_census, print_blank, print_ward, sheet_geometry
from fallbackkit.generate.sample import write_census
from fallbackkit.reconcile import (form_readings, link_identity, list_identities, mark_item, merge_store,
                                   reconcile, resolve_conflict, suggest_identities, verify_chain, worklist)
from fallbackkit.scan.marks import InkLayer, Pen, draw_box_mark, draw_handwriting
from fallbackkit.scan.pipeline import scan_paths
from fallbackkit.scan.simulate import page_transform, render_pdf
from fallbackkit.store import init_kit, open_kit

from reconcile_helpers import transcribe, transcribe_pending
from kit_helpers import census_kit

DPI = 200


class Paper:
    """Printed pages of one PDF, by sheet id, that a test fills with pen marks."""

    def __init__(self, kit, result, pdf: Path):
        self.kit = kit
        images = [im for im in render_pdf(pdf, DPI) if im.min() < 255]  # no blank backs (double-sided)
        offset = len(images) - len(result.sheets)  # a ward pack starts with a cover page
        self.images = {s["sheet_id"]: images[offset + i] for i, s in enumerate(result.sheets)}
        self.sheets = result.sheets
        self.rng = np.random.default_rng(7)

    def sheet(self, template: str, page: int, nth: int = 0) -> str:
        found = [s["sheet_id"] for s in self.sheets if s["template"] == template and s["page"] == page]
        return found[nth]

    def fill(self, sheet_id: str, marks: dict | None = None, writing: tuple = ()) -> np.ndarray:
        fields = {f["name"]: f for f in sheet_geometry(self.kit, sheet_id)["fields"]}
        layer = InkLayer(self.images[sheet_id], page_transform(DPI))
        pen = Pen(0.5, 20)
        for name, value in (marks or {}).items():
            f = fields[name]
            if f["type"] == "checkbox":
                draw_box_mark(layer, f["box_mm"], "tick", self.rng, pen)
                continue
            wanted = value if isinstance(value, list) else [value]
            for option in f["options"]:
                if option["value"] in wanted:
                    draw_box_mark(layer, option["box_mm"], "cross", self.rng, pen)
        for name in writing:
            draw_handwriting(layer, fields[name], self.rng, pen)
        return layer.apply()


def save(folder: Path, name: str, image: np.ndarray, **png) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(image).save(path, format="PNG", dpi=(DPI, DPI), **png)
    return path


MAR_WRITING = ("mar_date", "m1.s1.time", "m1.s1.initials")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    root = tmp_path_factory.mktemp("reconcile-scan")
    kit = census_kit(root)
    ward = print_ward(kit, "3B", root / "ward-3B.pdf", actor="coordinator")
    blank = print_blank(kit, "registration", 1, root / "blank-reg.pdf", actor="coordinator")
    paper, blank_paper = Paper(kit, ward, root / "ward-3B.pdf"), Paper(kit, blank, root / "blank-reg.pdf")
    # A second station: a copy of the kit taken after printing, before any scanning.
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(root / "kit", root / "station-b")

    s = {name: paper.sheet(*where) for name, where in {
        # registration, lab request and MAR are one sheet each (issue 15 item 2); vitals two
        "reg1": ("registration", 1), "lab": ("lab-request", 1),
        "mar1": ("mar", 1), "vit1": ("vitals", 1), "vit2": ("vitals", 2),
        "other_mar1": ("mar", 1, 1), "third_lab": ("lab-request", 1, 2)}.items()}
    s["blank1"] = blank_paper.sheet("registration", 1)
    scans, again = root / "scans", root / "scans-again"
    save(scans, "reg-p1.png", paper.fill(s["reg1"], {"allergies_known": "no", "sex": "female"},
                                         ("last_name", "first_name", "birth_date", "arrival_time",
                                          "recorded_at", "recorder_initials")))
    save(scans, "lab.png", paper.fill(s["lab"], {"tests": ["cbc", "crp"], "priority": "urgent", "specimen": "blood"},
                                      ("ordering_clinician", "collected_at", "collector_initials")))
    mar = paper.fill(s["mar1"], {"m1.s1.status": "given", "allergies_checked": "yes"}, MAR_WRITING)
    save(scans, "mar-p1.png", mar)
    save(again, "mar-p1-rescan.png", mar, compress_level=1)  # same paper, scanned twice
    save(scans, "vitals-p1.png", paper.fill(s["vit1"], {"c1.avpu": "alert"}, ("obs_date", "c1.time", "c1.pulse")))
    # vitals page 2 never comes back
    save(scans, "other-mar-given.png",
         paper.fill(s["other_mar1"], {"m1.s1.status": "given", "allergies_checked": "yes"}, ("mar_date",)))
    save(again, "other-mar-refused.png",
         paper.fill(s["other_mar1"], {"m1.s1.status": "refused", "allergies_checked": "yes"}, ("mar_date",)))
    save(scans, "blank-reg-p1.png", blank_paper.fill(s["blank1"], {"allergies_known": "unknown"},
                                                     ("last_name", "first_name", "birth_date",
                                                      "arrival_time")))
    summary = scan_paths(kit, [scans], workers=0, progress=False, actor="clerk")
    assert summary.files_failed == 0 and summary.pages_quarantined == 0, summary.to_dict()
    summary = scan_paths(kit, [again], workers=0, progress=False, actor="clerk")
    assert summary.files_failed == 0 and summary.pages_quarantined == 0, summary.to_dict()
    # The other station scans the third patient's lab request.
    station = open_kit(root / "station-b")
    save(root / "scans-b", "lab-3.png", Paper(station, ward, root / "ward-3B.pdf").fill(
        s["third_lab"], {"tests": ["glucose"], "priority": "routine", "specimen": "blood"}))
    scan_paths(station, [root / "scans-b"], workers=0, progress=False, actor="clerk-b")
    station.close()
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    kit.close()
    return {"root": root, "sheets": s, "ward": ward, "blank": blank}


@pytest.fixture
def kit(scenario, tmp_path):
    """A private copy of the scanned kit, so each test can add decisions of its own."""
    shutil.copytree(scenario["root"] / "kit", tmp_path / "kit")
    k = open_kit(tmp_path / "kit")
    yield k
    k.close()


def form_of(report, sheet_id):
    return next(f for f in report["forms"] if f["form_id"] == sheet_id)


def test_what_came_back(kit, scenario):
    s = scenario["sheets"]
    report = reconcile(kit)
    t = report["totals"]
    # 8 patients x 4 forms: 5 sheets each, 6 for the three with a two-sheet MAR (their PRN rows or
    # 8 medications do not fit one); plus a one-sheet blank registration
    assert t["sheets_printed"] == 44
    assert t["sheets_returned"] == 6
    assert t["sheets_never_returned"] == 44 - 6
    assert t["duplicate_captures"] == 2 and t["conflicts"] == 1 and t["quarantined_pages"] == 0
    # registration, lab request, MAR of the first patient; the blank registration (the other
    # patient's MAR has two sheets, one came back)
    assert t["forms_complete"] == 4
    assert t["forms_complete"] + t["forms_incomplete"] == len(report["forms"]) == 33
    forms = {f["form_id"]: f for f in report["forms"]}
    assert forms[s["reg1"]]["state"] == "complete"
    vitals = forms[s["vit1"]]
    assert (vitals["state"], vitals["pages_returned"], vitals["pages_missing"]) == ("missing_pages", [1], [2])
    assert forms[s["third_lab"]]["state"] == "never_returned"
    blank = forms[s["blank1"]]
    assert blank["state"] == "complete" and blank["downtime_mrn"].startswith("DTM") and blank["real_mrn"] is None
    # scanned twice, identically: noted, no conflict
    mar = forms[s["mar1"]]
    assert len(mar["duplicates"]) == 1 and mar["duplicates"][0]["agree"] and mar["conflicts"] == []
    # scanned twice with a different mark: a conflict naming the field and both captures
    other = forms[s["other_mar1"]]
    assert [c["field"] for c in other["conflicts"]] == ["m1.s1.status"]
    conflict = other["conflicts"][0]
    assert sorted(c["value"] for c in conflict["captures"]) == ["given", "refused"] and not conflict["resolved"]
    assert {(f["code"], f["field"]) for f in other["flags"]} >= {("mar_slot_incomplete", "m1.s1.time")}
    # handwriting waits for transcription (and whatever else the reader was unsure of)
    waiting = {n for n, r in form_readings(kit, s["lab"]).items() if not r["resolved"]}
    assert {"ordering_clinician", "collected_at", "collector_initials"} <= waiting
    assert forms[s["lab"]]["to_review"] == len(waiting)
    assert t["readings_to_review"] == sum(f["to_review"] for f in report["forms"])
    # a nurse's view: the other doses on a used MAR have no mark at all
    codes = {f["code"] for f in mar["flags"]}
    assert "mar_dose_unmarked" in codes and t["consistency_flags"] >= len(mar["flags"])
    assert forms[s["lab"]]["flags"] == []


def test_reconcile_is_read_only_and_repeatable(kit):
    """It records nothing (no audit row, no data row); it only brings the kept summaries up to
    date once, and then changes nothing at all."""
    conn = kit.db.conn
    audit = conn.execute("SELECT COUNT(*), MAX(id) FROM audit").fetchone()
    first = reconcile(kit)
    before = conn.total_changes
    second, full = reconcile(kit), reconcile(kit, full=True)
    assert first == second == full
    assert conn.total_changes == before
    assert conn.execute("SELECT COUNT(*), MAX(id) FROM audit").fetchone() == audit


def test_resolving_the_conflict(kit, scenario):
    sid = scenario["sheets"]["other_mar1"]
    conflict = form_of(reconcile(kit), sid)["conflicts"][0]
    first = min(c["capture_id"] for c in conflict["captures"])
    # the latest capture stands for the page until a person decides
    assert form_readings(kit, sid)["m1.s1.status"]["value"] == "refused"
    resolve_conflict(kit, sid, "m1.s1.status", None, "nurse-lead", chosen_capture_id=first)
    report = reconcile(kit)
    after = form_of(report, sid)["conflicts"][0]
    assert after["resolved"] and report["totals"]["conflicts"] == 0
    assert form_readings(kit, sid)["m1.s1.status"]["value"] == "given"
    actions = [r[0] for r in kit.db.conn.execute("SELECT action FROM audit WHERE actor = 'nurse-lead'")]
    assert actions == ["review.correct", "review.correct"]


def test_worklist_order_and_marking(kit, scenario):
    s = scenario["sheets"]
    items = worklist(kit)
    kinds = [i.kind for i in items]
    order = ["registration", "order", "result", "medication", "vitals"]
    assert kinds == sorted(kinds, key=order.index)
    ids = [i.item_id for i in items]
    assert f"{s['reg1']}:registration" in ids and f"{s['lab']}:order" in ids
    assert f"{s['mar1']}:m1.s1" in ids and f"{s['vit1']}:c1" in ids
    assert not any(i.startswith(s["third_lab"]) for i in ids)  # never returned: nothing to enter yet
    dose = next(i for i in items if i.item_id == f"{s['mar1']}:m1.s1")
    assert dose.values["status"] == "given" and dose.values["medication"] and dose.care_time is None
    assert not dose.resolved and dose.status == "pending"
    with pytest.raises(Conflict, match="m1.s1.time waits for transcription"):
        mark_item(kit, dose.item_id, "entered", "clerk")
    capture = form_readings(kit, s["mar1"])["mar_date"]["capture_id"]
    transcribe_pending(kit, capture, {"mar_date": "28/11/2026", "m1.s1.time": "08:05", "m1.s1.initials": "AB"})
    dose = next(i for i in worklist(kit) if i.item_id == dose.item_id)
    assert dose.resolved and dose.care_time == "2026-11-28T08:05"
    mark_item(kit, dose.item_id, "entered", "clerk", note="entered in EHR as late entry")
    dose = next(i for i in worklist(kit, status="entered") if i.item_id == dose.item_id)
    assert dose.entered_by == "clerk" and dose.entered_at and dose.care_time == "2026-11-28T08:05"
    with pytest.raises(Conflict, match="already marked entered by clerk"):
        mark_item(kit, dose.item_id, "entered", "someone-else")
    # an unresolved item may still be declared not needed
    vit = f"{s['vit1']}:c1"
    mark_item(kit, vit, "not-needed", "clerk", note="vitals charted in the ICU system")
    assert next(i for i in worklist(kit, ward="3B") if i.item_id == vit).status == "not-needed"
    audit = [r[0] for r in kit.db.conn.execute("SELECT action FROM audit WHERE action LIKE 'worklist.%'")]
    assert audit == ["worklist.entered", "worklist.not-needed"]


def test_blank_stock_registration_is_linked(kit, scenario):
    s = scenario["sheets"]
    conn = kit.db.conn
    patient = conn.execute("SELECT mrn, last_name, first_name, birth_date FROM patients WHERE ward = 'ICU'"
                           " ORDER BY mrn LIMIT 1").fetchone()
    capture = form_readings(kit, s["blank1"])["last_name"]["capture_id"]
    d = patient[3]
    transcribe(kit, capture, {"last_name": patient[1].upper(), "first_name": patient[2],
                              "birth_date": f"{d[8:10]}/{d[5:7]}/{d[0:4]}"})
    dt = form_of(reconcile(kit), s["blank1"])["downtime_mrn"]
    ident = next(i for i in list_identities(kit) if i["downtime_mrn"] == dt)
    assert ident["kind"] == "mrn" and ident["form_ids"] == [s["blank1"]] and ident["linked_to"] is None
    assert ident["birth_date"] == d
    best = [x for x in suggest_identities(kit) if x["downtime_mrn"] == dt][0]
    assert best["real_mrn"] == patient[0] and best["score"] == 1.0
    assert list_identities(kit)[0]["linked_to"] is None  # suggesting links nothing
    link_identity(kit, dt, patient[0], "records-clerk", "name and birth date match the census")
    assert link_identity(kit, dt, patient[0], "records-clerk", "again") == \
        conn.execute("SELECT id FROM identity_links WHERE downtime_mrn = ?", [dt]).fetchone()[0]
    with pytest.raises(Conflict, match="already linked"):
        link_identity(kit, dt, "999999", "records-clerk", "typo")
    assert form_of(reconcile(kit), s["blank1"])["real_mrn"] == patient[0]
    reg = next(i for i in worklist(kit) if i.item_id == f"{s['blank1']}:registration")
    assert reg.patient_mrn == patient[0] and reg.downtime_mrn == dt
    assert "arrival_time waits for transcription" in " ".join(reg.unresolved)  # one sheet now: no page missing
    assert [r[0] for r in conn.execute("SELECT action FROM audit WHERE action LIKE 'identity.%'")] == ["identity.link"]


def test_audit_verify_detects_an_altered_row(kit):
    assert verify_chain(kit)["rows"] > 5
    runner = CliRunner()
    ok = runner.invoke(cli, ["--kit", str(kit.path), "audit", "verify"])
    assert ok.exit_code == 0 and "intact" in ok.output
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with sqlite3.connect(kit.store_path) as raw:
        row = raw.execute("SELECT id FROM audit WHERE action = 'print' ORDER BY id LIMIT 1").fetchone()[0]
        raw.execute("UPDATE audit SET actor = 'mallory' WHERE id = ?", [row])
    with pytest.raises(IntegrityFailure, match=f"row {row}"):
        verify_chain(kit)
    bad = runner.invoke(cli, ["--kit", str(kit.path), "audit", "verify"])
    assert bad.exit_code == 7 and f"row {row}" in bad.output


def test_merge_other_station_twice(kit, scenario):
    s = scenario["sheets"]
    station = scenario["root"] / "station-b"
    assert form_of(reconcile(kit), s["third_lab"])["state"] == "never_returned"
    audit_rows = kit.db.conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
    first = merge_store(kit, station, "it")
    assert first["changed"] and first["added"]["captures"] == 1 and first["added"]["readings"] > 10
    assert first["added"]["files"] >= 1  # the archived original and page image came along
    report = reconcile(kit)
    assert form_of(report, s["third_lab"])["state"] == "complete"
    merged = [r[0] for r in kit.db.conn.execute("SELECT object FROM audit WHERE action = 'merge.audit'")]
    assert merged and all(o.startswith("remote-audit:") for o in merged)
    verify_chain(kit)
    snapshot = {t: kit.db.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("captures", "readings", "input_files", "audit", "reviews")}
    second = merge_store(kit, station / "store.sqlite", "it")
    assert not second["changed"] and second["added"] == {}
    assert snapshot == {t: kit.db.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in snapshot}
    assert snapshot["audit"] > audit_rows
    archive = kit.db.conn.execute("SELECT archive_path FROM input_files WHERE first_path LIKE '%lab-3.png'").fetchone()[0]
    assert (kit.path / archive).is_file()


def test_merge_refuses_another_kit(kit, tmp_path):
    other = init_kit(tmp_path / "elsewhere", actor="x")
    other.close()
    with pytest.raises(BadInput, match="belongs to kit"):
        merge_store(kit, tmp_path / "elsewhere", "it")
    result = CliRunner().invoke(cli, ["--kit", str(kit.path), "merge", str(tmp_path / "elsewhere")])
    assert result.exit_code == 4 and "nothing was merged" in result.output


# --- a whole ward pack filled at random by the simulator, checked against its truth file ---------
def test_simulated_ward_pack_flags_agree_with_truth(tmp_path):
    import json

    from fallbackkit.scan.simulate import simulate
    kit = init_kit(tmp_path / "kit", actor="tester")
    try:
        patients, meds = write_census(tmp_path / "census", wards={"3B": 4})
        import_census(kit, patients, meds, actor="tester")
        print_ward(kit, "3B", tmp_path / "pack.pdf", actor="tester")
        simulate(kit, tmp_path / "pack.pdf", tmp_path / "sim", seed=11, tier="clean", blank_every=0)
        truth = json.loads((tmp_path / "sim" / "truth.json").read_text())
        scan_paths(kit, [tmp_path / "sim" / f["file"] for f in truth["files"]], workers=0, progress=False)
        report = reconcile(kit)
        assert report["totals"]["sheets_returned"] == report["totals"]["sheets_printed"]
        assert {f["state"] for f in report["forms"]} == {"complete"}
        form_of_sheet = dict(kit.db.conn.execute("SELECT sheet_id, form_id FROM sheets").fetchall())
        flags = {(f["form_id"], fl["code"], fl["field"]) for f in report["forms"] for fl in f["flags"]}
        machine = {(r[0], r[1]): (r[2], r[3], r[4]) for r in kit.db.conn.execute(
            "SELECT sheet_id, field, value, status, ink FROM readings")}

        def read_as_truth(sheet_id, name, t):
            value, status, ink = machine[(sheet_id, name)]
            if status != "accepted" or t["should_review"]:
                return False
            if t["type"] in ("number", "datetime", "text", "initials", "signature"):
                return bool(ink) == t["ink"]
            return (json.loads(value) if value is not None else None) == t["value"]

        checked = positives = 0
        for page in (p for f in truth["files"] for p in f["pages"]):
            sid, fields = page["sheet_id"], page["fields"]
            fid = form_of_sheet[sid]
            expectations = []
            for name, t in fields.items():
                if name.endswith(".given"):
                    time = name[:-len("given")] + "time"
                    expectations.append(((name, time), t["value"] is True and not fields[time]["ink"],
                                         (fid, "mar_prn_no_time", time)))
                if name == "collected_at":
                    expectations.append(((name,), not t["ink"], (fid, "lab_no_collection_time", name)))
                if name == "allergies_known":
                    expectations.append(((name,), t["value"] is None, (fid, "allergy_not_recorded", name)))
            for names, expected, flag in expectations:
                if all(read_as_truth(sid, n, fields[n]) for n in names):
                    assert (flag in flags) == expected, (flag, [fields[n] for n in names])
                    checked += 1
                    positives += bool(expected)
        assert checked >= 10 and positives >= 3 and checked - positives >= 3, (checked, positives)
    finally:
        kit.close()
