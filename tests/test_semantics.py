"""What a form means comes from its template: the worklist items, consistency flags and FHIR
resources of the demo-like kit and the export scenarios are exactly the golden file's
(tests/semantics_snapshot.py says how it was made)."""
from __future__ import annotations

import json

import pytest

from semantics_snapshot import GOLDEN, SCENARIOS, pinned_randomness


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_worklist_flags_and_fhir_are_the_golden_ones(scenario, golden, tmp_path):
    with pinned_randomness():
        got = json.loads(json.dumps(SCENARIOS[scenario](tmp_path), sort_keys=True))
    want = golden[scenario]
    assert [i["item_id"] for i in got["worklist"]] == [i["item_id"] for i in want["worklist"]]
    assert got["worklist"] == want["worklist"]
    assert got["flags"] == want["flags"]
    assert got["pending"] == want["pending"]
    assert got["skipped_with_skip_entered"] == want["skipped_with_skip_entered"]
    assert sorted(got["fhir"]) == sorted(want["fhir"])
    for name in want["fhir"]:
        assert got["fhir"][name] == want["fhir"][name], name
