"""Comb boxes in the review station, in a real browser (Debian's chromium driven by Playwright).

Real handwritten digits written into a printed vitals sheet and scanned. The machine's sure digits
are pre-filled in their boxes, the boxes it is unsure of are left to the clerk (issue 10): the clerk
confirms a fully pre-filled time with Enter alone, completes a partly pre-filled one by typing only
the unsure digit and Enter, corrects a wrong sure digit, and a suggestion that breaks a rule is not
pre-filled at all. Nothing is stored before Enter. Where a box must be unsure (or wrongly sure) the
stored per-cell measures are changed (raw measures are re-decided at display: `scan/suggest.py`)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fallbackkit.export.report import key_figures, report_data, suggestion_accuracy
from fallbackkit.generate import print_patient
from fallbackkit.review import create_app
from fallbackkit.scan import degrade
from fallbackkit.scan.pipeline import list_readings, scan_paths
from fallbackkit.store.decisions import current_review

from digits_helpers import write_comb
from kit_helpers import census_kit
from review_helpers import add_people, station_page
from scan_engine_helpers import Sheets, field
from scan_pipeline_helpers import write_png

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="needs Debian's chromium: sudo apt-get install chromium")
SHOTS = os.environ.get("FALLBACKKIT_SCREENSHOTS")


def _set_cells(kit, reading_id: int, alts: dict[int, list]) -> None:
    """Change the stored digit measures of some boxes (index -> alternatives)."""
    raw = json.loads(kit.db.execute("SELECT raw FROM readings WHERE reading_id = ?", [reading_id]).fetchone()[0])
    for k, a in alts.items():
        raw["cells"][k]["alts"] = a
        raw["cells"][k]["votes"] = [a[0][0], a[0][0]]  # both models read it so
    kit.db.execute("UPDATE readings SET raw = ? WHERE reading_id = ?", [json.dumps(raw), reading_id])
    kit.db.conn.commit()


def _shot(page, name: str) -> None:
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, name), full_page=True)


MOVED_ON = ("(rid) => { const s = document.querySelector('#item section.card');"
            " return !document.querySelector('#status.error') && (!s || s.dataset.reading !== rid); }")


def _cells(page) -> list[tuple[str, str]]:
    """The comb's boxes as shown: (text, who) with who machine / clerk / todo."""
    return [tuple(c) for c in page.eval_on_selector_all(
        "#comb .cell", "cs => cs.map(c => [c.textContent.trim(), ['machine', 'clerk', 'todo'].find(k => c.classList.contains(k))])")]


