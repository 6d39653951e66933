"""Export rules on a scenario built row by row (export_helpers.build_scenario), where every value is
known: what is exported and what is held back, care times, medication status, lab requests,
--since, backups, restore, check, and the commands."""
from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from fhir.resources.R4B.bundle import Bundle

from export_helpers import build_scenario, readings_of, table_dump
from fallbackkit.cli import cli
from fallbackkit.errors import Conflict, IntegrityFailure
from fallbackkit.export import backup, check, export_fhir, restore
from fallbackkit.export.fhir import Unsettled, care_time, parse_number
from fallbackkit.store import init_kit, open_kit
from fallbackkit.store.decisions import record_review, undo_review


@pytest.fixture
def scene(kit, tmp_path):
    return kit, build_scenario(kit, tmp_path)


def _resources(out: Path, mrn: str) -> list[dict]:
    data = json.loads((out / f"bundle-{mrn}.json").read_text())
    Bundle.model_validate(data)
    return [e["resource"] for e in data["entry"]]


def _items(resources: list[dict]) -> dict[str, dict]:
    return {i["value"]: r for r in resources for i in r.get("identifier", []) if i["system"].endswith(":item")}


def _pending(out: Path) -> dict[str, str]:
    return {p["item"]: p["reason"] for p in json.loads((out / "pending.json").read_text())["items"]}


def test_conflict_is_held_back_until_resolved(scene, tmp_path):
    kit, info = scene
    export_fhir(kit, tmp_path / "a")
    pending = _pending(tmp_path / "a")
    assert "conflict" in pending[f"{info['vitals_form']}:c3"]
    assert "review pending" in pending[f"{info['vitals_form']}:c2"]
    assert f"{info['vitals_form']}:c3:pulse" not in _items(_resources(tmp_path / "a", info["patient"]))

    from fallbackkit.reconcile import resolve_conflict
    resolve_conflict(kit, info["vitals_form"], "c3.pulse", "86", "supervisor")
    export_fhir(kit, tmp_path / "b")
    assert f"{info['vitals_form']}:c3" not in _pending(tmp_path / "b")
    obs = _items(_resources(tmp_path / "b", info["patient"]))[f"{info['vitals_form']}:c3:pulse"]
    assert obs["valueQuantity"]["value"] == 86
    assert obs["effectiveDateTime"] == care_time("2026-11-28", "16:00")


def test_undo_puts_an_item_back_under_review(scene, tmp_path):
    kit, info = scene
    cap = info["captures"][0]
    rid = readings_of(kit, cap)["c1.pulse"]
    review_id = kit.db.conn.execute("SELECT max(review_id) FROM reviews WHERE reading_id = ?", [rid]).fetchone()[0]
    export_fhir(kit, tmp_path / "before")
    assert f"{info['vitals_form']}:c1:pulse" in _items(_resources(tmp_path / "before", info["patient"]))
    undo_review(kit.db.conn, review_id, "supervisor", "wrong patient column")
    export_fhir(kit, tmp_path / "after")
    assert f"{info['vitals_form']}:c1" in _pending(tmp_path / "after")
    # the pulse sent before is withdrawn (issue 11 defect 1); the column's other values are not re-sent
    after = {k: r for k, r in _items(_resources(tmp_path / "after", info["patient"])).items()
             if k.startswith(f"{info['vitals_form']}:c1:")}
    assert {k: r["status"] for k, r in after.items()} == {f"{info['vitals_form']}:c1:pulse": "entered-in-error"}


def test_illegible_value_is_not_exported(scene, tmp_path):
    kit, info = scene
    for cap in info["captures"][:2]:  # the sheet was scanned twice: both copies are unreadable there
        record_review(kit.db.conn, readings_of(kit, cap)["c1.temperature"], "illegible", None, "clerk1")
    export_fhir(kit, tmp_path / "out")
    assert "illegible" in _pending(tmp_path / "out")[f"{info['vitals_form']}:c1"]


