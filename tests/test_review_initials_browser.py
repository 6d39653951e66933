"""The initials legend in the review station, in a real browser (issue 10 item 6, issue 15 item 9):
the clerk has typed the MAR's legend once; each slot's initials are then one key (1-9, shown beside
the box) picking a legend row, the next dose of the same row comes pre-filled with the initials of
the one before (Enter accepts), and on a sheet without a legend the keys pick the clerk's recent
initials. Nothing is stored before a key is pressed."""
from __future__ import annotations

import os

import pytest

from fallbackkit.generate import print_patient
from fallbackkit.review import create_app
from fallbackkit.scan.pipeline import list_readings, scan_paths
from fallbackkit.store.decisions import current_review, record_review

from kit_helpers import census_kit
from review_helpers import add_people, scribble, station_page
from scan_engine_helpers import Sheets
from scan_pipeline_helpers import write_png

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="needs Debian's chromium: sudo apt-get install chromium")
SHOTS = os.environ.get("FALLBACKKIT_SCREENSHOTS")


def _scan_with_ink(kit, tmp_path, pdf, names: list[str], tag: str) -> dict[str, dict]:
    pages = Sheets(kit, pdf, 200).pages()
    inbox = tmp_path / f"in-{tag}"
    inbox.mkdir()
    for k, (sid, img, geo) in enumerate(pages):
        img = img.copy()
        for f in geo["fields"]:
            if f["name"] in names:
                scribble(img, f["box_mm"], "JM")
        write_png(inbox / f"{tag}{k}.png", img, 200)
    scan_paths(kit, [inbox], workers=0, progress=False)
    sheets = {sid for sid, _, _ in pages}
    return {r["field"]: r for r in list_readings(kit) if r["sheet_id"] in sheets}


def test_clerk_picks_initials_from_the_legend_with_one_key(tmp_path):
    kit = census_kit(tmp_path)
    mrn = kit.db.execute("SELECT mrn FROM medications WHERE scheduled_times LIKE '%;%' ORDER BY mrn LIMIT 1").fetchone()[0]
    mar = print_patient(kit, "mar", mrn, tmp_path / "mar.pdf", actor="tester")
    from fallbackkit.generate import sheet_geometry
    names = {f["name"] for s in mar.sheets for f in sheet_geometry(kit, s["sheet_id"])["fields"]}
    row = next(f"m{k}" for k in range(1, 9) if f"m{k}.s2.initials" in names)  # a drug given twice a day or more
    got = _scan_with_ink(kit, tmp_path, mar.out_path, ["l1.initials", "l1.name", "l2.initials", "l2.name",
                                                        f"{row}.s1.initials", f"{row}.s2.initials"], "mar")
    vitals = print_patient(kit, "vitals", mrn, tmp_path / "vitals.pdf", actor="tester")
    other = _scan_with_ink(kit, tmp_path, vitals.out_path, ["c1.initials"], "vit")
    add_people(kit)
    for name, text in (("l1.initials", "AD"), ("l1.name", "Anne DUPONT"), ("l2.initials", "JM"),
                       ("l2.name", "Jan MAES")):  # the legend, typed once for the sheet
        record_review(kit.db, got[name]["reading_id"], "transcribe", text, "clara")
    first, second = got[f"{row}.s1.initials"], got[f"{row}.s2.initials"]
    with station_page(create_app(kit.path)) as (page, problems):
        page.goto(f"/readings/{first['reading_id']}")
        page.wait_for_selector(f"section[data-reading='{first['reading_id']}']")
        picks = page.locator("#initials-picks button.pick")
        assert picks.count() == 2
        assert picks.nth(1).locator(".key").inner_text() == "2" and "JM — Jan MAES" in picks.nth(1).inner_text()
        assert page.locator("#typed").evaluate("e => e === document.activeElement")  # the keys work while typing
        if SHOTS:
            os.makedirs(SHOTS, exist_ok=True)
            page.screenshot(path=os.path.join(SHOTS, "review-initials-legend.png"), full_page=True)
        assert current_review(kit.db, first["reading_id"]) is None
        page.keyboard.press("2")  # one key: legend row 2
        page.wait_for_selector(f"section[data-reading='{first['reading_id']}']", state="detached")
        assert current_review(kit.db, first["reading_id"])["value"] == "JM"
        page.goto(f"/readings/{second['reading_id']}")
        page.wait_for_selector(f"section[data-reading='{second['reading_id']}']")
        assert page.input_value("#typed") == "JM"  # the previous dose's initials, pre-filled, not stored
        assert "previous dose" in page.locator("#initials-suggested").inner_text()
        assert current_review(kit.db, second["reading_id"]) is None
        page.keyboard.press("Enter")
        page.wait_for_selector(f"section[data-reading='{second['reading_id']}']", state="detached")
        assert current_review(kit.db, second["reading_id"])["value"] == "JM"
        # a vitals sheet has no legend: the keys pick the clerk's recent initials
        page.goto(f"/readings/{other['c1.initials']['reading_id']}")
        page.wait_for_selector(f"section[data-reading='{other['c1.initials']['reading_id']}']")
        assert "recent" in page.locator("#initials-picks .pickhead").inner_text().lower()
        recent = page.locator("#initials-picks button.pick").nth(0)
        assert recent.locator(".key").inner_text() == "1" and recent.get_attribute("data-initials") == "JM"
        page.keyboard.press("1")
        page.wait_for_selector(f"section[data-reading='{other['c1.initials']['reading_id']}']", state="detached")
    assert not problems
    assert current_review(kit.db, other["c1.initials"]["reading_id"])["value"] == "JM"
