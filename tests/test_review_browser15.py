"""Issue 15 in a real browser: where am I, undo my own last decision by key, the last item skipped,
the end screen, the identity check and conflicts per sheet, with screenshots of each screen."""
from __future__ import annotations

import os

import pytest

from fallbackkit.review import create_app
from fallbackkit.store.decisions import current_review

from review_helpers import (PASSWORD, ServerThread, add_people, audit_rows, build_scenario, rescan_lab_sheet,
                            scan_blank_registration)
from kit_helpers import census_kit
from test_review_browser import CHROMIUM

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="needs Debian's chromium: sudo apt-get install chromium")
SHOTS = os.environ.get("FALLBACKKIT_SCREENSHOTS")


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser15")
    kit = census_kit(tmp)
    sc = build_scenario(kit, tmp)
    sc.blank = scan_blank_registration(kit, tmp)
    sc.third = rescan_lab_sheet(kit, tmp, sc)
    add_people(kit)
    with ServerThread(create_app(kit.path)) as server:
        yield sc, server
    kit.close()


@pytest.fixture(scope="module")
def page(station):
    from playwright.sync_api import sync_playwright
    sc, server = station
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-quic"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
        pg = context.new_page()
        pg.set_default_timeout(10_000)
        problems: list[str] = []
        pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: problems.append(str(e)))
        pg.problems = problems
        pg.goto("/login")
        pg.fill("input[name=name]", "clara")
        pg.fill("input[name=password]", PASSWORD)
        pg.press("input[name=password]", "Enter")
        pg.wait_for_selector("#start")
        yield pg
        context.close()
        browser.close()


def shot(page, name: str) -> None:
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def answer(page) -> int:
    """Decide the item on screen with the keyboard; returns its reading id."""
    rid = int(page.get_attribute("section[data-reading]", "data-reading"))
    if page.locator("#comb").count():  # boxes for digits (the separators are printed): a date, a time, a number
        label = page.locator("h1.fieldname").inner_text()
        page.keyboard.press("Delete")
        page.keyboard.type("03021961" if label.startswith("Date") else "0930" if "Time" in label else "42")
        page.keyboard.press("Enter")
    elif page.locator("#typed").count():
        # typed values are checked like handwriting suggestions: a date box takes a date
        page.keyboard.type("03/02/1961" if page.locator("h1.fieldname").inner_text().startswith("Date") else "as written")
        page.keyboard.press("Enter")
    else:
        page.keyboard.press("1")
    page.wait_for_selector(f"section[data-reading]:not([data-reading='{rid}']), #done:not([hidden])")
    return rid


def test_progress_undo_by_key_last_item_and_end_screen(station, page):
    sc, _server = station
    kit = sc.kit
    page.goto("/queue")
    assert page.locator("table").inner_text().count("Laboratory request") >= 1   # forms by title, not key
    shot(page, "queue")
    page.goto("/review")
    page.wait_for_selector("#progress[data-total]")
    total = int(page.get_attribute("#progress", "data-total"))
    assert page.locator("#progress").inner_text().startswith(f"Item 1 of {total}")
    # less noise: no measurement JSON, no internal key; the patient by name
    assert page.locator("details.raw").count() == 0 and "Measurements" not in page.locator("body").inner_text()
    rid = int(page.get_attribute("section[data-reading]", "data-reading"))
    field, mrn = kit.db.conn.execute("SELECT rd.field, COALESCE(f.patient_mrn, f.downtime_mrn) FROM readings rd"
                                     " JOIN captures c ON c.capture_id = rd.capture_id JOIN forms f ON f.form_id = c.form_id"
                                     " WHERE rd.reading_id = ?", [rid]).fetchone()
    assert field not in page.locator("h1.fieldname").inner_text()
    name = kit.db.conn.execute("SELECT last_name || ', ' || first_name FROM patients WHERE mrn = ?", [mrn]).fetchone()
    if name:
        assert page.locator("#patient").inner_text() == f"{name[0]} · {mrn}"
    shot(page, "review-first")
    first = answer(page)
    page.wait_for_selector("#progress[data-position='2']")
    assert current_review(kit.db, first)["actor"] == "clara"
    # Alt+U, even with the cursor in the transcription box: the decision is undone and the item is back
    page.keyboard.press("Alt+u")
    page.wait_for_selector(f"section[data-reading='{first}'] #returned")
    assert current_review(kit.db, first) is None
    assert audit_rows(kit, "review.undo")[-1]["actor"] == "clara"
    assert "undone by clara" in page.locator("#returned").inner_text()
    shot(page, "review-undone")
    # decide everything but the last, then skip the last: it stays, and the screen says so
    while int(page.get_attribute("#progress", "data-total")) - int(page.get_attribute("#progress", "data-position")) > 0:
        answer(page)
        page.wait_for_timeout(150)
    last = int(page.get_attribute("section[data-reading]", "data-reading"))
    page.keyboard.press("Escape")
    page.wait_for_selector("#status:has-text('last item')")
    assert page.locator(f"section[data-reading='{last}']").count() == 1 and page.locator("#done").is_hidden()
    shot(page, "review-last-skipped")
    answer(page)
    page.wait_for_selector("#done:not([hidden]) #done-open li")
    assert page.locator("#open-conflicts").count() == 1 and page.locator("#open-quarantine").count() == 1
    assert page.locator("#open-identities").count() == 1
    shot(page, "review-end")
    assert not page.problems, page.problems


