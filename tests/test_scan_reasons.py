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
    assert 'value="to transcribe"' in queue  # the filter still selects by the stored reason
    reading = client.get("/api/next").get_json()["reading"]
    assert reading["reason_text"] == reason_text("fr", reading["reason"]) != reading["reason"]
    client.post("/lang", data={"lang": "nl", "csrf_token": csrf_of(client)})
    assert "over te typen" in client.get("/queue").get_data(as_text=True)
