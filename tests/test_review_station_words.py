"""Issue 15, re-checked on the demo kit in Chromium (en and fr): words of the station that still
reached a French clerk in English."""
from __future__ import annotations

import re
import time

from test_review_app import app, csrf_of, login, scenario  # noqa: F401  (fixtures and helpers)


def test_an_item_back_after_your_own_undo_says_why_in_your_language(app, scenario):  # noqa: F811
    """The undo of one's own decision is stored with an English note for the audit ("undone by the
    person who decided it"); the item that comes back says it in the clerk's language."""
    time.sleep(1.1)  # the decisions of the tests before were another session's
    clerk = app.test_client()
    login(clerk, "sam")  # sam reads French
    token = csrf_of(clerk)
    reading = clerk.get("/api/next").get_json()["reading"]
    rid = reading["reading_id"]
    value = reading["options"][0] if reading["options"] else "tapé"
    decision = "correct" if reading["options"] else "transcribe"
    resp = clerk.post(f"/api/readings/{rid}/decision", headers={"X-CSRF-Token": token},
                      json={"decision": decision, "value": value})
    assert resp.status_code == 200, resp.get_json()
    assert clerk.post("/api/undo-last", headers={"X-CSRF-Token": token}, json={}).status_code == 200
    back = clerk.get(f"/api/readings/{rid}").get_json()["reading"]["returned"]
    assert back["note"] == "annulée par la personne qui l'avait prise", back
    note = scenario.kit.db.conn.execute("SELECT note FROM reviews WHERE reading_id = ? AND decision = 'undo'"
                                        " ORDER BY review_id DESC LIMIT 1", [rid]).fetchone()
    assert note == ("undone by the person who decided it",)  # the store keeps the audit's words


def test_the_review_screen_puts_french_colons_in_french(app, scenario):  # noqa: F811
    """French sets a (non-breaking) space before a colon: "Pourquoi un doute : à transcrire"."""
    from review_helpers import station_page
    with station_page(app, "sam") as (page, problems):
        page.goto("/review")
        page.wait_for_selector("section[data-reading]")
        text = page.locator("#item").inner_text()
        assert "Pourquoi un doute\u00a0: " in text and "doute: " not in text, text
        assert re.search(r"\(confiance \d+\u00a0%\)", text) or "confiance" not in text, text
        assert problems == []
    from fallbackkit.review.i18n import STRINGS
    assert STRINGS["en"]["js"]["colon"] == STRINGS["nl"]["js"]["colon"] == ": "


def test_the_identity_screens_say_the_sex_in_the_clerks_language(app, scenario, tmp_path):  # noqa: F811
    """The paper's "male" and the census's "F" were shown as stored to a French clerk ("Sexe female")."""
    from fallbackkit.review.i18n import sex_text
    from review_helpers import scan_blank_registration
    kit = scenario.kit
    blank = scan_blank_registration(kit, tmp_path, sex="male")
    woman = kit.db.conn.execute("SELECT mrn FROM patients WHERE sex = 'F' ORDER BY mrn LIMIT 1").fetchone()[0]
    client = app.test_client()
    login(client, "sam")
    page = client.get(f"/identities/check?downtime_mrn={blank['downtime_mrn']}&real_mrn={woman}").get_data(as_text=True)
    row = page[page.index('data-key="sex"'):].split("</tr>")[0]
    assert "<td>masculin</td>" in row and "<td>féminin</td>" in row and "male" not in row.replace("masculin", ""), row
    assert [sex_text("nl", v) for v in ("female", "M", "U", "X", "?")] == ["vrouwelijk", "mannelijk", "onbekend", "X", "?"]


def test_medication_slots_and_item_values_are_named_in_words_not_internal_keys(scenario):  # noqa: F811
    """Issue 15.13 on the demo kit: the queue showed "Heure · n1.s3" and the worklist "Slot m1.s1",
    "Census line", "Performer unresolved" to a French clerk."""
    from fallbackkit.review import labels as lb
    fr = lb.labels(scenario.kit.path, "mar", None, "fr")
    assert lb.field_label(fr, "m1.s3.time") == f"{fr['slots']['time'][0]} · médicament 1, prise 3"
    assert lb.field_label(fr, "n1.s2.initials").endswith(" · nouvelle prescription 1, prise 2")
    assert lb.field_label(lb.labels(scenario.kit.path, "mar", None, "nl"), "p2.s1.time").endswith(
        " · indien nodig 2, toediening 1")
    for key, said in (("census_line", "Ligne du recensement"), ("performer_unresolved", "Donné par : incertain"),
                      ("route", "Voie"), ("frequency", "Fréquence"), ("slot", "Place sur la feuille")):
        assert lb.value_label(fr, key) == said
    assert lb.place_words("c3", "fr") is None and lb.place_words("m1.s1", "en") == "medication 1, dose 1"