def test_vitals_observations(scene, tmp_path):
    kit, info = scene
    export_fhir(kit, tmp_path / "out")
    items = _items(_resources(tmp_path / "out", info["patient"]))
    f = info["vitals_form"]
    expect = {"temperature": ("8310-5", 37.2), "pulse": ("8867-4", 88), "resp_rate": ("9279-1", 16),
              "spo2": ("59408-5", 97), "pain": ("72514-3", 2)}
    bp = items[f"{f}:c1:85354-9"]  # blood pressure: one panel with its two components (issue 11 defect 9)
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"]) for c in bp["component"]] == \
        [("8480-6", 121), ("8462-4", 79)]
    for row, (code, value) in expect.items():
        obs = items[f"{f}:c1:{row}"]
        assert obs["code"]["coding"][0]["code"] == code
        assert obs["valueQuantity"]["value"] == value
        assert obs["effectiveDateTime"] == care_time("2026-11-28", "08:15")
        assert obs["performer"] == [{"display": "initials: JD"}]
    assert items[f"{f}:c1:avpu"]["valueCodeableConcept"]["coding"][0]["code"] == "alert"


def test_medication_administrations(scene, tmp_path):
    kit, info = scene
    export_fhir(kit, tmp_path / "out")
    items = _items(_resources(tmp_path / "out", info["patient"]))
    f = info["mar_form"]
    given, held = items[f"{f}:{info['given_slot']}"], items[f"{f}:{info['held_slot']}"]
    assert given["status"] == "completed" and "statusReason" not in given
    assert given["effectiveDateTime"] == care_time("2026-11-28", "08:05")
    assert held["status"] == "not-done" and held["statusReason"][0]["text"] == "held"
    assert held["statusReason"][0]["coding"][0] == {"system": "urn:fallbackkit:codes:not-given", "code": "held",
                                                    "display": "held"}
    scheduled = held["note"][0]["text"].split()[-1]
    assert held["effectiveDateTime"] == care_time("2026-11-28", scheduled), "not given: the scheduled time"
    context = json.loads(kit.db.conn.execute("SELECT context FROM forms WHERE form_id = ?", [f]).fetchone()[0])
    line = int(info["given_slot"].split(".")[0][1:])
    med = next(m for m in context["medications"] if m["line"] == line)
    assert given["medicationCodeableConcept"]["text"].startswith(f"{med['medication']} {med['dose']}")
    if info["mar_items"] == 3:
        assert items[f"{f}:p1.s1"]["status"] == "completed"


def test_lab_request_one_service_request_per_test(scene, tmp_path):
    kit, info = scene
    export_fhir(kit, tmp_path / "out")
    resources = _resources(tmp_path / "out", info["patient"])
    items = _items(resources)
    f = info["lab_form"]
    for test in ("cbc", "crp"):
        sr = items[f"{f}:{test}"]
        assert sr["priority"] == "urgent" and sr["intent"] == "order"
        assert sr["requester"] == {"display": "Dr Peeters"}
        assert sr["occurrenceDateTime"] == care_time("2026-11-28", "07:30")
    assert items[f"{f}:cbc"]["code"]["text"] == "CBC", "the label printed on the form"
    specimen = items[f"{f}:specimen"]
    assert specimen["type"]["text"] == "blood"
    assert specimen["collection"]["collector"] == {"display": "initials: CD"}
    provs = [r for r in resources if r["resourceType"] == "Provenance"
             and r["meta"]["tag"][0]["code"] == f"{f}:cbc"]
    assert len(provs) == 1
    roles = {(a["type"]["coding"][0]["code"], a["who"]["display"]) for a in provs[0]["agent"]}
    assert ("author", "initials on the sheet: CD") in roles and ("verifier", "clerk1") in roles


def test_since_filters_by_scan_or_review_time(scene, tmp_path):
    kit, info = scene
    r = export_fhir(kit, tmp_path / "future", since="2999-01-01")
    assert r["bundles"] == 0
    r = export_fhir(kit, tmp_path / "past", since="2000-01-01")
    assert r["bundles"] == 2


def test_care_time_and_numbers():
    with pytest.raises(Unsettled):  # a day boundary a person must place (one rule with the worklist)
        care_time("28/11/2026", "24:00")
    assert care_time("2026-11-28", "0815") == care_time("2026-11-28", "08:15")
    with pytest.raises(Unsettled):
        care_time("2026-11-28", "25:10")
    with pytest.raises(Unsettled):
        care_time("31/02/2026", "08:00")
    assert parse_number("37,5") == 37.5 and parse_number("88") == 88
    with pytest.raises(Unsettled):
        parse_number("8?")


