"""Reason codes: every reason the engine writes is one code's sentence (plus parameters), read back
exactly and shown to clerks in their language; reconcile asks for codes, never for words."""
from __future__ import annotations

import pytest

from fallbackkit.review.i18n import REASONS, reason_text
from fallbackkit.scan import reasons
from fallbackkit.scan.read import decide


def test_every_code_round_trips_and_is_translated():
    params = {"n": "3", "mm": "1.7", "levels": "42", "percent": "40", "covered": "12", "fields": "20",
              "type": "sketch"}
    for code, sentence in reasons.ENGLISH.items():
        p = {k: v for k, v in params.items() if "{" + k + "}" in sentence}
        for option in ([None, "given"] if code in reasons.WITH_OPTION else [None]):
            text = reasons.english(code, **p, **({"option": option} if option else {}))
            assert reasons.parse(text) == [{"code": code, "params": {**p, **({"option": option} if option else {})}}]
        for lang in ("en", "fr", "nl"):
            assert code in REASONS[lang], (lang, code)
    for code in reasons.QUARANTINE:
        assert all(code in REASONS[lang] for lang in ("en", "fr", "nl"))


def test_engine_reasons_are_codes_translated_at_display():
    two = {"boxes": [{"value": v, "ink": 0.3, "faint": 0.0, "spill_max": 0.0} for v in ("a", "b")]}
    _, _, status, reason = decide(two, "choice", ["a", "b"])
    assert (status, reason) == ("review", "two options marked")  # stored as before: old rows read the same
    assert reasons.codes(reason) == {"two_marked"}
    assert reason_text("fr", reason) == "deux options cochées"
    faint = {"boxes": [{"value": "a", "ink": 0.0, "faint": 0.2, "spill_max": 0.0}], "printed_ref": 0.4,
             "page_review": reasons.english("poor_fit", mm="1.8")}
    faint["boxes"][0]["printed"] = 0.05
    _, _, status, reason = decide(faint, "choice", ["a"])
    assert [r["code"] for r in reasons.parse(reason)] == ["covered", "faint_mark", "poor_fit"]
    assert reason_text("nl", reason) == ("bedekt of niet zichtbaar; vage markering (a); "
                                         "pagina slecht uitgelijnd (1.8 mm)")
    assert reason_text("fr", "no_marks") == "les carrés des coins sont introuvables"
    # a reason no code knows (typed by hand, an older wording) is shown as stored
    assert reason_text("fr", "written by hand") == "written by hand"


@pytest.mark.parametrize("text,multi", [("two options marked", True), ("3 options marked", True),
                                        ("faint mark (several)", False), ("covered or not visible", False),
                                        ("multiple marks, says a clerk", False)])
def test_reconcile_asks_for_the_code_not_the_words(text, multi):
    from fallbackkit.reconcile.state import Val
    v = Val.of(reading_id=1, type="choice", machine=None, value=None, resolved=False, ink=None, status="review",
               reason=text, source="machine")
    assert v.multiple_marks is multi


from test_review_app import app, csrf_of, login, scenario  # noqa: E402,F401  (fixtures and helpers)


def test_the_station_shows_reasons_in_the_clerks_language(app, scenario):  # noqa: F811
    client = app.test_client()
    login(client, "sam")  # sam reads French
    queue = client.get("/queue").get_data(as_text=True)
    assert "à transcrire" in queue and ">to transcribe<" not in queue
    assert 'value="to_transcribe"' in queue  # the filter selects by the stored reason's code
    reading = client.get("/api/next").get_json()["reading"]
    assert reading["reason_text"] == reason_text("fr", reading["reason"]) != reading["reason"]
    client.post("/lang", data={"lang": "nl", "csrf_token": csrf_of(client)})
    assert "over te typen" in client.get("/queue").get_data(as_text=True)


def test_reason_codes_are_stored_as_data(tmp_path):
    """Issue 12.7: every reading and quarantined page keeps its reason's codes and parameters as data
    (readings.reason_codes, quarantine.reason_codes, JSON); rows of a store made before the column
    are filled from their text by the migration (m0055)."""
    import json
    import sqlite3

    import cv2
    import numpy as np
    from PIL import Image

    from fallbackkit.generate import print_blank
    from fallbackkit.scan.pipeline import scan_paths
    from fallbackkit.scan.simulate import render_pdf
    from fallbackkit.store import open_kit
    from fallbackkit.store.migrations import m0055_reason_codes
    from kit_helpers import census_kit

    kit = census_kit(tmp_path / "k")
    printed = print_blank(kit, "lab-request", 1, tmp_path / "lab.pdf", actor="tester")
    page = render_pdf(printed.out_path, 200)[0]
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(page).save(folder / "lab.png")
    stray = np.full((1169, 827), 250, np.uint8)
    cv2.putText(stray, "a note, no sheet code", (60, 500), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 20, 4)
    Image.fromarray(stray).save(folder / "stray.png")  # writing and no code: quarantined
    scan_paths(kit, [folder], workers=0, progress=False, actor="tester")
    conn = kit.db.conn
    rows = conn.execute("SELECT reason, reason_codes FROM readings").fetchall()
    assert rows and all((r is None) == (c is None) for r, c in rows)
    assert all(json.loads(c) == reasons.parse(r) for r, c in rows if r)
    quarantined = conn.execute("SELECT reason, reason_codes FROM quarantine").fetchall()
    assert quarantined == [("no_code", json.dumps([{"code": "no_code", "params": {}}]))]
    # a store from before the column: the migration fills it from the text
    with kit.db.conn:
        conn.execute("UPDATE readings SET reason = ? WHERE reading_id = (SELECT MIN(reading_id) FROM readings)",
                     [reasons.english("faint_mark", option="cbc")])
    kit.close()
    raw = sqlite3.connect(str(kit.path / "store.sqlite"))
    raw.execute("ALTER TABLE readings DROP COLUMN reason_codes")
    raw.execute("ALTER TABLE quarantine DROP COLUMN reason_codes")
    raw.execute("DELETE FROM _migrations WHERE name = ?", [m0055_reason_codes.__name__.rsplit(".", 1)[1]])
    raw.commit()
    raw.close()
    again = open_kit(kit.path)
    try:
        got = dict(again.db.conn.execute("SELECT reason, reason_codes FROM readings WHERE reason IS NOT NULL"))
        assert json.loads(got[reasons.english("faint_mark", option="cbc")]) == [
            {"code": "faint_mark", "params": {"option": "cbc"}}]
        assert again.db.conn.execute("SELECT reason_codes FROM quarantine").fetchone()[0] == json.dumps(
            [{"code": "no_code", "params": {}}])
    finally:
        again.close()


