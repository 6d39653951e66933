"""Issue 12.4: a choice read as "corrected on paper" (one box filled solid, another clearly marked:
the scan accepts the marked one and keeps the note on the reading) is shown to the clerk on the
worklist item, and carried by the CSV worklist and the FHIR resources as a remark/note."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner

from export_helpers import VITALS_C1, add_capture, forms_of, sheets_of, transcribe_all
from fallbackkit.cli import cli
from fallbackkit.generate import import_census
from fallbackkit.reconcile import worklist
from fallbackkit.scan.reasons import english
from fallbackkit.store import init_kit

HEADER = "mrn,encounter,last_name,first_name,birth_date,sex,ward,bed,allergies\n"


def _run(kit_path: Path, *args: str):
    return CliRunner().invoke(cli, ["--kit", str(kit_path), "--user", "it", *args])


def test_corrected_on_paper_on_the_worklist_csv_and_fhir(tmp_path):
    kit = init_kit(tmp_path / "kit", actor="tester")
    (tmp_path / "patients.csv").write_text(HEADER + "100001,E1,Dupont,Léa,1961-02-03,F,3B,1,\n", encoding="utf-8")
    import_census(kit, tmp_path / "patients.csv", None, actor="tester", as_of="2026-11-28T06:00:00+01:00")
    assert _run(kit.path, "print", "--ward", "3B", "--out", str(tmp_path / "w.pdf")).exit_code == 0
    form = forms_of(kit, "vitals", "3B")[0]
    cap = add_capture(kit, sheets_of(kit, form["form_id"])[0], dict(VITALS_C1))
    transcribe_all(kit, cap, dict(VITALS_C1))
    # what the scan writes for an accepted correction on paper (scan/read.py decide)
    with kit.db.conn:
        kit.db.conn.execute("UPDATE readings SET reason = ? WHERE capture_id = ? AND field = 'c1.avpu'",
                            [english("corrected"), cap])
    items = {i.item_id: i for i in worklist(kit)}
    c1 = items[f"{form['form_id']}:c1"]
    assert c1.remarks == ["c1.avpu: corrected on paper"]
    assert c1.as_dict()["remarks"] == c1.remarks
    assert all(not i.remarks and "remarks" not in i.as_dict() for k, i in items.items() if k != c1.item_id)

    # the station's worklist says it with the field's printed label, in the clerk's language
    from fallbackkit.review import create_app
    from review_helpers import add_people
    from test_review_app import csrf_of, login
    add_people(kit)
    client = create_app(kit.path).test_client()
    login(client, "clara")
    page = client.get("/worklist?status=all").get_data(as_text=True)
    assert "corrected on paper" in page and "c1.avpu" not in page
    client.post("/lang", data={"lang": "fr", "csrf_token": csrf_of(client)})
    page = client.get("/worklist?status=all").get_data(as_text=True)
    assert "corrigé sur le papier" in page and "corrected on paper" not in page

    r = _run(kit.path, "export", "--format", "csv", "--out", str(tmp_path / "csv"))
    assert r.exit_code == 0, r.output
    with open(tmp_path / "csv" / "worklist.csv", newline="", encoding="utf-8") as fh:
        rows = {row["item_id"]: row for row in csv.DictReader(fh)}
    assert rows[c1.item_id]["remarks"] == "c1.avpu: corrected on paper"
    assert all(not row["remarks"] for k, row in rows.items() if k != c1.item_id)

    r = _run(kit.path, "export", "--format", "fhir", "--out", str(tmp_path / "fhir"))
    assert r.exit_code == 0, r.output
    resources = [e["resource"] for p in (tmp_path / "fhir").glob("bundle-*.json")
                 for e in json.loads(p.read_text())["entry"]]
    observations = [x for x in resources if x["resourceType"] == "Observation"]
    assert observations
    assert all({"text": "c1.avpu: corrected on paper"} in x.get("note", []) for x in observations)
