"""A hospital's own form works end to end with no code of its own: the neurological observation
chart (form_templates/optional/neuro-obs.yaml) is copied into a kit, printed in a ward pack,
filled by the simulator, scanned, decided, reconciled, put on the worklist and exported as FHIR
Observations with the LOINC codes its template declares."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from export_helpers import scan_scenario
from fallbackkit.store.kit import SHIPPED_TEMPLATES
from kit_helpers import census_kit

NEURO = SHIPPED_TEMPLATES / "optional" / "neuro-obs.yaml"
REPO = Path(__file__).resolve().parents[1]


def test_no_python_names_the_new_template():
    hits = [p for p in (REPO / "fallbackkit").rglob("*.py") if "neuro" in p.read_text(encoding="utf-8")]
    assert hits == []


@pytest.fixture(scope="module")
def neuro_kit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("neuro")
    kit = census_kit(tmp, wards={"ICU": 2})
    shutil.copy(NEURO, kit.templates_dir / NEURO.name)
    info = scan_scenario(kit, tmp)
    yield kit, info, tmp
    kit.close()


def test_neuro_chart_prints_scans_reconciles_and_reaches_the_worklist(neuro_kit):
    from fallbackkit.reconcile import reconcile, worklist
    kit, info, _ = neuro_kit
    conn = kit.db.conn
    forms = [r[0] for r in conn.execute("SELECT form_id FROM forms WHERE template = 'neuro-obs'")]
    assert len(forms) == 2  # one per ICU patient, in the ward pack
    read = conn.execute("SELECT COUNT(*) FROM captures WHERE template = 'neuro-obs' AND status = 'read'").fetchone()[0]
    assert read == 4  # two pages per form, every page read
    rec = {f["form_id"]: f for f in reconcile(kit)["forms"]}
    assert all(rec[f]["state"] == "complete" for f in forms), [rec[f] for f in forms]
    items = [i for i in worklist(kit) if i.form_id in forms]
    assert items and {i.kind for i in items} == {"vitals"}
    first = next(i for i in items if i.item_id.endswith(":c1"))
    assert first.summary.startswith("Neuro obs c1 at 2026-11-28T08:15")
    # scan_scenario types "42" for a number it has no value for: a GCS total of 42 is flagged
    flags = [f for form in forms for f in rec[form]["flags"] if f["code"] == "out_of_range"]
    assert any(f["field"].endswith(".gcs_total") and "3-15" in f["message"] for f in flags), flags


def test_neuro_chart_exports_fhir_observations_with_its_loinc_codes(neuro_kit, tmp_path):
    from fallbackkit.export import export_fhir
    kit, _, _ = neuro_kit
    export_fhir(kit, tmp_path / "fhir")
    observations = []
    for path in sorted((tmp_path / "fhir").glob("bundle-*.json")):
        data = json.loads(path.read_text())
        Bundle.model_validate(data)
        observations += [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Observation"]
    by_code = {}
    for o in observations:
        for c in o["code"].get("coding", []):
            by_code.setdefault(c["code"], []).append(o)
    total = by_code.get("9269-2")
    assert total and total[0]["valueQuantity"] == {"value": 42, "unit": "score", "system": "http://unitsofmeasure.org",
                                                   "code": "{score}"}
    assert total[0]["category"][0]["coding"][0]["code"] == "exam"
    coded = [o for code in ("9267-6", "9270-0", "9268-4") for o in by_code.get(code, [])]
    assert coded, "no GCS component exported"
    assert all(o["valueCodeableConcept"]["coding"][0]["code"][0] in "evm" for o in coded)
    pupils = [o for o in observations if o["code"]["text"].endswith("pupil diameter")]
    assert pupils and all("coding" not in o["code"] for o in pupils)  # no LOINC code declared for them


def test_templates_preview_of_a_file_and_a_broken_file(tmp_path):
    out = tmp_path / "neuro.pdf"
    run = subprocess.run([sys.executable, "-m", "fallbackkit", "--kit", str(tmp_path / "nokit"), "templates",
                          "preview", str(NEURO), "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes().startswith(b"%PDF") and "neuro-obs@1: 2 page(s)" in run.stderr
    assert "vitals per column -> FHIR observation" in run.stderr
    assert not (tmp_path / "nokit").exists()  # nothing registered anywhere
    broken = tmp_path / "broken.yaml"
    broken.write_text(NEURO.read_text().replace("loinc: 9269-2", "loinc: GCS"))
    run = subprocess.run([sys.executable, "-m", "fallbackkit", "templates", "preview", str(broken), "--out",
                          str(tmp_path / "b.pdf")], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode != 0
    assert "broken.yaml: section 2 grid row 5 'gcs_total' observation: loinc 'GCS' is not a LOINC code" in run.stderr
