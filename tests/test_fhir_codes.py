"""Vital signs that fit the R4 vital-signs profiles and standard lab codes from the template's table
(issue 11 defect 9), against the official R4 schema and the real FHIR engine."""
from __future__ import annotations

import json
from pathlib import Path

from export_helpers import VITALS_C1, add_capture
from fallbackkit.export import export_fhir
from fallbackkit.export.bundles import split_transaction
from fhir_engine_helpers import fhir_engine, r4_errors
from kit_helpers import census_kit

SNOMED, LOINC = "http://snomed.info/sct", "http://loinc.org"


def _kit(tmp_path: Path):
    from fallbackkit.generate import print_ward
    kit = census_kit(tmp_path, wards={"3B": 1})
    pack = print_ward(kit, "3B", tmp_path / "w.pdf", actor="t")
    sheets: dict[str, str] = {}
    for s in pack.sheets:
        sheets.setdefault(s["template"], s["sheet_id"])  # the first page of each form
    add_capture(kit, sheets["vitals"], {**VITALS_C1, "__accept_handwriting__": True})
    add_capture(kit, sheets["lab-request"], {"tests": ["cbc", "crp", "coag"], "specimen": "blood",
                                             "priority": "urgent", "collected_at": "2026-11-28 07:30",
                                             "__accept_handwriting__": True})
    return kit


def _resources(out: Path) -> list[dict]:
    return [e["resource"] for p in sorted(out.glob("bundle-*.json")) for e in json.loads(p.read_text())["entry"]]


def _codes(concept: dict) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept.get("coding", [])}


def test_vitals_fit_the_r4_profiles_and_lab_codes_come_from_the_template(tmp_path):
    kit = _kit(tmp_path)
    export_fhir(kit, tmp_path / "out")
    resources = _resources(tmp_path / "out")
    obs = [r for r in resources if r["resourceType"] == "Observation"]
    by_code = {c: o for o in obs for c in (x["code"] for x in o["code"].get("coding", []))}

    bp = by_code["85354-9"]
    assert "valueQuantity" not in bp and bp["category"][0]["coding"][0]["code"] == "vital-signs"
    assert {(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"], c["valueQuantity"]["code"])
            for c in bp["component"]} == {("8480-6", 121, "mm[Hg]"), ("8462-4", 79, "mm[Hg]")}
    assert "8480-6" not in by_code and "8462-4" not in by_code, "no separate systolic/diastolic Observations"

    spo2 = by_code["2708-6"]
    assert _codes(spo2["code"]) == {(LOINC, "2708-6"), (LOINC, "59408-5")}
    assert spo2["valueQuantity"] == {"value": 97, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}

    avpu = next(o for o in obs if o["code"]["text"].startswith("Level of consciousness"))
    assert (SNOMED, "248234008") in _codes(avpu["valueCodeableConcept"])
    assert ("urn:fallbackkit:codes:avpu", "alert") in _codes(avpu["valueCodeableConcept"])

    pain = by_code["72514-3"]
    assert [c["coding"][0]["code"] for c in pain["category"]] == ["survey"]

    requests = {r["code"]["coding"][0]["code"]: r for r in resources if r["resourceType"] == "ServiceRequest"}
    assert _codes(requests["cbc"]["code"]) == {("urn:fallbackkit:codes:lab-test", "cbc"), (LOINC, "58410-2")}
    assert (LOINC, "1988-5") in _codes(requests["crp"]["code"])
    assert _codes(requests["coag"]["code"]) == {("urn:fallbackkit:codes:lab-test", "coag")}, "no guessed code"
    [specimen] = [r for r in resources if r["resourceType"] == "Specimen"]
    assert {("http://terminology.hl7.org/CodeSystem/v2-0487", "BLD"), (SNOMED, "119297000")} <= _codes(specimen["type"])

    # local code systems: one URI per kind, not one per kit
    text = (tmp_path / "out").joinpath(next(p.name for p in (tmp_path / "out").glob("bundle-*.json"))).read_text()
    assert f"urn:fallbackkit:{kit.kit_id}:lab-test" not in text and f"urn:fallbackkit:{kit.kit_id}:avpu" not in text

    bundles = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("bundle-*.json"))]
    with fhir_engine() as engine:
        for b in bundles:
            assert r4_errors(b) == []
            for part in split_transaction(b, 8):
                assert all(e["response"]["status"].startswith("2") for e in engine.transaction(part))
        [stored] = [o for o in engine.search("Observation", "code=http%3A%2F%2Floinc.org%7C85354-9")]
        assert len(stored["component"]) == 2
        assert len(engine.search("Observation", "component-code=8480-6")) == 1
    kit.close()


def test_a_hospital_overrides_a_code_in_its_copy_of_the_template(tmp_path):
    """The code table is in the template: the kit's copy decides, no Python changes."""
    kit = _kit(tmp_path)
    copy = kit.templates_dir / "lab-request.yaml"
    text = copy.read_text()
    assert "1988-5" in text
    copy.write_text(text.replace("code: 1988-5, display: \"C reactive protein [Mass/volume] in Serum or Plasma\"",
                                 "code: 30522-7, display: \"C reactive protein [Mass/volume] in Serum or Plasma"
                                 " by High sensitivity method\""))
    export_fhir(kit, tmp_path / "out")
    [crp] = [r for r in _resources(tmp_path / "out") if r["resourceType"] == "ServiceRequest"
             and r["code"]["coding"][0]["code"] == "crp"]
    assert (LOINC, "30522-7") in _codes(crp["code"]) and (LOINC, "1988-5") not in _codes(crp["code"])
    kit.close()
