"""Keyboard-first screens in Chromium. Zoom on the review screen: Alt with + / - / 0 magnifies the
field crop, or the whole page while it is shown (centred on the field), and works while the clerk
types in the box. Where the focus goes on the conflicts and identities screens (bench_clerk found
both: 14 Tabs to reach a suggestion; Enter after a sheet's scan retook that scan)."""
from __future__ import annotations

import os

import pytest

from fallbackkit.review import create_app

from review_helpers import PASSWORD, ServerThread, add_people, build_scenario, rescan_lab_sheet, scan_blank_registration
from kit_helpers import census_kit

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="needs Debian's chromium: sudo apt-get install chromium")
SHOTS = os.environ.get("FALLBACKKIT_SCREENSHOTS")


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zoom")
    kit = census_kit(tmp)
    sc = build_scenario(kit, tmp)
    sc.blank = scan_blank_registration(kit, tmp)
    rescan_lab_sheet(kit, tmp, sc)  # a firm tick in 'fasting' where the first scan was unsure
    add_people(kit)
    with ServerThread(create_app(kit.path)) as server:
        yield sc, server
    kit.close()


@pytest.fixture()
def page(station):
    from playwright.sync_api import sync_playwright
    sc, server = station
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
        pg = context.new_page()
        pg.set_default_timeout(10_000)
        problems: list[str] = []
        pg.on("pageerror", lambda e: problems.append(str(e)))
        pg.goto("/login")
        pg.fill("input[name=name]", "clara")
        pg.fill("input[name=password]", PASSWORD)
        pg.press("input[name=password]", "Enter")
        pg.wait_for_selector("#start")
        yield pg
        assert not problems
        context.close()
        browser.close()


def _reading(kit, sheet_id: str, field: str) -> int:
    return kit.db.conn.execute("SELECT reading_id FROM readings WHERE sheet_id = ? AND field = ?"
                               " ORDER BY capture_id DESC LIMIT 1", [sheet_id, field]).fetchone()[0]


def _crop_height(page) -> float:
    return page.evaluate("document.getElementById('crop').getBoundingClientRect().height")


def _viewbox(page) -> list[float]:
    return [float(v) for v in page.get_attribute("#pagebox svg", "viewBox").split()]


def test_alt_plus_minus_zero_zoom_the_crop_while_typing(station, page):
    sc, _server = station
    rid = _reading(sc.kit, sc.lab_sheet, sc.fields["text"])
    page.goto(f"/review?start={rid}")
    page.wait_for_selector(f"section[data-reading='{rid}'] #crop")
    page.wait_for_function("document.getElementById('crop').complete && document.getElementById('crop').naturalWidth > 0")
    page.wait_for_function("document.getElementById('zoomlevel').textContent.includes('100')")
    base = _crop_height(page)
    page.keyboard.type("Pneumo")
    page.keyboard.press("Alt+Equal")
    assert _crop_height(page) == pytest.approx(base * 1.5, abs=2)
    page.keyboard.press("Alt+Equal")
    assert _crop_height(page) == pytest.approx(base * 2, abs=2)
    assert "200" in page.inner_text("#zoomlevel")
    # the keys did not type into the box, and the box kept the focus
    assert page.input_value("#typed") == "Pneumo"
    assert page.evaluate("document.activeElement.id") == "typed"
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "review-zoom-crop.png"), full_page=True)
    page.keyboard.press("Alt+Minus")
    assert _crop_height(page) == pytest.approx(base * 1.5, abs=2)
    page.keyboard.press("Alt+Digit0")
    assert _crop_height(page) == pytest.approx(base, abs=2)
    assert page.input_value("#typed") == "Pneumo"


def test_alt_plus_zooms_the_whole_page_on_the_field(station, page):
    sc, _server = station
    rid = _reading(sc.kit, sc.lab_sheet, sc.fields["text"])
    page.goto(f"/review?start={rid}")
    page.wait_for_selector(f"section[data-reading='{rid}'] #typed")
    page.keyboard.press("Alt+p")
    page.wait_for_selector("#pagebox svg polygon.hit")
    full = _viewbox(page)
    assert full[0] == 0 and full[1] == 0
    page.keyboard.press("Alt+Equal")
    page.keyboard.press("Alt+Equal")
    x, y, w, h = _viewbox(page)
    assert w == pytest.approx(full[2] / 2, abs=1) and h == pytest.approx(full[3] / 2, abs=1)
    assert "200" in page.inner_text("#zoomlevel")
    # the view is centred on the field's outline (as far as the page edge allows)
    pts = [tuple(map(float, p.split(","))) for p in page.get_attribute("#pagebox polygon.hit", "points").split()]
    cx, cy = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    assert x < cx < x + w and y < cy < y + h, (x, y, w, h, cx, cy)
    assert x == pytest.approx(min(max(0, cx - w / 2), full[2] - w), abs=1)
    assert y == pytest.approx(min(max(0, cy - h / 2), full[3] - h), abs=1)
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "review-zoom-page.png"), full_page=True)
    page.keyboard.press("Alt+Digit0")
    assert _viewbox(page) == full
    # the buttons do the same with the mouse (not needed, but there)
    page.click("#zoom-in")
    assert _viewbox(page)[2] == pytest.approx(full[2] / 1.5, abs=1)
    assert page.input_value("#typed") == ""


def test_after_taking_a_scan_the_focus_is_on_what_it_left_open(station, page):
    page.goto("/conflicts")
    page.wait_for_selector("section.sheetgroup button.take-sheet")
    assert page.evaluate("!!document.activeElement.closest('section.sheetgroup')")
    before = page.locator("section.sheetgroup section.conflict").count()
    page.keyboard.press("1")  # scan 1 for the whole sheet: its unsure tick and untyped writing stay open
    page.wait_for_function("(n) => document.querySelectorAll('section.sheetgroup section.conflict').length < n",
                           arg=before)
    assert page.locator("section.sheetgroup section.conflict").count() >= 1
    # the focus is on the open field's own options or text box, where the clerk gives the value
    assert page.evaluate("!!document.activeElement.closest('section.conflict form.typed')")
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "conflicts-left-open.png"), full_page=True)


def test_identities_screen_starts_where_the_clerk_types(station, page):
    sc, _server = station
    page.goto("/identities")
    page.wait_for_selector(f"tr[data-mrn='{sc.blank['downtime_mrn']}']")
    # no suggestion for scribbles nobody typed yet: the focus is in the box for the real MRN
    assert page.evaluate("document.activeElement.name") == "real_mrn"
    page.keyboard.type("100345")
    page.keyboard.press("Enter")
    page.wait_for_selector("#do-link")
