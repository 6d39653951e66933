"""Issue 15, review station: identity check before a link, undo of one's own decision, where am I,
conflicts per sheet, the worklist and less noise (Flask test client on a really scanned kit)."""
from __future__ import annotations

import re

import pytest

from fallbackkit.review import create_app
from fallbackkit.store.decisions import record_review

from review_helpers import add_people, audit_rows, build_scenario, rescan_lab_sheet, scan_blank_registration
from kit_helpers import census_kit
from test_review_app import csrf_of, login


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("station15")
    kit = census_kit(tmp)
    sc = build_scenario(kit, tmp)
    sc.blank = scan_blank_registration(kit, tmp)
    sc.third = rescan_lab_sheet(kit, tmp, sc)
    add_people(kit)
    yield sc
    kit.close()


@pytest.fixture(scope="module")
def app(scenario):
    return create_app(scenario.kit.path)


def test_identity_link_shows_the_census_patient_and_a_mismatch_needs_a_second_step(app, scenario):
    kit, blank = scenario.kit, scenario.blank
    dt = blank["downtime_mrn"]
    client = app.test_client()
    login(client, "clara")
    # nothing transcribed yet: the screen says why there is no suggestion (the demo showed none, silently)
    html = client.get("/identities").get_data(as_text=True)
    assert re.search(rf'data-mrn="{dt}".*?data-why="waiting"', html, re.S)
    # the clerk types the name from the paper, and a name in the birth-date box ("Dupont")
    patient = kit.db.conn.execute("SELECT mrn, last_name, first_name, birth_date, sex, ward FROM patients"
                                  " WHERE sex = 'F' ORDER BY mrn LIMIT 1").fetchone()
    record_review(kit.db, blank["readings"]["last_name"], "transcribe", patient[1], "clara")
    record_review(kit.db, blank["readings"]["first_name"], "transcribe", patient[2], "clara")
    record_review(kit.db, blank["readings"]["birth_date"], "transcribe", "Dupont", "clara")
    html = client.get("/identities").get_data(as_text=True)
    assert f'name="real_mrn" value="{patient[0]}"' in html          # suggested on the name
    # the check screen: paper beside census, the birth date and the sex (paper: male) highlighted
    page = client.get(f"/identities/check?downtime_mrn={dt}&real_mrn={patient[0]}").get_data(as_text=True)
    assert patient[3] in page and "Dupont" in page and patient[5] in page
    assert re.search(r'<tr data-key="birth_date" class="mismatch">.*?not a date', page, re.S)
    assert 'data-key="sex" class="mismatch"' in page and 'data-key="name" class=""' in page
    # a link without the confirmation is refused and nothing is stored
    token = csrf_of(client)
    resp = client.post("/identities/link", data={"downtime_mrn": dt, "real_mrn": patient[0], "csrf_token": token})
    assert resp.status_code == 409 and "tick the box" in resp.get_data(as_text=True)
    assert kit.db.conn.execute("SELECT COUNT(*) FROM identity_links WHERE downtime_mrn = ?", [dt]).fetchone()[0] == 0
    # the second step: confirmed, linked, and the audit row names what was confirmed
    client.post("/identities/link", data={"downtime_mrn": dt, "real_mrn": patient[0], "confirm": "1",
                                          "csrf_token": token})
    assert kit.db.conn.execute("SELECT real_mrn, actor FROM identity_links WHERE downtime_mrn = ?",
                               [dt]).fetchall() == [(patient[0], "clara")]
    after = audit_rows(kit, "identity.link")[-1]["after"]
    assert after["mismatches_confirmed"] == ["birth_date", "sex"]


def test_a_birth_date_alone_is_enough_for_a_suggestion(scenario):
    from fallbackkit.reconcile.identity import _score
    assert _score([], "1994-04-02", {"last_name": "X", "first_name": "Y", "birth_date": "1994-04-02"})[0] >= 0.5
    assert _score([], "1994-04-03", {"last_name": "X", "first_name": "Y", "birth_date": "1994-04-02"})[0] < 0.5


