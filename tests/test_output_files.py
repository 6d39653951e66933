"""Files written by commands: names that cannot collide (issue 9 item 2) and CSV cells that no
spreadsheet runs as a formula (issue 9 item 16). Through the real commands, on a real kit."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from export_helpers import VITALS_C1, add_capture, forms_of, sheets_of, transcribe_all
from fallbackkit.cli import cli
from fallbackkit.errors import Conflict
from fallbackkit.files import OutputFiles, file_name, file_stem
from fallbackkit.generate import import_census
from fallbackkit.store import init_kit

HEADER = "mrn,encounter,last_name,first_name,birth_date,sex,ward,bed,allergies\n"


def _kit(tmp_path: Path, rows: list[str]):
    kit = init_kit(tmp_path / "kit", actor="tester")
    patients = tmp_path / "patients.csv"
    patients.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    import_census(kit, patients, None, actor="tester", as_of="2026-11-28T06:00:00+01:00")
    return kit


def _run(kit_path: Path, *args: str):
    return CliRunner().invoke(cli, ["--kit", str(kit_path), "--user", "it", *args])


def test_stems_of_colliding_keys_differ():
    assert file_stem("100345") == "100345" and file_stem("3B") == "3B"  # clean keys stay as they are
    keys = ["A/1", "A_1", "a_1", "A:1", "A 1", "A_1~" + file_stem("A/1").split("~")[1], "", ".", "..", "/"]
    stems = [file_stem(k) for k in keys]
    assert len({s.casefold() for s in stems}) == len(keys), stems  # distinct even on a case-folding disk
    assert all("/" not in s and s not in (".", "..") and not s.startswith(".") for s in stems)
    assert file_name("ward-", "3/B", ".pdf").startswith("ward-3_B~")
    assert file_stem("CON").startswith("CON~") and file_stem("A" * 65).startswith("A" * 40 + "~")


def test_a_run_refuses_to_write_one_path_twice(tmp_path):
    outputs = OutputFiles()
    outputs.write_private(tmp_path / "x.json", "first", "patient 1")
    with pytest.raises(Conflict, match="patient 2 and patient 1"):
        outputs.write_private(tmp_path / "X.json", "second", "patient 2")
    assert (tmp_path / "x.json").read_text() == "first"


def test_fhir_export_writes_one_bundle_per_patient_when_mrns_sanitise_alike(tmp_path):
    kit = _kit(tmp_path, ["A/1,E1,Dupont,Léa,1961-02-03,F,3B,1,", "A_1,E2,Martin,Jan,1970-05-06,M,3B,2,"])
    r = _run(kit.path, "print", "--ward", "3B", "--out", str(tmp_path / "ward-3B.pdf"))
    assert r.exit_code == 0, r.output
    for form in forms_of(kit, "vitals", "3B"):
        cap = add_capture(kit, sheets_of(kit, form["form_id"])[0], dict(VITALS_C1))
        transcribe_all(kit, cap, VITALS_C1)
    r = _run(kit.path, "export", "--format", "fhir", "--out", str(tmp_path / "fhir"))
    assert r.exit_code == 0, r.output
    bundles = sorted((tmp_path / "fhir").glob("bundle-*.json"))
    assert len(bundles) == 2, [b.name for b in bundles]
    assert (tmp_path / "fhir" / "bundle-A_1.json").exists()  # the clean key keeps its plain name
    mrns = set()
    for b in bundles:
        doc = json.loads(b.read_text())
        mrns |= {i["value"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient"
                 for i in e["resource"]["identifier"]}
    assert {"A/1", "A_1"} <= mrns


def test_ward_packs_of_wards_that_sanitise_alike_are_two_files(tmp_path):
    kit = _kit(tmp_path, ["100001,E1,Dupont,Léa,1961-02-03,F,3/B,1,", "100002,E2,Martin,Jan,1970-05-06,M,3_B,2,"])
    r = _run(kit.path, "print", "--ward", "all", "--out", str(tmp_path / "packs"))
    assert r.exit_code == 0, r.output
    packs = sorted(p.name for p in (tmp_path / "packs").glob("ward-*.pdf"))
    assert len(packs) == 2 and "ward-3_B.pdf" in packs, packs
    batches = kit.db.execute("SELECT ward, out_path FROM print_batches ORDER BY ward").fetchall()
    assert len({out for _, out in batches}) == 2
    for ward, out in batches:  # every batch registered as printed has its own PDF on disk
        assert Path(out).exists(), (ward, out)


def test_crops_of_fields_that_sanitise_alike_are_two_files(tmp_path):
    from fallbackkit.scan.pipeline import _save_crops
    import numpy as np
    out = {"readings": [{"field": "a/b", "status": "review", "ink": 1}, {"field": "a_b", "status": "review", "ink": 1}],
           "_crops": [np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8)]}
    _save_crops(tmp_path, Path("crops") / "ab" / "stem", out)
    paths = [r["crop_path"] for r in out["readings"]]
    assert len(set(paths)) == 2 and all((tmp_path / p).exists() for p in paths)


# --- item 16: CSV injection ----------------------------------------------------------------------
def test_csv_export_neutralises_formulas(tmp_path):
    kit = _kit(tmp_path, ["100001,E1,Dupont,Léa,1961-02-03,F,3B,1,"])
    assert _run(kit.path, "print", "--ward", "3B", "--out", str(tmp_path / "w.pdf")).exit_code == 0
    form = forms_of(kit, "vitals", "3B")[0]
    cap = add_capture(kit, sheets_of(kit, form["form_id"])[0], dict(VITALS_C1))
    hostile = {"c1.initials": '=HYPERLINK("http://x","y")', "c1.pulse": "+88", "c1.temperature": "-2",
               "c1.time": "@SUM(1)", "c1.spo2": "\t97", "c1.resp_rate": "\r16", "c1.bp_systolic": "'=1"}
    transcribe_all(kit, cap, {**VITALS_C1, **hostile})
    r = _run(kit.path, "export", "--format", "csv", "--out", str(tmp_path / "csv"))
    assert r.exit_code == 0, r.output
    with open(tmp_path / "csv" / "readings.csv", newline="", encoding="utf-8") as fh:
        rows = {row["field"]: row for row in csv.DictReader(fh)}
    for field, text in hostile.items():
        assert rows[field]["value"] == "'" + text, (field, rows[field]["value"])
    assert rows["c1.avpu"]["value"] == "alert"
    for row in rows.values():
        for cell in row.values():
            assert not cell or cell[0] not in "=+-@\t\r", (row["field"], cell)
    # numbers the kit computed stay numbers
    assert rows["c1.pulse"]["capture_id"] == str(cap)
    assert float(rows["c1.avpu"]["confidence"]) > 0


def test_negative_numbers_computed_by_the_kit_stay_numbers():
    from fallbackkit.export.tabular import _cell
    assert _cell(-1.5) == -1.5 and _cell(-3) == -3
    assert _cell("-1.5") == "'-1.5" and _cell(["=x"]) == '["=x"]' and _cell(True) == "true"


@pytest.mark.parametrize("args", [
    ["print", "--ward", "3B", "--out", "{kit}/store.sqlite"],
    ["print", "registration", "--blank", "1", "--out", "{kit}/secret.key"],
    ["print", "--ward", "all", "--out", "{kit}/packs"],
    ["export", "--format", "json", "--out", "{kit}/secret.key"],
    ["export", "--format", "csv", "--out", "{kit}/archive"],
    ["export", "--format", "fhir", "--out", "{kit}"],
    ["report", "--out", "{kit}/pages/report.html"],
])
def test_outputs_never_go_inside_the_kit(kit, tmp_path, args):
    """`--out kit/store.sqlite` used to replace the store with a PDF (and `secret.key` the secret)."""
    before = {p: p.read_bytes() for p in kit.path.rglob("*") if p.is_file() and "store.sqlite" not in p.name}
    store = kit.store_path.read_bytes()
    r = _run(kit.path, *[a.replace("{kit}", str(kit.path)) for a in args])
    assert r.exit_code == 4 and "is inside the kit folder" in r.output, r.output
    assert {p: p.read_bytes() for p in kit.path.rglob("*") if p.is_file() and "store.sqlite" not in p.name} == before
    assert kit.store_path.read_bytes()[:16] == store[:16] == b"SQLite format 3\x00"
    assert kit.db.execute("SELECT COUNT(*) FROM print_batches").fetchone()[0] == 0


def test_blank_stock_batches_are_recorded_as_blank(kit, tmp_path):
    r = _run(kit.path, "print", "registration", "--blank", "2", "--out", str(tmp_path / "b.pdf"))
    assert r.exit_code == 0, r.output
    assert kit.db.execute("SELECT kind FROM print_batches").fetchall() == [("blank",)]