def test_the_station_filters_by_reason_code_and_says_it_in_the_clerks_language(tmp_path):
    """Issue 12.7: the queue's filter works on the stored codes (readings.reason_codes,
    quarantine.reason_codes), also inside a reason joined of several ("to transcribe; low contrast
    page (52 grey levels)"); chips, choices and items are sentences in the clerk's language; the
    quarantine screen filters by code as well."""
    import re

    import cv2
    import numpy as np
    from PIL import Image

    from fallbackkit.generate import print_blank, sheet_geometry
    from fallbackkit.review import create_app
    from fallbackkit.scan.pipeline import scan_paths
    from fallbackkit.scan.simulate import identify, render_pdf
    from kit_helpers import census_kit
    from review_helpers import add_people, scribble
    from test_review_app import login

    kit = census_kit(tmp_path / "k")
    try:
        printed = print_blank(kit, "lab-request", 2, tmp_path / "lab.pdf", actor="tester")
        pages = render_pdf(printed.out_path, 200)
        folder = tmp_path / "in"
        folder.mkdir()
        for k, page in enumerate(pages[:2]):
            sid = identify(page, kit.kit_id, kit.secret).sheet_id
            box = next(f for f in sheet_geometry(kit, sid)["fields"] if f["name"] == "diagnosis")["box_mm"]
            page = page.copy()
            scribble(page, box)
            if k == 1:  # a washed-out copy: every field of the page waits, with the page's reason
                page = (185 + page.astype(np.float32) * 0.2).astype(np.uint8)
            Image.fromarray(page).save(folder / f"lab-{k}.png")
        stray = np.full((1169, 827), 250, np.uint8)
        cv2.putText(stray, "a note, no sheet code", (60, 500), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 20, 4)
        Image.fromarray(stray).save(folder / "stray.png")
        scan_paths(kit, [folder], workers=0, progress=False, actor="tester")
        add_people(kit)
        conn = kit.db.conn
        waiting = conn.execute("SELECT reading_id, reason FROM readings WHERE status = 'review'").fetchall()
        joined = [rid for rid, text in waiting if reasons.codes(text) == {"to_transcribe", "low_contrast"}]
        low = {rid for rid, text in waiting if "low_contrast" in reasons.codes(text)}
        transcribe = {rid for rid, text in waiting if "to_transcribe" in reasons.codes(text)}
        assert len(joined) == 1 and len(low) > 3 and len(transcribe) == 2

        client = create_app(kit.path).test_client()
        login(client, "sam")  # sam reads French
        queue = client.get("/queue").get_data(as_text=True)
        assert 'value="low_contrast"' in queue and 'value="to_transcribe"' in queue
        assert ">page peu contrastée</option>" in queue  # the code alone, without its parameters
        assert "à transcrire ; " not in queue and re.search(r"à transcrire; page peu contrastée \(\d+ niveaux", queue)
        shown = lambda html: {int(r) for r in re.findall(r'/readings/(\d+)"', html)}  # noqa: E731
        assert shown(client.get("/queue?reason=low_contrast").get_data(as_text=True)) == low
        assert shown(client.get("/queue?reason=to_transcribe").get_data(as_text=True)) == transcribe
        chips = re.findall(r'reason=(\w+)[^"]*">([^<]+) <b>(\d+)</b>', queue)
        assert ("low_contrast", "page peu contrastée", str(len(low))) in chips
        assert ("to_transcribe", "à transcrire", "2") in chips
        got = client.get("/api/next?reason=to_transcribe").get_json()["reading"]
        assert got["reading_id"] in transcribe and "transcrire" in got["reason_text"]
        assert client.get("/api/progress?reason=low_contrast").get_json()["waiting"] == len(low)
        assert client.get("/api/progress?reason=to_transcribe").get_json()["waiting"] == 2
        # the quarantine screen: the page with no code, found by its code, said in French
        quarantine = client.get("/quarantine?reason=no_code").get_data(as_text=True)
        assert quarantine.count('data-quarantine="') == 1 and "aucun code de feuille lisible" in quarantine
        assert client.get("/quarantine?reason=no_marks").get_data(as_text=True).count('data-quarantine="') == 0
    finally:
        kit.close()