def test_clerk_types_only_the_unsure_digits_of_a_comb_field(tmp_path):
    kit = census_kit(tmp_path)
    mrn = kit.db.execute("SELECT mrn FROM patients LIMIT 1").fetchone()[0]
    printed = print_patient(kit, "vitals", mrn, tmp_path / "vitals.pdf", actor="tester")
    sid, image, geometry = Sheets(kit, printed.out_path, 200).pages()[0]
    page_img = image
    for name, text, seed in [("c1.time", "0830", 7), ("c2.time", "2200", 2), ("c3.time", "1415", 5),
                             ("c4.time", "2570", 4), ("c5.time", "0930", 6)]:
        page_img = write_comb(page_img, 200, field(geometry, name), text, seed=seed, clear=True)
    (tmp_path / "in").mkdir()
    write_png(tmp_path / "in" / "vitals.png", degrade.office(page_img, np.random.default_rng(3)), 200)
    scan_paths(kit, [tmp_path / "in"], workers=1, progress=False)
    add_people(kit)
    got = {r["field"]: r for r in list_readings(kit, sheet_id=sid)}
    full, partial, wrong, broken, blank = (got[n] for n in ("c1.time", "c2.time", "c3.time", "c4.time", "c5.time"))
    assert full["prefill"], (full["cells"], full["rule"])
    assert broken["rule"] and not broken["prefill"], broken
    # the last minute box of c2 unsure (0 or 8); c3's hour read wrongly as 17 by a sure box, its last box unsure
    _set_cells(kit, partial["reading_id"], {3: [["0", 0.55], ["8", 0.44]]})
    _set_cells(kit, wrong["reading_id"], {0: [["1", 0.9999]], 1: [["7", 0.9999]], 2: [["1", 0.9999]],
                                           3: [["5", 0.6], ["6", 0.39]]})
    # c5: ink in the field but none in any box (a stroke on the outline): every box surely empty
    raw = json.loads(kit.db.execute("SELECT raw FROM readings WHERE reading_id = ?", [blank["reading_id"]]).fetchone()[0])
    raw["cells"] = [{"ink": 0} for _ in raw["cells"]]
    kit.db.execute("UPDATE readings SET raw = ? WHERE reading_id = ?", [json.dumps(raw), blank["reading_id"]])
    kit.db.conn.commit()
    with station_page(create_app(kit.path)) as (page, problems):

        # 1. fully pre-filled: every box the machine's, Enter alone saves it
        page.goto(f"/readings/{full['reading_id']}")
        page.wait_for_selector(f"section[data-reading='{full['reading_id']}'] #comb")
        assert _cells(page) == [("0", "machine"), ("8", "machine"), ("3", "machine"), ("0", "machine")]
        assert page.evaluate("document.activeElement.id") == "comb"
        _shot(page, "comb-full.png")
        assert current_review(kit.db, full["reading_id"]) is None  # shown, not stored
        page.keyboard.press("Enter")
        page.wait_for_selector(f"section[data-reading='{partial['reading_id']}'] #comb")

        # 2. partly pre-filled: 22:0_ with the cursor on the open box; one digit and Enter
        assert _cells(page) == [("2", "machine"), ("2", "machine"), ("0", "machine"), ("", "todo")]
        assert page.get_attribute("#comb .cell.todo", "class").split()[-1] == "cursor"
        assert page.locator("#item .cellmark.lowcell.cur").count() == 1  # the same box outlined on the crop
        page.keyboard.press("Enter")  # a box still open: refused, nothing stored
        assert "highlighted" in page.inner_text("#status")
        assert current_review(kit.db, partial["reading_id"]) is None
        _shot(page, "comb-partial.png")
        page.keyboard.type("0")
        assert _cells(page)[3] == ("0", "clerk")
        assert current_review(kit.db, partial["reading_id"]) is None  # typed, not stored before Enter
        page.keyboard.press("Enter")
        page.wait_for_selector(f"section[data-reading='{wrong['reading_id']}'] #comb")

        # 3. a wrong sure digit (7 for 4): the clerk types the open box, goes back and types over the 7
        assert _cells(page) == [("1", "machine"), ("7", "machine"), ("1", "machine"), ("", "todo")]
        page.keyboard.type("5")
        for _ in range(3):
            page.keyboard.press("ArrowLeft")
        page.keyboard.type("4")
        assert _cells(page) == [("1", "machine"), ("4", "clerk"), ("1", "machine"), ("5", "clerk")]
        _shot(page, "comb-corrected.png")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"section[data-reading='{broken['reading_id']}'] #comb")

        # 4. a suggestion that breaks a rule: shown with the rule, nothing in the boxes
        assert [who for _, who in _cells(page)] == ["todo"] * 4 and all(t == "" for t, _ in _cells(page))
        assert "not a time of day" in page.inner_text("#rule")
        assert page.input_value("#typed") == ""
        _shot(page, "comb-rule.png")
        page.keyboard.type("23:50")  # the separator is printed: typing it does nothing
        assert _cells(page) == [("2", "clerk"), ("3", "clerk"), ("5", "clerk"), ("0", "clerk")]
        page.keyboard.press("Enter")
        page.wait_for_selector(f"section[data-reading='{blank['reading_id']}'] #comb")

        # 5. every box surely empty: one key saves blank
        assert _cells(page) == [("", "machine")] * 4 and page.is_visible("#comb-blank")
        _shot(page, "comb-blank.png")
        page.keyboard.press("Enter")
        page.wait_for_selector("#done:not([hidden])")
        # the decisions screen says what was suggested, how it was pre-filled and what became of it
        page.goto("/decisions")
        row = page.locator(f"tr:has(a[href='/readings/{wrong['reading_id']}']) td.suggested").inner_text()
        assert row.startswith("17:15") and "sure digits pre-filled" in row and "corrected" in row, row
        _shot(page, "comb-decisions.png")
    assert not problems, problems
    values = {r: current_review(kit.db, x["reading_id"])["value"]
              for r, x in [("full", full), ("partial", partial), ("wrong", wrong), ("broken", broken)]}
    assert values == {"full": "08:30", "partial": "22:00", "wrong": "14:15", "broken": "23:50"}
    saved = current_review(kit.db, blank["reading_id"])
    assert saved["value"] is None and saved["decision"] == "transcribe"
    rows = {rid: (outcome, pre) for rid, outcome, pre in kit.db.execute(
        "SELECT reading_id, suggestion_outcome, prefilled FROM reviews")}
    assert rows == {full["reading_id"]: ("accepted", 1), partial["reading_id"]: ("accepted", 2),
                    wrong["reading_id"]: ("corrected", 2), broken["reading_id"]: ("corrected", 0),
                    blank["reading_id"]: (None, None)}  # no digit suggested: none recorded
    acc = suggestion_accuracy(kit)
    assert acc == {**acc, "shown": 4, "accepted": 2, "prefilled": 1, "prefilled_corrected": 0,
                   "partly_prefilled": 2, "partly_changed": 1, "partly_completed": 0}
    figures = dict(key_figures(report_data(kit)))  # what `fallbackkit report` prints
    assert figures["Partly pre-filled suggestions: a pre-filled digit changed"] == "1 of 2"
    assert figures["Digit suggestions accepted as suggested"].startswith("2 of 4")
    kit.close()