# --- backup, restore, check ----------------------------------------------------------------------
def test_backup_then_restore_gives_an_identical_store(scene, tmp_path):
    kit, info = scene
    out = tmp_path / "bk" / "kit.sqlite"
    result = backup(kit, out, "it")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and result["kit_id"] == kit.kit_id
    at_backup = table_dump(out)
    assert at_backup == table_dump(kit.store_path), "the copy holds exactly what the store held"
    # work goes on after the backup ...
    record_review(kit.db.conn, readings_of(kit, info["captures"][0])["c2.pulse"], "transcribe", "92", "clerk1")
    assert table_dump(kit.store_path)["reviews"] != at_backup["reviews"]
    # ... and the store is put back
    r = restore(kit, out, "it")
    now = table_dump(kit.store_path)
    assert {k: v for k, v in now.items() if k != "audit"} == {k: v for k, v in at_backup.items() if k != "audit"}
    assert now["audit"][:-1] == at_backup["audit"]
    assert now["audit"][-1][3] == "kit.restore"
    safety = Path(r["safety_copy"])
    assert stat.S_IMODE(safety.stat().st_mode) == 0o600
    assert len(table_dump(safety)["reviews"]) == len(at_backup["reviews"]) + 1, "the safety copy has the later work"
    check(kit)


def test_restore_refuses_another_kit_and_damaged_files(kit, tmp_path):
    other = init_kit(tmp_path / "other", actor="it")
    backup(other, tmp_path / "other.sqlite", "it")
    other.close()
    before = table_dump(kit.store_path)
    with pytest.raises(Conflict, match="belongs to kit"):
        restore(kit, tmp_path / "other.sqlite", "it")
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    with pytest.raises(IntegrityFailure):
        restore(kit, damaged, "it")
    assert table_dump(kit.store_path) == before, "a refused restore changes nothing"


def test_restore_refuses_a_backup_with_altered_audit(kit, tmp_path):
    out = tmp_path / "b.sqlite"
    backup(kit, out, "it")
    conn = sqlite3.connect(out)
    conn.execute("UPDATE audit SET actor = 'mallory' WHERE id = 1")
    conn.commit()
    conn.close()
    with pytest.raises(IntegrityFailure, match="audit chain"):
        restore(kit, out, "it")


def test_check_names_what_failed(kit):
    assert check(kit)["ok"]
    with kit.db.conn:
        kit.db.conn.execute("UPDATE audit SET action = 'nothing.happened' WHERE id = 1")
    with pytest.raises(IntegrityFailure, match="audit chain broken at row 1"):
        check(kit)


# --- commands --------------------------------------------------------------------------------------
def _run(kit_path: Path, *args: str):
    return CliRunner().invoke(cli, ["--kit", str(kit_path), "--user", "it", *args])


def test_commands_export_report_backup_check(scene, tmp_path):
    kit, info = scene
    r = _run(kit.path, "export", "--format", "fhir", "--out", str(tmp_path / "fhir"))
    assert r.exit_code == 0, r.output
    assert "2 bundles" in r.stdout and "0600" in r.stderr
    r = _run(kit.path, "export", "--format", "csv", "--out", str(tmp_path / "csv"))
    assert r.exit_code == 0 and (tmp_path / "csv" / "readings.csv").exists()
    r = _run(kit.path, "report", "--out", str(tmp_path / "r.html"))
    assert r.exit_code == 0 and "never came back" in r.stdout
    r = _run(kit.path, "report", "--out", str(tmp_path / "r.txt"))
    assert r.exit_code == 4 and "pdf or .html" in r.stderr
    r = _run(kit.path, "backup", "--out", str(tmp_path / "b.sqlite"))
    assert r.exit_code == 0 and "verified" in r.stdout
    r = _run(kit.path, "check")
    assert r.exit_code == 0 and "chain intact" in r.stdout
    r = _run(kit.path, "restore", str(tmp_path / "b.sqlite"))
    assert r.exit_code == 0 and "before-restore" in r.stderr


def test_check_command_exits_non_zero(kit):
    with kit.db.conn:
        kit.db.conn.execute("UPDATE audit SET actor = 'x' WHERE id = 1")
    r = _run(kit.path, "check")
    assert r.exit_code == 7 and "audit chain broken" in r.stderr


