"""Kit settings (issue 11 items 7 and 4): the time zone chosen at init and used by the FHIR export
on a machine in another zone; DST gap and overlap times held back with the reason; `settings`
show/set with an audit row; the export summary when no MRN system is set; INSZ/NISS check digits."""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from export_helpers import VITALS_C1, add_capture, build_scenario, forms_of, sheets_of, transcribe_all
from fallbackkit.cli import cli
from fallbackkit.export import export_fhir
from fallbackkit.generate import import_census, print_blank
from fallbackkit.generate.sample import write_census
from fallbackkit.store import open_kit
from fallbackkit.templates import values
from kit_helpers import AS_OF


@pytest.fixture
def utc_machine(monkeypatch):
    """This computer runs on UTC, the hospital is in Brussels: the case the issue saw (+00:00)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _run(kit_path: Path, *args: str):
    return CliRunner().invoke(cli, ["--kit", str(kit_path), "--user", "it", *args])


def _observations(out: Path) -> dict[str, dict]:
    found = {}
    for path in out.glob("bundle-*.json"):
        for entry in json.loads(path.read_text())["entry"]:
            for ident in entry["resource"].get("identifier", []):
                if ident["system"].endswith(":item"):
                    found[ident["value"]] = entry["resource"]
    return found


def _pending(out: Path) -> dict[str, str]:
    return {p["item"]: p["reason"] for p in json.loads((out / "pending.json").read_text())["items"]}


def _blank_vitals(kit, tmp_path: Path, days: list[tuple[str, str]]) -> list[str]:
    """One blank vitals form per (date, time), column 1 filled and transcribed; returns the form ids."""
    print_blank(kit, "vitals", len(days), tmp_path / "dst-blank.pdf", actor="tester")
    forms = forms_of(kit, "vitals", blank=True)[-len(days):]
    for form, (day, clock) in zip(forms, days):
        truth = {**VITALS_C1, "obs_date": day, "c1.time": clock}
        cap = add_capture(kit, sheets_of(kit, form["form_id"])[0], dict(truth), file_name=f"{form['form_id']}.pdf")
        transcribe_all(kit, cap, truth)
    return [f["form_id"] for f in forms]


@pytest.fixture
def brussels_kit(tmp_path, utc_machine):
    r = _run(tmp_path / "kit", "init", "--tz", "Europe/Brussels")
    assert r.exit_code == 0, r.output
    assert "time zone of paper times: Europe/Brussels" in r.output
    kit = open_kit(tmp_path / "kit")
    patients, meds = write_census(tmp_path / "census", None)
    import_census(kit, patients, meds, actor="tester", as_of=AS_OF)
    yield kit
    kit.close()


def test_init_stores_the_zone_and_the_export_uses_it_on_a_utc_machine(brussels_kit, tmp_path):
    kit = brussels_kit
    assert dt.datetime(2026, 11, 28, 8, 15).astimezone().utcoffset() == dt.timedelta(0)  # the machine is UTC
    info = build_scenario(kit, tmp_path)
    summer = _blank_vitals(kit, tmp_path, [("2026-07-10", "08:15")])[0]
    export_fhir(kit, tmp_path / "out")
    obs = _observations(tmp_path / "out")
    assert obs[f"{info['vitals_form']}:c1:pulse"]["effectiveDateTime"] == "2026-11-28T08:15:00+01:00"  # winter
    assert obs[f"{summer}:c1:pulse"]["effectiveDateTime"] == "2026-07-10T08:15:00+02:00"  # summer
    # --tz still overrides the kit setting
    export_fhir(kit, tmp_path / "ny", tz="America/New_York")
    assert _observations(tmp_path / "ny")[f"{summer}:c1:pulse"]["effectiveDateTime"] == "2026-07-10T08:15:00-04:00"


def test_init_without_tz_shows_this_computers_zone(tmp_path, utc_machine):
    r = _run(tmp_path / "kit", "init")
    assert r.exit_code == 0, r.output
    assert "time zone of paper times: UTC (this computer's" in r.output
    assert "tz                       UTC  (default)" not in _run(tmp_path / "kit", "settings").output  # stored, not a default
    assert _run(tmp_path / "kit", "init", "--tz", "Mars/Olympus").exit_code != 0


def test_dst_gap_and_overlap_times_are_held_back_with_the_reason(brussels_kit, tmp_path):
    kit = brussels_kit
    gap, overlap, fine = _blank_vitals(kit, tmp_path, [("2026-03-29", "02:30"), ("2026-10-25", "02:30"),
                                                       ("2026-10-25", "03:30")])
    export_fhir(kit, tmp_path / "out")
    obs, pending = _observations(tmp_path / "out"), _pending(tmp_path / "out")
    assert f"{gap}:c1" in pending and "does not exist in Europe/Brussels" in pending[f"{gap}:c1"]
    assert f"{overlap}:c1" in pending and "happened twice in Europe/Brussels" in pending[f"{overlap}:c1"]
    assert not any(k.startswith((f"{gap}:", f"{overlap}:")) for k in obs)
    assert obs[f"{fine}:c1:pulse"]["effectiveDateTime"] == "2026-10-25T03:30:00+01:00"
    # the worklist says so too, and does not call the item complete
    from fallbackkit.reconcile import worklist
    items = {i.item_id: i for i in worklist(kit)}
    assert not items[f"{gap}:c1"].resolved and any("does not exist" in u for u in items[f"{gap}:c1"].unresolved)
    assert not items[f"{overlap}:c1"].resolved and any("happened twice" in u for u in items[f"{overlap}:c1"].unresolved)
    assert items[f"{fine}:c1"].resolved


def test_to_instant_refuses_times_a_dst_change_skips_or_repeats():
    zone = "Europe/Brussels"
    assert values.to_instant(dt.datetime(2026, 3, 29, 1, 59), zone).isoformat() == "2026-03-29T01:59:00+01:00"
    assert values.to_instant(dt.datetime(2026, 3, 29, 3, 0), zone).isoformat() == "2026-03-29T03:00:00+02:00"
    for moment, code in ((dt.datetime(2026, 3, 29, 2, 30), "nonexistent_time"),
                         (dt.datetime(2026, 3, 29, 2, 0), "nonexistent_time"),
                         (dt.datetime(2026, 10, 25, 2, 30), "ambiguous_time"),
                         (dt.datetime(2026, 10, 25, 2, 0), "ambiguous_time")):
        with pytest.raises(values.ValueProblem) as exc:
            values.to_instant(moment, zone)
        assert exc.value.code == code
    assert values.to_instant(dt.datetime(2026, 10, 25, 3, 0), zone).isoformat() == "2026-10-25T03:00:00+01:00"


def test_settings_show_set_round_trip_and_audit(kit):
    r = _run(kit.path, "settings", "set", "mrn_system", "https://hospital.example/fhir/sid/mrn")
    assert r.exit_code == 0, r.output
    r = _run(kit.path, "settings", "set", "tz", "Europe/Brussels")
    assert r.exit_code == 0, r.output
    shown = {row["name"]: row for row in json.loads(_run(kit.path, "settings", "--json").output)}
    assert shown["mrn_system"]["value"] == "https://hospital.example/fhir/sid/mrn" and shown["mrn_system"]["set"]
    assert shown["tz"]["value"] == "Europe/Brussels"
    assert shown["national_number_system"]["value"].endswith("/NamingSystem/ssin")
    assert not shown["encounter_system"]["set"]
    text = _run(kit.path, "settings").output
    assert "encounter_system" in text and "(not set)" in text
    rows = kit.db.conn.execute("SELECT actor, object, before, after FROM audit WHERE action = 'kit.setting'"
                               " AND object = 'mrn_system'").fetchall()
    assert rows and rows[-1][0] == "it" and json.loads(rows[-1][3]) == {"value": "https://hospital.example/fhir/sid/mrn"}
    for bad in (("tz", "Mars/Olympus"), ("mrn_system", "not a uri"), ("colour", "blue")):
        r = _run(kit.path, "settings", "set", *bad)
        assert r.exit_code == 4, (bad, r.output)


def test_export_summary_says_created_not_matched_without_an_mrn_system(kit, tmp_path):
    build_scenario(kit, tmp_path)
    r = _run(kit.path, "export", "--format", "fhir", "--out", str(tmp_path / "a"))
    assert r.exit_code == 0, r.output
    assert "patients will be CREATED on the receiving server, not matched" in r.stdout
    assert "encounters will be CREATED" in r.stdout
    _run(kit.path, "settings", "set", "mrn_system", "https://hospital.example/fhir/sid/mrn")
    _run(kit.path, "settings", "set", "encounter_system", "https://hospital.example/fhir/sid/encounter")
    r = _run(kit.path, "export", "--format", "fhir", "--out", str(tmp_path / "b"))
    assert r.exit_code == 0 and "CREATED" not in r.stdout
    systems = {i["system"] for p in (tmp_path / "b").glob("bundle-*.json")
               for e in json.loads(p.read_text())["entry"] for i in e["resource"].get("identifier", [])}
    assert {"https://hospital.example/fhir/sid/mrn", "https://hospital.example/fhir/sid/encounter"} <= systems


NISS = [
    ("85073003328", "85073003328"),          # born 1985: 97 - (850730033 mod 97) = 28
    ("85.07.30-033.28", "85073003328"),      # as printed on the eID card
    ("01010100126", "01010100126"),          # born 2001: 97 - (2010101001 mod 97) = 26
    ("85073003329", None),                   # one check digit off
    ("01010100194", "01010100194"),          # the same 9 digits born 1901: the number cannot say the century
    ("01010100127", None),                   # neither the 1900s (94) nor the 2000s (26) check
    ("8507300332", None),                    # 10 digits
    ("", None),
]


@pytest.mark.parametrize("text,expected", NISS)
def test_national_number_check_digits(text, expected):
    if expected:
        assert values.check_national_number(text) == expected
    else:
        with pytest.raises(values.ValueProblem) as exc:
            values.check_national_number(text)
        assert exc.value.code == "bad_national_number"


def test_since_is_read_in_the_kits_zone(utc_machine):
    from fallbackkit.export.collect import parse_since
    assert parse_since("2026-11-28T14:00", "Europe/Brussels").isoformat() == "2026-11-28T14:00:00+01:00"
    # a --since in the hour that repeats means the earlier instant: the filter includes more, never less
    assert parse_since("2026-10-25T02:30", "Europe/Brussels").utcoffset() == dt.timedelta(hours=2)
    assert parse_since("2026-11-28T14:00").utcoffset() == dt.timedelta(0)  # no zone: this (UTC) computer's


def test_init_records_the_zone_in_its_audit_row(brussels_kit):
    after = brussels_kit.db.conn.execute("SELECT after FROM audit WHERE action = 'kit.init'").fetchone()[0]
    assert json.loads(after)["tz"] == "Europe/Brussels"


def test_a_setting_changed_from_the_cli_recomputes_the_summaries_in_that_command(brussels_kit, tmp_path):
    """IT's command pays the recompute a setting needs, not the review station's next decision."""
    from fallbackkit.generate import print_ward
    from fallbackkit.reconcile.summary import pending_forms, refresh
    print_ward(brussels_kit, "3B", tmp_path / "3B.pdf", actor="tester")
    refresh(brussels_kit)
    assert pending_forms(brussels_kit) == 0
    r = _run(brussels_kit.path, "settings", "set", "tz", "Europe/Paris")
    assert r.exit_code == 0, r.output
    assert "recomputing the summaries of" in r.output
    r = _run(brussels_kit.path, "identities", "mrn-format", "[0-9]{6}")
    assert r.exit_code == 0, r.output
    assert pending_forms(brussels_kit) == 0
