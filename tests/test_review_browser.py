"""The review station in a real browser (Debian's chromium driven by Playwright), as a clerk uses it.

One browser and one waitress server for the module; the kit holds a ward pack that was really
printed, marked and scanned (tests/review_helpers.py). After each action the store and the audit
log are checked, not just the screen.
"""
from __future__ import annotations

import os

import pytest

from fallbackkit.review import create_app
from fallbackkit.store.audit import verify_audit
from fallbackkit.store.decisions import current_review

from review_helpers import PASSWORD, ServerThread, add_people, audit_rows, build_scenario
from kit_helpers import census_kit

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="needs Debian's chromium: sudo apt-get install chromium")
SHOTS = os.environ.get("FALLBACKKIT_SCREENSHOTS")  # a directory: save what the clerk sees


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    kit = census_kit(tmp)
    sc = build_scenario(kit, tmp)
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
        yield pg
        context.close()
        browser.close()


def shot(page, name: str) -> None:
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def reading_id(kit, capture_field: str) -> int:
    return kit.db.conn.execute(
        "SELECT reading_id FROM readings WHERE sheet_id = ? AND field = ? ORDER BY capture_id DESC LIMIT 1",
        [kit_sheet(kit), capture_field]).fetchone()[0]


def kit_sheet(kit) -> str:
    return kit.db.conn.execute("SELECT sheet_id FROM captures WHERE template = 'lab-request' LIMIT 1").fetchone()[0]


def test_a_clerk_works_through_the_station(station, page):
    sc, server = station
    kit = sc.kit
    # log in
    page.goto("/")
    assert "/login" in page.url
    page.fill("input[name=name]", "clara")
    page.fill("input[name=password]", PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_selector("#start")
    shot(page, "dashboard")

    # resolve a checkbox with a digit: the faint mark in 'fasting' is a tick
    fasting, diagnosis = reading_id(kit, "fasting"), reading_id(kit, "diagnosis")
    page.click("#start")
    page.wait_for_selector(f"section[data-reading='{fasting}']")
    assert page.locator("#machine").inner_text().strip() == "—"
    shot(page, "review-checkbox")
    # Esc skips (nothing recorded), and the queue wraps round to the skipped item
    page.keyboard.press("Escape")
    page.wait_for_selector(f"section[data-reading='{diagnosis}']")
    page.keyboard.press("Escape")
    page.wait_for_selector(f"section[data-reading='{fasting}']")
    assert current_review(kit.db, fasting) is None and current_review(kit.db, diagnosis) is None
    # Enter alone does not turn "the machine could not tell" into an answer
    page.keyboard.press("Enter")
    page.wait_for_selector("#status.error")
    assert current_review(kit.db, fasting) is None
    page.keyboard.press("z")
    page.wait_for_selector("#pagebox svg polygon.hit")
    page.keyboard.press("1")
    # the next item (prefetched) replaces it without a page load: the handwriting to transcribe
    page.wait_for_selector(f"section[data-reading='{diagnosis}']")
    review = current_review(kit.db, fasting)
    assert review["value"] is True and review["actor"] == "clara" and review["decision"] == "correct"
    row = audit_rows(kit, "review.")[-1]
    assert row["object"] == f"reading:{fasting}" and row["actor"] == "clara" and row["after"]["value"] is True

    # transcribe: typing goes straight into the focused input, Enter saves
    shot(page, "review-transcribe")
    # handwriting the machine does not read shows why it waits, not a "machine read: —" with a confidence
    assert page.locator("#machine").count() == 0 and page.locator(".why .badge").count() == 1
    page.keyboard.type("Community-acquired pneumonia z")  # a z typed into the box is text, not a shortcut
    assert page.input_value("#typed").endswith(" z") and page.is_hidden("#pagebox")
    page.keyboard.press("Alt+p")  # the whole page, without leaving the box
    page.wait_for_selector("#pagebox svg")
    page.keyboard.press("Alt+p")
    page.wait_for_selector("#pagebox", state="hidden")
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    page.keyboard.press("Enter")
    page.wait_for_selector("#done:not([hidden])")
    review = current_review(kit.db, diagnosis)
    assert review == {**review, "decision": "transcribe", "value": "Community-acquired pneumonia", "actor": "clara"}
    assert audit_rows(kit, "review.transcribe")[-1]["actor"] == "clara"

    # identify the quarantined page by the sheet id printed on it
    page.goto("/quarantine")
    shot(page, "quarantine")
    page.fill("input[name=sheet_id]", sc.quarantine_sheet.lower())
    page.click("section.quarantine button.primary")
    page.wait_for_selector(".flash.ok")
    row = kit.db.conn.execute("SELECT sheet_id, capture_id, actor FROM quarantine_assignments").fetchone()
    assert row[0] == sc.quarantine_sheet and row[2] == "clara"
    assert kit.db.conn.execute("SELECT source, status, sheet_id FROM captures WHERE capture_id = ?",
                               [row[1]]).fetchone() == ("assigned", "read", sc.quarantine_sheet)
    assert audit_rows(kit, "quarantine.assign")[-1]["actor"] == "clara"

    # resolve the conflict: the two scans disagree on the priority; the clerk picks the second
    page.goto("/conflicts")
    shot(page, "conflicts")
    conflict = page.locator("section.conflict[data-field='priority']")
    assert conflict.locator("form.option").count() == 2
    conflict.locator("form.option").nth(1).locator("button").click()
    page.wait_for_selector(".flash.ok")
    from fallbackkit.reconcile import form_readings
    assert form_readings(kit, sc.lab_sheet)["priority"]["value"] == "urgent"
    assert any(r["actor"] == "clara" for r in audit_rows(kit, "review."))
    assert page.locator("section.conflict[data-field='priority']").count() == 0

    # mark the lab order entered in the hospital system: everything on it is resolved now
    page.goto("/worklist")
    shot(page, "worklist")
    item = page.locator(f"div.witem[data-item='{sc.lab_sheet}:order']")
    item.locator("button[value=entered]").click()
    page.wait_for_selector(".flash.ok")
    mark = kit.db.conn.execute("SELECT status, actor FROM worklist_marks WHERE item_id = ? ORDER BY id DESC",
                               [f"{sc.lab_sheet}:order"]).fetchone()
    assert mark == ("entered", "clara")
    assert audit_rows(kit, "worklist.")[-1]["actor"] == "clara"

    # the whole page with its readings drawn over it
    cap = kit.db.conn.execute("SELECT MAX(capture_id) FROM captures WHERE sheet_id = ?", [sc.lab_sheet]).fetchone()[0]
    page.goto(f"/page/{cap}")
    assert page.locator("#overlay a.field").count() >= 10
    assert page.locator("#overlay a.field[data-field='diagnosis'] text").text_content() == "Community-acquired pneumonia"
    shot(page, "page")
    page.goto("/")
    shot(page, "dashboard-after")

    assert not page.problems, page.problems  # no script errors, nothing blocked by the CSP
    assert verify_audit(kit.db)[1] is None
