"""Registration content reaches the record system (issue 11 defect 5): national number, address,
phone, contact person, attending physician, reason, allergies (census and form), alerts, arrival
mode and admission type; against the official R4 schema and the real FHIR engine."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from export_helpers import add_capture
from fallbackkit.export import export_fhir
from fallbackkit.export.bundles import split_transaction
from fallbackkit.generate import import_census, print_blank, print_ward
from fallbackkit.generate.sample import write_census
from fallbackkit.store import init_kit
from fhir_engine_helpers import fhir_engine, r4_errors
from kit_helpers import AS_OF

SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
SNOMED = "http://snomed.info/sct"
FORM = {"last_name": "Dupont", "first_name": "Léa", "birth_date": "1979-01-01", "sex": "female",
        "national_id": "79010112358", "address": "Rue Haute 12, 1000 Bruxelles", "phone": "0470123456",
        "contact": "Marc Dupont, 0470654321", "arrival_time": "2026-11-28 03:20", "arrival_mode": "transfer",
        "admission_type": "emergency", "attending": "Dr Janssens", "reason": "community-acquired pneumonia",
        "allergies_known": "yes", "allergies": "amoxicillin (rash)", "alerts": ["fall_risk", "isolation"],
        "recorded_at": "2026-11-28 03:35", "recorder_initials": "MV", "__accept_handwriting__": True}


def _census_kit(tmp_path: Path):
    """A census with a national number column (one patient, ward 3B) and known allergies."""
    kit = init_kit(tmp_path / "kit", actor="t")
    patients, meds = write_census(tmp_path / "census", {"3B": 1})
    with patients.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows[0].update({"national_number": "85073003328", "allergies": "penicillin; latex"})
    with patients.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import_census(kit, patients, meds, actor="t", as_of=AS_OF)
    return kit, rows[0]["mrn"]


def _first_sheet(pack, template: str) -> str:
    return next(s["sheet_id"] for s in pack.sheets if s["template"] == template and s["page"] == 1)


def _resources(out: Path) -> list[dict]:
    return [e["resource"] for p in sorted(out.glob("bundle-*.json")) for e in json.loads(p.read_text())["entry"]]


def test_registration_content_is_mapped_and_accepted_by_the_engine(tmp_path):
    kit, mrn = _census_kit(tmp_path)
    pack = print_ward(kit, "3B", tmp_path / "w.pdf", actor="t")
    add_capture(kit, _first_sheet(pack, "registration"), dict(FORM))
    blank = print_blank(kit, "registration", 1, tmp_path / "b.pdf", actor="t")
    add_capture(kit, _first_sheet(blank, "registration"), {**FORM, "allergies_known": "no", "allergies": None,
                                                          "alerts": [], "contact": None})
    result = export_fhir(kit, tmp_path / "out")
    assert result["pending"] == 0, json.loads((tmp_path / "out" / "pending.json").read_text())["items"]
    resources = _resources(tmp_path / "out")
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    real = next(p for p in patients if any(i["value"] == mrn for i in p["identifier"]))
    assert {"use": "official", "system": SSIN, "value": "85073003328"} in real["identifier"], "census national number"
    downtime = next(p for p in patients if p is not real)
    assert {"use": "official", "system": SSIN, "value": "79010112358"} in downtime["identifier"]
    assert downtime["address"] == [{"text": FORM["address"]}]
    assert downtime["telecom"] == [{"system": "phone", "value": FORM["phone"]}]

    entries = json.loads((tmp_path / "out" / f"bundle-{mrn}.json").read_text())["entry"]
    [enc] = [e["resource"] for e in entries if e["resource"]["resourceType"] == "Encounter"]
    assert enc["participant"][0]["individual"] == {"display": "Dr Janssens"}
    assert enc["participant"][0]["type"][0]["coding"][0]["code"] == "ATND"
    assert enc["reasonCode"] == [{"text": FORM["reason"]}]
    assert ("http://terminology.hl7.org/CodeSystem/v3-ActPriority", "EM") in {
        (c["system"], c["code"]) for c in enc["priority"]["coding"]}
    assert ("http://terminology.hl7.org/CodeSystem/admit-source", "hosp-trans") in {
        (c["system"], c["code"]) for c in enc["hospitalization"]["admitSource"]["coding"]}

    [contact] = [r for r in resources if r["resourceType"] == "RelatedPerson"]
    assert contact["name"] == [{"text": FORM["contact"]}]
    allergies = [r for r in resources if r["resourceType"] == "AllergyIntolerance"]
    assert sorted(a["code"].get("text") for a in allergies) == ["latex", "no known allergy", "penicillin"]
    nka = next(a for a in allergies if a["code"].get("text") == "no known allergy")
    assert nka["code"]["coding"][0]["code"] == "716186003"
    flags = {r["code"]["text"]: r for r in resources if r["resourceType"] == "Flag"}
    assert "Allergies: amoxicillin (rash)" in flags, "only free text: a Flag, not a coded allergy"
    assert (SNOMED, "129839007") in {(c["system"], c["code"]) for c in flags["fall risk"]["code"]["coding"]}
    assert "isolation" in flags

    bundles = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("bundle-*.json"))]
    with fhir_engine() as engine:
        for _ in range(2):
            for b in bundles:
                assert r4_errors(b) == []
                for part in split_transaction(b, 8):
                    assert all(e["response"]["status"].startswith("2") for e in engine.transaction(part))
        assert len(engine.search("AllergyIntolerance")) == 3 and len(engine.search("Flag")) == 3
        assert len(engine.search("RelatedPerson")) == 1
        assert engine.search("Patient", f"identifier={SSIN}%7C79010112358")
    kit.close()