def _decide(client, token, rid, decision, value=None, seen=None):
    return client.post(f"/api/readings/{rid}/decision", headers={"X-CSRF-Token": token},
                       json={"decision": decision, "value": value, "seen_review_id": seen})


def test_a_clerk_undoes_their_own_last_decision_and_the_item_says_why_it_is_back(app, scenario):
    from fallbackkit.store.decisions import current_review
    import time
    kit = scenario.kit
    time.sleep(1.1)  # the decisions of the tests before were another session's
    clerk = app.test_client()
    login(clerk, "clara")
    token = csrf_of(clerk)
    before = clerk.get("/api/progress").get_json()
    reading = clerk.get("/api/next").get_json()["reading"]
    rid = reading["reading_id"]
    value = reading["options"][0] if reading["options"] else "typed"
    decision = "correct" if reading["options"] else "transcribe"
    review_id = _decide(clerk, token, rid, decision, value).get_json()["review_id"]
    after = clerk.get("/api/progress").get_json()
    assert after["decided"] == before["decided"] + 1 and after["waiting"] == before["waiting"] - 1
    assert after["total"] == before["total"]                         # "n of N": N stays, n moves on
    # the Decisions screen offers this clerk an undo of exactly that decision
    html = clerk.get("/decisions").get_data(as_text=True)
    assert f'action="/reviews/{review_id}/undo"' in html and html.count('action="/reviews/') == 1
    resp = clerk.post("/api/undo-last", headers={"X-CSRF-Token": token}, json={})
    assert resp.status_code == 200 and resp.get_json()["reading_id"] == rid
    assert current_review(kit.db, rid) is None
    row = audit_rows(kit, "review.undo")[-1]
    assert row["actor"] == "clara" and row["object"] == f"review:{review_id}"
    back = clerk.get(f"/api/readings/{rid}").get_json()["reading"]["returned"]
    assert back["by"] == "clara" and back["decided_by"] == "clara" and back["value"] == value
    # nothing of this session left to undo: a clear refusal, not another person's decision undone
    assert clerk.post("/api/undo-last", headers={"X-CSRF-Token": token}, json={}).status_code == 409


def test_dashboard_and_end_screen_count_everything_still_open(app, scenario):
    clerk = app.test_client()
    login(clerk, "clara")
    end = clerk.get("/api/progress?end=1").get_json()["open"]
    assert set(end) == {"conflicts", "quarantine", "identities"}
    assert end["conflicts"] >= 1 and end["quarantine"] >= 1
    html = clerk.get("/").get_data(as_text=True)
    assert 'href="/conflicts"' in html and 'href="/quarantine"' in html and 'id="dash-worklist"' in html


def test_take_one_scan_for_the_whole_sheet(app, scenario):
    from fallbackkit.reconcile import form_readings, reconcile
    kit, sheet = scenario.kit, scenario.lab_sheet

    def open_fields():
        return sorted(c["field"] for f in reconcile(kit)["forms"] for c in f["conflicts"]
                      if c["sheet_id"] == sheet and not c["resolved"])
    before = open_fields()
    assert {"fasting", "priority"} <= set(before)                    # several fields of one sheet disagree
    client = app.test_client()
    login(client, "clara")
    html = client.get("/conflicts").get_data(as_text=True)
    assert f'data-sheet="{sheet}"' in html and f'data-capture="{scenario.third}"' in html
    assert "<small>priority" not in html                             # labels, not internal keys
    token = csrf_of(client)
    # the first scan: its faint 'fasting' mark is unsure, so that field stays open (never "blank")
    first = kit.db.conn.execute("SELECT MIN(capture_id) FROM captures WHERE sheet_id = ?", [sheet]).fetchone()[0]
    resp = client.post("/api/conflicts/sheet", headers={"X-CSRF-Token": token},
                       json={"sheet_id": sheet, "capture_id": first})
    body = resp.get_json()
    assert resp.status_code == 200 and "fasting" in body["left"] and "priority" in body["resolved"]
    assert set(body["resolved"]) | set(body["left"]) == set(before) and open_fields() == sorted(body["left"])
    assert form_readings(kit, sheet)["priority"]["value"] == "routine"
    # the third scan settles what is left
    resp = client.post("/api/conflicts/sheet", headers={"X-CSRF-Token": token},
                       json={"sheet_id": sheet, "capture_id": scenario.third})
    body = resp.get_json()
    assert resp.status_code == 200 and "fasting" in body["resolved"]
    assert open_fields() == sorted(body["left"])
    got = form_readings(kit, sheet)
    assert got["fasting"]["value"] is True and got["priority"]["value"] == "routine"
    rows = [r for r in audit_rows(kit, "review.") if r["after"].get("sheet_id") == sheet and r["actor"] == "clara"]
    assert {r["after"]["field"] for r in rows} >= set(body["resolved"])   # each field audited
    # a capture of another sheet is refused, nothing written
    assert client.post("/api/conflicts/sheet", headers={"X-CSRF-Token": token},
                       json={"sheet_id": sheet, "capture_id": 1_000_000}).status_code == 400


