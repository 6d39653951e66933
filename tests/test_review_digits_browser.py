"""Digit suggestions in the review station, in a real browser (Debian's chromium driven by Playwright):
real handwritten digits written into a printed vitals sheet, scanned; the clerk confirms a pre-filled
time with Enter alone and corrects another by typing over it. The store records both outcomes."""
from __future__ import annotations

import os

import numpy as np
import pytest

from fallbackkit.export.report import suggestion_accuracy
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


def test_clerk_confirms_a_prefilled_time_with_enter_and_corrects_another_by_typing(tmp_path):
    kit = census_kit(tmp_path)
    mrn = kit.db.execute("SELECT mrn FROM patients LIMIT 1").fetchone()[0]
    printed = print_patient(kit, "vitals", mrn, tmp_path / "vitals.pdf", actor="tester")
    sid, image, geometry = Sheets(kit, printed.out_path, 200).pages()[0]
    page_img = write_comb(image, 200, field(geometry, "c1.time"), "0830", seed=7, clear=True)
    page_img = write_comb(page_img, 200, field(geometry, "c2.time"), "2200", seed=3, clear=True)
    (tmp_path / "in").mkdir()
    write_png(tmp_path / "in" / "vitals.png", degrade.office(page_img, np.random.default_rng(3)), 200)
    scan_paths(kit, [tmp_path / "in"], workers=1, progress=False)
    add_people(kit)
    got = {r["field"]: r for r in list_readings(kit, sheet_id=sid)}
    first, second = got["c1.time"], got["c2.time"]
    assert first["prefill"] and second["prefill"], (first["cells"], first["rule"], second["cells"], second["rule"])
    with station_page(create_app(kit.path)) as (page, problems):
        page.goto(f"/readings/{first['reading_id']}")
        page.wait_for_selector(f"section[data-reading='{first['reading_id']}']")
        assert page.input_value("#typed") == "08:30"
        assert page.locator("#suggestion").inner_text().strip() == "08:30"
        if SHOTS:
            os.makedirs(SHOTS, exist_ok=True)
            page.screenshot(path=os.path.join(SHOTS, "review-suggestion.png"), full_page=True)
        assert current_review(kit.db, first["reading_id"]) is None  # shown, not stored
        page.keyboard.press("Enter")
        page.wait_for_selector(f"section[data-reading='{second['reading_id']}']")
        assert page.input_value("#typed") == "22:00"
        page.keyboard.type("22:10")  # every box pre-filled: the first digit typed starts the value again (":" is printed)
        page.keyboard.press("Enter")
        page.wait_for_selector("#done:not([hidden])")
    assert not problems
    one, two = current_review(kit.db, first["reading_id"]), current_review(kit.db, second["reading_id"])
    assert one["value"] == "08:30" and one["actor"] == "clara"
    assert two["value"] == "22:10"
    rows = dict(kit.db.execute("SELECT reading_id, suggestion_outcome FROM reviews").fetchall())
    assert rows == {first["reading_id"]: "accepted", second["reading_id"]: "corrected"}
    acc = suggestion_accuracy(kit)
    assert acc == {**acc, "shown": 2, "accepted": 1, "corrected": 1, "prefilled": 2, "prefilled_corrected": 1}
    kit.close()
