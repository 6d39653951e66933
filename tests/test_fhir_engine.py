"""The FHIR export against a real FHIR engine (medplum's router, in memory, on 127.0.0.1) and the
official R4 JSON schema: what a receiving server does with the bundles, not only their shape."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from export_helpers import scan_scenario
from fallbackkit.export import export_fhir
from fallbackkit.export.bundles import split_transaction
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


def test_first_send_creates_and_a_second_send_changes_nothing(exported):
    """medplum refuses a transaction of more than 8 conditional entries: parts of 8 are accepted."""
    _, whole = exported
    bundles = [part for b in whole for part in split_transaction(b, 8)]
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