def test_restore_command_refuses_other_kit_without_force(kit, tmp_path):
    other = init_kit(tmp_path / "other", actor="it")
    backup(other, tmp_path / "other.sqlite", "it")
    other_id = other.kit_id
    other.close()
    r = _run(kit.path, "restore", str(tmp_path / "other.sqlite"))
    assert r.exit_code == 6 and "--force" in r.stderr
    r = _run(kit.path, "restore", "--force", str(tmp_path / "other.sqlite"))
    assert r.exit_code == 0, r.output
    assert open_kit(kit.path).kit_id == other_id


def test_skip_entered_leaves_out_what_clerks_typed_in(scene, tmp_path):
    kit, info = scene
    from fallbackkit.reconcile import mark_item
    item = f"{info['vitals_form']}:c1"
    mark_item(kit, item, "entered", "clerk2")
    r = export_fhir(kit, tmp_path / "all")
    assert f"{item}:pulse" in _items(_resources(tmp_path / "all", info["patient"]))
    r = export_fhir(kit, tmp_path / "rest", skip_entered=True)
    assert r["skipped_entered"] == 1
    assert not any(k.startswith(item + ":") for k in _items(_resources(tmp_path / "rest", info["patient"])))
    skipped = json.loads((tmp_path / "rest" / "pending.json").read_text())["skipped_entered"]
    assert skipped == [{"item": item, "status": "entered", "patient_mrn": info["patient"]}]


def test_stale_bundles_of_an_earlier_export_are_removed(scene, tmp_path):
    kit, info = scene
    out = tmp_path / "fhir"
    out.mkdir()
    (out / "bundle-DTM99999999.json").write_text("{}")
    (out / "notes.txt").write_text("keep me")
    r = export_fhir(kit, out)
    assert r["removed_stale"] == ["bundle-DTM99999999.json"]
    assert (out / "notes.txt").exists() and not (out / "bundle-DTM99999999.json").exists()


def test_backup_and_restore_refuse_the_live_store(kit):
    from fallbackkit.errors import BadInput
    with pytest.raises(BadInput, match="own store"):
        backup(kit, kit.store_path, "it")
    with pytest.raises(BadInput, match="own store"):
        restore(kit, kit.store_path, "it")
    check(kit)


def test_report_for_one_ward(scene, tmp_path):
    kit, info = scene
    from fallbackkit.export import report_data
    d = report_data(kit, ward="3B")
    assert {g["ward"] for g in d["by_group"]} == {"3B"}
    assert d["totals"]["sheets_printed"] == kit.db.conn.execute(
        "SELECT count(*) FROM sheets s JOIN forms f ON f.form_id = s.form_id WHERE f.ward = '3B'").fetchone()[0]
    assert all(m["ward"] == "3B" for m in d["missing"])
    beds = [int(m["bed"]) for m in d["missing"]]
    assert beds == sorted(beds), "missing sheets are listed bed by bed, 2 before 11"
    assert d["totals"]["conflicts"] == 1 and d["conflicts"][0]["field"] == "c3.pulse"
    # in the report itself, missing sheets carry the id as printed on the paper, to search for it
    from fallbackkit.export import write_report
    from fallbackkit.ids import pretty_sheet_id
    text = (tmp_path / "r.html").read_text() if write_report(kit, tmp_path / "r.html", "3B") else ""
    assert d["missing"] and all(f"<td>{pretty_sheet_id(m['sheet_id'])}</td>" in text for m in d["missing"])


def test_care_times_in_the_hospital_time_zone(scene, tmp_path):
    kit, info = scene
    export_fhir(kit, tmp_path / "bxl", tz="Europe/Brussels")
    obs = _items(_resources(tmp_path / "bxl", info["patient"]))[f"{info['vitals_form']}:c1:pulse"]
    assert obs["effectiveDateTime"] == "2026-11-28T08:15:00+01:00"
    export_fhir(kit, tmp_path / "ny", tz="America/New_York")
    obs = _items(_resources(tmp_path / "ny", info["patient"]))[f"{info['vitals_form']}:c1:pulse"]
    assert obs["effectiveDateTime"] == "2026-11-28T08:15:00-05:00"
    r = _run(kit.path, "export", "--format", "fhir", "--tz", "Mars/Olympus", "--out", str(tmp_path / "x"))
    assert r.exit_code == 4 and "time zone" in r.stderr


