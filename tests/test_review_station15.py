"""Issue 15, review station: identity check before a link, undo of one's own decision, where am I,
conflicts per sheet, the worklist and less noise (Flask test client on a really scanned kit)."""
from __future__ import annotations

import re

import pytest

from fallbackkit.review import create_app
from fallbackkit.store.decisions import record_review

from review_helpers import add_people, audit_rows, build_scenario, scan_blank_registration
from kit_helpers import census_kit
from test_review_app import csrf_of, login


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("station15")
    kit = census_kit(tmp)
    sc = build_scenario(kit, tmp)
    sc.blank = scan_blank_registration(kit, tmp)
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