def test_number_boxes_keep_their_decimal_point_and_empty_boxes(tmp_path):
    """Numbers in boxes: the decimal point is printed (never typed); a box the machine is unsure is
    empty is typed with Space; what is saved is the number (37.2, 72)."""
    kit = census_kit(tmp_path)
    mrn = kit.db.execute("SELECT mrn FROM patients LIMIT 1").fetchone()[0]
    printed = print_patient(kit, "vitals", mrn, tmp_path / "vitals.pdf", actor="tester")
    sid, image, geometry = Sheets(kit, printed.out_path, 200).pages()[0]
    page_img = write_comb(image, 200, field(geometry, "c1.temperature"), "372", seed=3, clear=True)
    page_img = write_comb(page_img, 200, field(geometry, "c1.pulse"), " 72", seed=4, clear=True)
    (tmp_path / "in").mkdir()
    write_png(tmp_path / "in" / "vitals.png", degrade.office(page_img, np.random.default_rng(3)), 200)
    scan_paths(kit, [tmp_path / "in"], workers=1, progress=False)
    add_people(kit)
    got = {r["field"]: r for r in list_readings(kit, sheet_id=sid)}
    temp, pulse = got["c1.temperature"], got["c1.pulse"]
    _set_cells(kit, temp["reading_id"], {0: [["3", 0.9999]], 1: [["7", 0.9999]], 2: [["2", 0.6], ["7", 0.39]]})
    raw = json.loads(kit.db.execute("SELECT raw FROM readings WHERE reading_id = ?", [pulse["reading_id"]]).fetchone()[0])
    raw["cells"][0] = {"ink": 40}  # a stray mark in the empty first box: read as empty, not surely
    raw["cells"][1]["alts"], raw["cells"][2]["alts"] = [["7", 0.9999]], [["2", 0.9999]]
    raw["cells"][1]["votes"], raw["cells"][2]["votes"] = ["7", "7"], ["2", "2"]
    kit.db.execute("UPDATE readings SET raw = ? WHERE reading_id = ?", [json.dumps(raw), pulse["reading_id"]])
    kit.db.conn.commit()
    with station_page(create_app(kit.path)) as (page, problems):
        page.goto(f"/readings/{temp['reading_id']}")
        page.wait_for_selector(f"section[data-reading='{temp['reading_id']}'] #comb")
        assert _cells(page) == [("3", "machine"), ("7", "machine"), ("", "todo")]
        assert page.locator("#comb .sep").all_inner_texts() == ["."]
        _shot(page, "comb-number.png")
        page.keyboard.type(".2")  # the point is printed: typing it does nothing
        page.keyboard.press("Enter")
        page.wait_for_function(MOVED_ON, arg=str(temp["reading_id"]))
        page.goto(f"/readings/{pulse['reading_id']}")
        page.wait_for_selector(f"section[data-reading='{pulse['reading_id']}'] #comb")
        assert _cells(page) == [("", "todo"), ("7", "machine"), ("2", "machine")]
        page.keyboard.press("Enter")  # the open box must be typed, even to say it is empty
        assert "highlighted" in page.inner_text("#status")
        page.keyboard.press("Space")
        page.keyboard.press("Enter")
        page.wait_for_function(MOVED_ON, arg=str(pulse["reading_id"]))
    assert not problems, problems
    assert current_review(kit.db, temp["reading_id"])["value"] == "37.2"
    assert current_review(kit.db, pulse["reading_id"])["value"] == "72"
    kit.close()