def test_worklist_names_the_patient_keeps_form_order_folds_and_pages(app, scenario):
    kit, sheet = scenario.kit, scenario.lab_sheet
    client = app.test_client()
    login(client, "clara")
    html = client.get("/worklist?status=all").get_data(as_text=True)
    mrn, last, first = kit.db.conn.execute(
        "SELECT f.patient_mrn, p.last_name, p.first_name FROM forms f JOIN patients p ON p.mrn = f.patient_mrn"
        " WHERE f.form_id = (SELECT form_id FROM sheets WHERE sheet_id = ?)", [sheet]).fetchone()
    assert re.search(rf'<details class="card patient" data-mrn="{mrn}"[^>]*>\s*<summary><b class="pname">{last}, {first}</b> · {mrn}', html)
    # the lab order's values in the order printed on the form (alphabetical would put fasting first)
    item = html[html.index(f'data-item="{sheet}:order"'):]
    item = item[:item.index("</dl>")]
    labels = re.findall(r"<dt>([^<]+)</dt>", item)
    assert labels.index("Priority") < labels.index("Fasting") < labels.index("Clinician signature")
    # one patient open, the others folded; pages of N patients
    assert html.count('<details class="card patient"') > 1 and html.count('<details class="card patient" data-mrn') - \
        len(re.findall(r'<details class="card patient"[^>]*\bopen\b', html)) >= 1
    app.config["WORKLIST_PATIENTS_PER_PAGE"] = 1
    try:
        page1 = client.get("/worklist?status=all").get_data(as_text=True)
        page2 = client.get("/worklist?status=all&page=2").get_data(as_text=True)
    finally:
        app.config["WORKLIST_PATIENTS_PER_PAGE"] = 10
    assert page1.count('<details class="card patient"') == 1 and 'class="pager"' in page1
    assert 'href="/worklist?status=all&page=2"' in page1 and re.search(r"<b>2</b>", page2)
    first_mrns = set(re.findall(r'<details class="card patient" data-mrn="([^"]+)"', page1))
    assert not first_mrns & set(re.findall(r'<details class="card patient" data-mrn="([^"]+)"', page2))


def test_clerks_see_labels_and_names_not_internal_keys(app, scenario):
    kit, sheet = scenario.kit, scenario.lab_sheet
    client = app.test_client()
    login(client, "clara")
    rid = kit.db.conn.execute("SELECT reading_id FROM readings WHERE sheet_id = ? AND field = 'diagnosis'"
                              " ORDER BY capture_id DESC LIMIT 1", [sheet]).fetchone()[0]
    reading = client.get(f"/api/readings/{rid}").get_json()["reading"]
    mrn = reading["capture"]["patient_mrn"]
    name = kit.db.conn.execute("SELECT last_name || ', ' || first_name FROM patients WHERE mrn = ?", [mrn]).fetchone()[0]
    assert reading["patient_name"] == name and reading["field_label"] == "Clinical information / diagnosis"
    queue = client.get("/queue").get_data(as_text=True)
    assert "<small>diagnosis</small>" not in queue and "<small>fasting</small>" not in queue
    cap = kit.db.conn.execute("SELECT MAX(capture_id) FROM captures WHERE sheet_id = ?", [sheet]).fetchone()[0]
    page = client.get(f"/page/{cap}").get_data(as_text=True)
    assert "<title>Clinical information / diagnosis:" in page and "<title>diagnosis:" not in page
    decisions = client.get("/decisions").get_data(as_text=True)
    assert ">fasting</a>" not in decisions and ">priority</a>" not in decisions