def test_the_decisions_screen_names_each_decision_in_the_clerks_language(app, scenario):  # noqa: F811
    """Runs after the undo test above: sam's decision and its undo are on the screen."""
    client = app.test_client()
    login(client, "sam")
    html = client.get("/decisions").get_data(as_text=True)
    assert 'data-decision="undo">annulation de #' in html
    assert ">undo" not in html and ">transcribe<" not in html and ">correct<" not in html


def test_an_empty_conflicts_screen_says_nothing_waits_once(tmp_path):
    """The demo kit's Conflicts screen said "Rien n'attend ici." twice (the page, then the script)."""
    from fallbackkit.review import create_app
    from kit_helpers import census_kit
    from review_helpers import add_people, station_page
    kit = census_kit(tmp_path)
    add_people(kit)
    try:
        with station_page(create_app(kit.path), None) as (page, problems):
            page.goto("/login")
            page.fill("input[name=name]", "sam")
            page.fill("input[name=password]", "correct horse battery")
            page.press("input[name=password]", "Enter")
            page.wait_for_url("**/")
            page.goto("/conflicts")
            page.wait_for_timeout(300)
            assert page.locator("p.empty").all_inner_texts() == ["Rien n'attend ici."]
            assert problems == []
    finally:
        kit.close()


def test_a_typed_value_refused_or_implausible_is_said_in_the_clerks_language(app, scenario, tmp_path):  # noqa: F811
    """Walking the demo kit in French: "Peu plausible : 1 is outside the plausible range 20.0-160.0"."""
    from fallbackkit.review.i18n import value_problem_text
    from fallbackkit.templates import values
    from review_helpers import scan_blank_registration
    blank = scan_blank_registration(scenario.kit, tmp_path, sex=None)
    rid = blank["readings"]["birth_date"]
    client = app.test_client()
    login(client, "sam")
    token = csrf_of(client)

    def typed(text):
        return client.post(f"/api/readings/{rid}/decision", headers={"X-CSRF-Token": token},
                           json={"decision": "transcribe", "value": text})
    refused = typed("Dupont")
    assert refused.status_code == 400
    assert refused.get_json()["error"] == ("« Dupont » n'est pas une date (jour/mois/année) — tapez-le comme sur le"
                                           " papier, ou choisissez Illisible")
    late = typed("03/02/2199")
    assert late.status_code == 422 and late.get_json()["implausible"] is True
    said = late.get_json()["error"]
    assert said.startswith("Peu plausible : 03/02/2199 est hors de la période") and "outside" not in said, said
    assert "outside" in late.get_json()["reason"]  # the English reason is what the audit note keeps
    try:
        values.check_range(96, 30.0, 45.0, "96")
    except values.ValueProblem as problem:
        assert value_problem_text("nl", problem) == "96 valt buiten het plausibele bereik 30-45"


def test_a_mar_slot_names_the_drug_printed_on_its_line_not_the_line_number(scenario):  # noqa: F811
    """The review screen said "· médicament : 1" (the census line) above a MAR slot."""
    import json
    from fallbackkit.review.queue import printed_medication
    conn = scenario.kit.db.conn
    form_id, context = conn.execute("SELECT form_id, context FROM forms WHERE template = 'mar' AND context LIKE"
                                    " '%medication%' LIMIT 1").fetchone()
    med = json.loads(context)["medications"][0]
    assert printed_medication(conn, form_id, med["line"]) == f"{med['medication']} {med['dose']}".strip()
    assert printed_medication(conn, form_id, 99) == 99 and printed_medication(conn, None, 1) == 1


def test_what_a_worklist_item_waits_for_is_said_with_labels_in_the_clerks_language(app, scenario):  # noqa: F811
    """The worklist said "attending waits for transcription (to transcribe)" (the field's name, English)."""
    import re
    from html import unescape
    client = app.test_client()
    login(client, "sam")
    html = unescape(client.get("/worklist?status=all").get_data(as_text=True))
    waits = re.findall(r'<ul class="unresolved">(.*?)</ul>', html, re.S)
    assert waits, "the scenario has items waiting"
    text = " ".join(waits)
    assert " waits for " not in text and "attend d'être transcrit" in text and "(à transcrire)" in text, text[:500]
    assert "Vides\u00a0: " in html and "Vides: " not in html  # French colons
    # the exports keep reconcile's English words
    from fallbackkit.reconcile.worklist import worklist
    assert any(" waits for " in u for it in worklist(scenario.kit) for u in it.unresolved)
