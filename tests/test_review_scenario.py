"""A clerk drains the whole review queue of a simulated ward through the station's HTTP API.

Real path: ward ICU printed -> `simulate` fills and scans the sheets (truth.json says what was
meant) -> `scan` reads them -> the clerk answers every item the station offers (marks from the
truth, handwriting typed) -> reconciliation has nothing left to review and the audit log names the
clerk for every decision.
"""
from __future__ import annotations

import json

import pytest

from fallbackkit.review import create_app
from fallbackkit.store.audit import verify_audit
from fallbackkit.store.decisions import effective_reading

from review_helpers import add_people
from test_review_app import csrf_of, login
from kit_helpers import census_kit


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from fallbackkit.generate import print_ward
    from fallbackkit.scan.pipeline import scan_paths
    from fallbackkit.scan.simulate import simulate
    tmp = tmp_path_factory.mktemp("simulated")
    kit = census_kit(tmp)
    print_ward(kit, "ICU", tmp / "icu.pdf", actor="tester")
    simulate(kit, tmp / "icu.pdf", tmp / "sim", seed=3, tier="clean")
    scan_paths(kit, [tmp / "sim"], workers=1, progress=False)
    truth = {}
    for f in json.loads((tmp / "sim" / "truth.json").read_text())["files"]:
        for page in f["pages"]:
            truth[page["sheet_id"]] = page["fields"]
    add_people(kit)
    yield kit, truth
    kit.close()


def _answer(item: dict, truth: dict) -> tuple[str, object]:
    meant = truth[item["sheet_id"]][item["field"]]
    if item["options"] is not None:
        return "correct", meant["value"]
    if item["type"] == "datetime":  # typed values are checked like handwriting: the form's own kind of date/time
        return "transcribe", {"date": "28/11/2026", "time": "10:15"}.get((item.get("extra") or {}).get("format"),
                                                                          "28/11/2026 10:15")
    return "transcribe", {"number": "42", "initials": "AB"}.get(item["type"], "written")


def test_a_clerk_drains_the_queue_of_a_simulated_ward(simulated):
    from fallbackkit.reconcile import reconcile, worklist
    kit, truth = simulated
    before = reconcile(kit)["totals"]["readings_to_review"]
    assert before > 20  # the simulation leaves real work for a person
    app = create_app(kit.path)
    client = app.test_client()
    login(client, "clara")
    token = csrf_of(client)
    audit_before = kit.db.conn.execute("SELECT MAX(id) FROM audit").fetchone()[0]
    seen: list[int] = []
    decided: dict[int, object] = {}
    while True:
        data = client.get("/api/next").get_json()
        if data["done"]:
            break
        item = data["reading"]
        assert item["reading_id"] not in seen, "an item was offered again after it was decided"
        seen.append(item["reading_id"])
        assert item["reason"] and item["status"] == "review"
        decision, value = _answer(item, truth)
        resp = client.post(f"/api/readings/{item['reading_id']}/decision", headers={"X-CSRF-Token": token},
                           json={"decision": decision, "value": value, "seen_review_id": None})
        if resp.status_code == 422:  # 42 is not a plausible pain score or SpO2: the clerk confirms it
            assert resp.get_json()["implausible"]
            resp = client.post(f"/api/readings/{item['reading_id']}/decision", headers={"X-CSRF-Token": token},
                               json={"decision": decision, "value": value, "seen_review_id": None,
                                     "confirm_implausible": True})
        assert resp.status_code == 200, resp.get_json()
        decided[item["reading_id"]] = value
    assert len(seen) == before  # the station offered exactly what reconciliation counts as waiting
    assert reconcile(kit)["totals"]["readings_to_review"] == 0
    for rid, value in decided.items():
        eff = effective_reading(kit.db, rid)
        assert eff["resolved"] and eff["reviewer"] == "clara" and eff["value"] == value
    rows = kit.db.conn.execute("SELECT actor, action FROM audit WHERE id > ? AND action LIKE 'review.%'",
                               [audit_before]).fetchall()
    assert len(rows) == len(decided) and {r[0] for r in rows} == {"clara"}
    assert verify_audit(kit.db)[1] is None
    waiting = [i for i in worklist(kit) if not i.resolved]
    assert not [w for w in waiting if any("waits for" in why for why in w.unresolved)], waiting