def test_conflicts_take_one_scan_for_the_whole_sheet_with_one_key_and_no_reload(station, page):
    from fallbackkit.reconcile import form_readings
    sc, _server = station
    page.goto("/conflicts")
    group = page.locator(f"section.sheetgroup[data-sheet='{sc.lab_sheet}']")
    assert group.locator("section.conflict").count() >= 2
    shot(page, "conflicts-sheet")
    # the focus starts on the sheet's newest scan; one digit takes a scan for every field of the sheet
    assert page.evaluate("document.activeElement.classList.contains('take-sheet')")
    page.evaluate("window.__same_page = true")
    n = group.locator(f"button.take-sheet[data-capture='{sc.third}']").get_attribute("data-n")
    page.keyboard.press(n)
    page.wait_for_selector("#conflict-status.flash.ok")
    assert page.evaluate("window.__same_page === true")              # no reload
    assert page.evaluate("document.activeElement !== document.body")  # the focus is not lost
    got = form_readings(sc.kit, sc.lab_sheet)
    assert got["fasting"]["value"] is True and got["priority"]["value"] == "stat"
    assert audit_rows(sc.kit, "review.")[-1]["actor"] == "clara"
    shot(page, "conflicts-after")
    assert not page.problems, page.problems


def test_worklist_by_keyboard_without_reload(station, page):
    sc, _server = station
    kit = sc.kit
    page.goto("/worklist")
    page.wait_for_selector("div.witem:focus")
    shot(page, "worklist-folded")
    page.evaluate("window.__same_page = true")
    target = f"{sc.lab_sheet}:order"
    for _ in range(40):  # J moves item by item (opening the next patient when it gets there)
        if page.evaluate("document.activeElement.getAttribute('data-item')") == target:
            break
        page.keyboard.press("j")
    else:
        pytest.fail("J never reached the lab order")
    page.keyboard.press("e")
    page.wait_for_selector(f"div.witem.entered[data-item='{target}']")
    assert page.evaluate("window.__same_page === true")
    assert kit.db.conn.execute("SELECT status, actor FROM worklist_marks WHERE item_id = ? ORDER BY id DESC",
                               [target]).fetchone() == ("entered", "clara")
    assert page.evaluate("document.activeElement !== document.body")
    page.keyboard.press("Shift+K")
    assert page.evaluate("!!document.activeElement.closest('details.patient')")
    shot(page, "worklist-after")
    assert not page.problems, page.problems


def test_identity_check_by_keyboard(station, page):
    sc, _server = station
    kit, dt = sc.kit, sc.blank["downtime_mrn"]
    page.goto("/identities")
    shot(page, "identities")
    real = kit.db.conn.execute("SELECT mrn FROM patients ORDER BY mrn LIMIT 1").fetchone()[0]
    row = page.locator(f"tr[data-mrn='{dt}']")
    row.locator("input[name=real_mrn]").fill(real)
    row.locator("input[name=real_mrn]").press("Enter")
    page.wait_for_selector("section.identity-check")
    assert page.locator("tr.mismatch[data-key='birth_date']").count() == 1   # 1961 on the paper
    shot(page, "identity-check")
    # Enter alone does not link: the confirmation box has the focus and must be ticked
    assert page.evaluate("document.activeElement.id") == "confirm"
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector(".flash.ok")
    assert kit.db.conn.execute("SELECT real_mrn, actor FROM identity_links WHERE downtime_mrn = ?",
                               [dt]).fetchall() == [(real, "clara")]
    assert "birth_date" in audit_rows(kit, "identity.link")[-1]["after"]["mismatches_confirmed"]
    assert not page.problems, page.problems


def test_an_implausible_typed_value_needs_a_second_enter(station, page):
    """A typed value goes through templates/values.py: 'Dupont' in a date's boxes is refused (digits only), a date in
    the future needs a second Enter, and the reason is kept with the decision."""
    from fallbackkit.store.decisions import undo_review
    sc, _server = station
    kit = sc.kit
    rid = sc.blank["readings"]["birth_date"]
    review = current_review(kit.db, rid)
    if review is not None:
        undo_review(kit.db, review["review_id"], "sam", "test: type it again")
    page.goto(f"/review?start={rid}")
    page.wait_for_selector(f"section[data-reading='{rid}'] #comb")  # a date in boxes: digits only
    page.keyboard.type("Dupont")
    page.wait_for_selector("#status.error:has-text('Digits only')")
    page.keyboard.press("Enter")
    page.wait_for_selector("#status.error:has-text('Type the value')")
    assert current_review(kit.db, rid) is None
    page.keyboard.type("03022199")
    page.keyboard.press("Enter")
    page.wait_for_selector("#status.error:has-text('Implausible')")
    assert current_review(kit.db, rid) is None
    shot(page, "review-implausible")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"section[data-reading]:not([data-reading='{rid}']), #done:not([hidden])")
    saved = current_review(kit.db, rid)
    assert saved["value"] == "03/02/2199" and saved["note"].startswith("implausible, confirmed:")
    # the refusals were answers (400, 422) the screen showed; nothing else went wrong
    assert not [p for p in page.problems if "status of 400" not in p and "status of 422" not in p], page.problems