def test_typed_values_follow_the_handwriting_rules_and_the_templates_ranges(app, scenario):
    from fallbackkit.errors import BadInput
    from fallbackkit.review.typed import check_typed
    kit = scenario.kit

    def detail(field, ftype, fmt=None, template="vitals"):
        return {"type": ftype, "field": field, "capture": {"template": template, "version": 1},
                "extra": {"format": fmt} if fmt else {}}
    # ranges from the template (vitals.yaml): 96 is neither a temperature nor a respiratory rate
    assert "outside the plausible range" in check_typed(kit.path, detail("c1.temperature", "number"), "96")
    assert check_typed(kit.path, detail("c1.temperature", "number"), "37.2") is None
    assert check_typed(kit.path, detail("c4.resp_rate", "number"), "96")
    assert check_typed(kit.path, detail("c4.resp_rate", "number"), "18") is None
    with pytest.raises(BadInput, match="not a date"):
        check_typed(kit.path, detail("birth_date", "datetime", "date", "registration"), "Dupont")
    with pytest.raises(BadInput, match="not a time"):
        check_typed(kit.path, detail("received_at", "datetime", "time", "lab-request"), "Dupont")
    assert check_typed(kit.path, detail("birth_date", "datetime", "date", "registration"), "03/02/2199")
    # through the station: refused, then implausible until confirmed, and the reason is recorded
    from fallbackkit.store.decisions import current_review
    client = app.test_client()
    login(client, "clara")
    token = csrf_of(client)
    rid = scenario.blank["readings"]["birth_date"]
    seen = (current_review(kit.db, rid) or {}).get("review_id")
    assert _decide(client, token, rid, "transcribe", "Dupont", seen).status_code == 400
    resp = _decide(client, token, rid, "transcribe", "03/02/2199", seen)
    assert resp.status_code == 422 and resp.get_json()["implausible"]
    assert (current_review(kit.db, rid) or {}).get("review_id") == seen
    resp = client.post(f"/api/readings/{rid}/decision", headers={"X-CSRF-Token": token},
                       json={"decision": "transcribe", "value": "03/02/2199", "seen_review_id": seen,
                             "confirm_implausible": True})
    assert resp.status_code == 200
    review = current_review(kit.db, rid)
    assert review["value"] == "03/02/2199" and review["note"].startswith("implausible, confirmed:")
    assert audit_rows(kit, "review.transcribe")[-1]["after"]["note"] == review["note"]


def test_identities_suggest_says_why_a_downtime_mrn_has_no_suggestion(scenario, tmp_path):
    """The demo printed '(none)' for its 5 downtime MRNs: suggestions come from transcribed names and
    birth dates, and before review there were none (and blank lab requests never came back)."""
    from click.testing import CliRunner
    from fallbackkit.cli import cli
    from fallbackkit.generate import print_blank
    print_blank(scenario.kit, "lab-request", 1, tmp_path / "blank-lab.pdf", actor="tester")
    dt = scenario.kit.db.conn.execute("SELECT value FROM downtime_ids WHERE kind = 'mrn' ORDER BY rowid DESC"
                                      " LIMIT 1").fetchone()[0]
    result = CliRunner().invoke(cli, ["--kit", str(scenario.kit.path), "identities", "suggest"])
    assert result.exit_code == 0, result.output
    assert f"{dt}: no suggestion — no form with this number was scanned back yet" in result.output