def test_reports_render_on_a_kit_with_nothing_scanned(kit, tmp_path):
    from fallbackkit.export import write_report
    import pypdfium2 as pdfium
    r = write_report(kit, tmp_path / "empty.pdf")
    assert r["todo"] == ["Nothing left to do: every printed sheet is back, reviewed and re-entered."]
    pdf = pdfium.PdfDocument(str(tmp_path / "empty.pdf"))
    assert "Nothing left to do" in pdf[0].get_textpage().get_text_range()
    pdf.close()
    write_report(kit, tmp_path / "empty.html")
    assert "Nothing left to do" in (tmp_path / "empty.html").read_text()


def test_a_failed_write_leaves_neither_file_nor_temp(tmp_path, monkeypatch):
    from fallbackkit.export import write_private

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_private(tmp_path / "out" / "bundle.json", "{}")
    assert list((tmp_path / "out").iterdir()) == []


def test_json_export_wants_a_file_and_csv_a_directory(scene, tmp_path):
    kit, _ = scene
    (tmp_path / "d").mkdir()
    r = _run(kit.path, "export", "--format", "json", "--out", str(tmp_path / "d"))
    assert r.exit_code == 4 and "directory" in r.stderr
    (tmp_path / "f.csv").write_text("")
    r = _run(kit.path, "export", "--format", "csv", "--out", str(tmp_path / "f.csv"))
    assert r.exit_code == 4 and "is a file" in r.stderr


def test_check_archive_finds_a_changed_or_missing_original(scene):
    kit, _ = scene
    assert check(kit, archive=True)["archive_problems"] == []
    rel, first = kit.db.conn.execute("SELECT archive_path, first_path FROM input_files"
                                     " WHERE archive_path IS NOT NULL ORDER BY sha256").fetchone()
    (kit.path / rel).write_bytes(b"tampered")
    with pytest.raises(IntegrityFailure, match="archive: 1 originals missing or changed"):
        check(kit, archive=True)
    check(kit)  # the store itself is fine
    (kit.path / rel).unlink()
    r = _run(kit.path, "check", "--archive")
    assert r.exit_code == 7 and f"{rel} (from {first}) is missing" in r.stderr


def test_unlinked_downtime_patient_is_its_own_patient(scene, tmp_path):
    kit, info = scene
    from fallbackkit.reconcile import unlink_identity
    unlink_identity(kit, info["blank_mrn"], "clerk1", "wrong wristband")
    export_fhir(kit, tmp_path / "out")
    assert not (tmp_path / "out" / f"bundle-{info['linked_to']}.json").exists()
    resources = _resources(tmp_path / "out", info["blank_mrn"])
    patient = resources[0]
    assert patient["identifier"] == [{"use": "temp", "system": f"urn:fallbackkit:{kit.kit_id}:downtime-mrn",
                                      "value": info["blank_mrn"]}]
    assert patient["name"] == [{"text": "Unknown male"}] and "birthDate" not in patient
    enc = next(r for r in resources if r["resourceType"] == "Encounter")
    assert enc["identifier"][0] == {"system": f"urn:fallbackkit:{kit.kit_id}:downtime-episode",
                                    "value": info["blank_mrn"]}


def test_progress_of_one_hour_of_work_is_a_line_from_zero_to_the_total():
    """The report's "items entered, cumulative per hour" had a lone point (x axis 0 to 0.01) when every
    item was entered within one hour."""
    import datetime as dt

    from fallbackkit.export.report import _progress
    zone = dt.timezone(dt.timedelta(hours=1))
    times = [dt.datetime(2026, 11, 30, 14, m, tzinfo=zone) for m in (5, 20, 41)]
    assert _progress(times) == [("30/11 14:00", 0), ("30/11 15:00", 3)]
    later = times + [dt.datetime(2026, 11, 30, 16, 2, tzinfo=zone)]
    assert _progress(later) == [("30/11 14:00", 0), ("30/11 15:00", 3), ("30/11 16:00", 3), ("30/11 17:00", 4)]
    assert _progress([]) == []
