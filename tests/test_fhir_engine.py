"""The FHIR export against a real FHIR engine (medplum's router, in memory, on 127.0.0.1) and the
official R4 JSON schema: what a receiving server does with the bundles, not only their shape."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from export_helpers import scan_scenario
from fallbackkit.export import export_fhir
from fallbackkit.export.bundles import split_transaction
from fallbackkit.store.decisions import record_review
from fhir_engine_helpers import fhir_engine, schema_errors
from kit_helpers import census_kit


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fhir-engine")
    kit = census_kit(tmp, wards={"3B": 2, "ICU": 1})
    scan_scenario(kit, tmp)
    out = tmp / "fhir"
    export_fhir(kit, out)
    bundles = [json.loads(p.read_text()) for p in sorted(Path(out).glob("bundle-*.json"))]
    assert bundles
    yield kit, bundles
    kit.close()


def test_every_bundle_validates_against_the_official_r4_json_schema(exported):
    _, bundles = exported
    for bundle in bundles:
        assert schema_errors(bundle) == [], bundle["entry"][0]["resource"].get("identifier")


def test_a_bundle_split_to_eight_entries_keeps_every_reference_inside_its_part(exported):
    _, bundles = exported
    big = max(bundles, key=lambda b: len(b["entry"]))
    parts = split_transaction(big, 8)
    assert len(parts) > 1 and all(len(p["entry"]) <= 8 for p in parts)
    assert {e["fullUrl"] for p in parts for e in p["entry"]} == {e["fullUrl"] for e in big["entry"]}
    for part in parts:
        urls = {e["fullUrl"] for e in part["entry"]}
        refs = set(re.findall(r'"reference": "(urn:uuid:[^"]+)"', json.dumps(part)))
        assert refs <= urls


def _parts_in_order(out: Path) -> list[dict]:
    def order(path: Path):
        m = re.fullmatch(r"bundle-(.+?)(?:\.part(\d+)of\d+)?\.json", path.name)
        return m.group(1), int(m.group(2) or 0)
    return [json.loads(p.read_text()) for p in sorted(out.glob("bundle-*.json"), key=order)]


def test_first_send_creates_and_a_second_send_changes_nothing(exported, tmp_path):
    """medplum refuses a transaction of more than 8 conditional entries: `export --max-entries 8`
    writes parts it accepts."""
    kit, whole = exported
    run = subprocess.run([sys.executable, "-m", "fallbackkit", "--kit", str(kit.path), "export", "--format", "fhir",
                          "--max-entries", "8", "--out", str(tmp_path / "parts")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    bundles = _parts_in_order(tmp_path / "parts")
    assert len(bundles) > len(whole) and all(len(b["entry"]) <= 8 for b in bundles)
    types = sorted({e["resource"]["resourceType"] for b in bundles for e in b["entry"]})
    with fhir_engine() as engine:
        for bundle in bundles:
            statuses = [e["response"]["status"] for e in engine.transaction(bundle)]
            assert all(s.startswith("2") for s in statuses), statuses
        first = engine.counts(types)
        sent = {t: sum(e["resource"]["resourceType"] == t for b in whole for e in b["entry"]) for t in types}
        assert first == sent, "every resource of the export exists once on the server"
        for bundle in bundles:
            engine.transaction(bundle)
        assert engine.counts(types) == first, "a re-send creates nothing"
        patients = engine.search("Patient")
        for obs in engine.search("Observation"):
            ref = obs["subject"]["reference"]
            assert ref.startswith("Patient/") and ref.split("/")[1] in {p["id"] for p in patients}


def test_a_correction_after_a_first_send_reaches_the_server(exported, tmp_path):
    """A clerk corrects a value after the first export: the re-send replaces it on the server."""
    kit, whole = exported
    obs = next(e["resource"] for b in whole for e in b["entry"]
               if e["resource"]["resourceType"] == "Observation" and "valueQuantity" in e["resource"])
    item = next(i["value"] for i in obs["identifier"] if i["system"].endswith(":item"))
    form_id, _, field = item.partition(":")
    field = field.replace(":", ".")
    corrected = round(obs["valueQuantity"]["value"] + 1.3, 1)
    with fhir_engine() as engine:
        for part in (p for b in whole for p in split_transaction(b, 8)):
            engine.transaction(part)
        before = engine.counts(["Observation", "Patient", "Provenance"])
        reading_ids = [r for (r,) in kit.db.conn.execute(
            "SELECT rd.reading_id FROM readings rd JOIN sheets s ON s.sheet_id = rd.sheet_id"
            " WHERE s.form_id = ? AND rd.field = ?", [form_id, field])]
        assert reading_ids
        for rid in reading_ids:
            record_review(kit.db.conn, rid, "correct", corrected, "clerk-test")
        export_fhir(kit, tmp_path / "again")
        for path in sorted((tmp_path / "again").glob("bundle-*.json")):
            for part in split_transaction(json.loads(path.read_text()), 8):
                engine.transaction(part)
        assert engine.counts(["Observation", "Patient", "Provenance"]) == before
        system = next(i["system"] for i in obs["identifier"] if i["system"].endswith(":item"))
        found = engine.search("Observation", f"identifier={quote(f'{system}|{item}', safe='')}")
        assert [o["valueQuantity"]["value"] for o in found] == [corrected]