def test_a_box_holding_something_else_is_typed_and_the_sure_boxes_around_it_are_prefilled(tmp_path):
    """A scribble (or a letter, a crossed-out digit) in one box: no suggestion, the rule names the box,
    the clerk types that box only (the sure boxes around it are pre-filled) and Enter; the decision
    records the pattern shown as partly pre-filled and completed."""
    kit = census_kit(tmp_path)
    mrn = kit.db.execute("SELECT mrn FROM patients LIMIT 1").fetchone()[0]
    printed = print_patient(kit, "vitals", mrn, tmp_path / "vitals.pdf", actor="tester")
    sid, image, geometry = Sheets(kit, printed.out_path, 200).pages()[0]
    page_img = write_comb(image, 200, field(geometry, "c1.time"), "1130", seed=3, clear=True)
    (tmp_path / "in").mkdir()
    write_png(tmp_path / "in" / "vitals.png", degrade.office(page_img, np.random.default_rng(3)), 200)
    scan_paths(kit, [tmp_path / "in"], workers=1, progress=False)
    add_people(kit)
    time = {r["field"]: r for r in list_readings(kit, sheet_id=sid)}["c1.time"]
    _set_cells(kit, time["reading_id"], {0: [["1", 0.9999]], 1: [["other", 0.8], ["1", 0.15]], 2: [["3", 0.9999]],
                                         3: [["0", 0.9999]]})
    with station_page(create_app(kit.path)) as (page, problems):
        page.goto(f"/readings/{time['reading_id']}")
        page.wait_for_selector(f"section[data-reading='{time['reading_id']}'] #comb")
        assert _cells(page) == [("1", "machine"), ("", "todo"), ("3", "machine"), ("0", "machine")]
        assert "box 2" in page.inner_text("#rule")
        _shot(page, "comb-other.png")
        assert current_review(kit.db, time["reading_id"]) is None
        page.keyboard.type("1")
        page.keyboard.press("Enter")
        page.wait_for_function(MOVED_ON, arg=str(time["reading_id"]))
    assert not problems, problems
    assert current_review(kit.db, time["reading_id"])["value"] == "11:30"
    row = kit.db.execute("SELECT suggestion, suggestion_outcome, prefilled FROM reviews").fetchone()
    assert row == ("1_:30", "completed", 2)
    kit.close()
