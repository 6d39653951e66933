"""Issue 15, "measure it": on the identities screen a clerk checks and links downtime MRNs with the
keyboard, one after the other, without a page load: the check opens under the row, the link is
saved by fetch, the row shows it and the focus moves on to the next unlinked identity."""
from __future__ import annotations

import os

import pytest

from fallbackkit.review import create_app
from fallbackkit.store.decisions import record_review

from review_helpers import PASSWORD, ServerThread, add_people, audit_rows, scan_blank_registration
from kit_helpers import census_kit
from test_review_browser import CHROMIUM

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="needs Debian's chromium: sudo apt-get install chromium")


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("identities-browser")
    kit = census_kit(tmp)
    add_people(kit)
    blanks = []
    patients = kit.db.conn.execute("SELECT mrn, last_name, first_name, birth_date, sex FROM patients"
                                   " WHERE sex IN ('M', 'F', 'male', 'female') ORDER BY mrn LIMIT 2").fetchall()
    for n, (mrn, last, first, birth, sex) in enumerate(patients):
        (tmp / f"b{n}").mkdir()
        blank = scan_blank_registration(kit, tmp / f"b{n}", sex="male" if sex[:1] == "M" else "female")
        # the clerk transcribed the handwriting: the census patient is suggested for this downtime MRN
        for name, value in (("last_name", last), ("first_name", first), ("birth_date", birth)):
            record_review(kit.db, blank["readings"][name], "transcribe", value, "clara")
        blanks.append((blank["downtime_mrn"], mrn))
    with ServerThread(create_app(kit.path)) as server:
        yield kit, server, blanks
    kit.close()


def test_the_link_answers_json_and_still_refuses_an_unconfirmed_mismatch(station):
    """The fetch path keeps the second step: a difference not confirmed is a 409 with the check card."""
    kit, server, _blanks = station
    app = create_app(kit.path)
    client = app.test_client()
    from test_review_app import csrf_of, login
    login(client, "clara")
    token = csrf_of(client)
    dt = _blanks[0][0]  # (runs before the browser test below links it)
    real = kit.db.conn.execute("SELECT mrn FROM patients ORDER BY mrn DESC LIMIT 1").fetchone()[0]
    resp = client.post("/identities/link", data={"downtime_mrn": dt, "real_mrn": real, "csrf_token": token},
                       headers={"Accept": "application/json"})
    assert resp.status_code == 409 and 'id="confirm"' in resp.get_json()["card"]
    assert kit.db.conn.execute("SELECT COUNT(*) FROM identity_links WHERE downtime_mrn = ?", [dt]).fetchone()[0] == 0
    part = client.get(f"/identities/check?downtime_mrn={dt}&real_mrn={real}&part=1").get_data(as_text=True)
    assert "<html" not in part and 'class="card identity-check"' in part  # the card alone, for the screen


def test_a_clerk_links_two_identities_by_keyboard_without_a_page_load(station):
    from playwright.sync_api import sync_playwright
    kit, server, blanks = station
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-quic"])
        page = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url).new_page()
        page.set_default_timeout(10_000)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        loads: list[str] = []
        page.goto("/login")
        page.fill("input[name=name]", "clara")
        page.fill("input[name=password]", PASSWORD)
        page.press("input[name=password]", "Enter")
        page.wait_for_url(lambda url: "/login" not in url)
        page.goto("/identities")
        page.on("load", lambda: loads.append(page.url))
        page.evaluate("window.__same_page = true")
        linked = []
        for _ in blanks:
            # the focus is on a suggestion of an unlinked identity: Enter opens its check under the row
            dt = page.evaluate("document.activeElement.closest('tr.unlinked form.suggestion')"
                               " && document.activeElement.closest('tr').dataset.mrn")
            assert dt in {b[0] for b in blanks} - set(linked)
            page.keyboard.press("Enter")
            page.wait_for_selector(f"tr[data-mrn='{dt}'] + tr.checkrow section.identity-check")
            if not linked:  # Esc closes the check, nothing linked, the focus back on its row; Enter again
                page.keyboard.press("Escape")
                assert page.locator("tr.checkrow").count() == 0
                assert page.evaluate("document.activeElement.closest('tr').dataset.mrn") == dt
                page.keyboard.press("Enter")
                page.wait_for_selector(f"tr[data-mrn='{dt}'] + tr.checkrow section.identity-check")
            if page.evaluate("document.activeElement.id") == "confirm":  # paper and census differ: tick
                page.keyboard.press("Space")
                page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "do-link"
            page.keyboard.press("Enter")
            page.wait_for_selector(f"tr.linked[data-mrn='{dt}']")
            assert page.locator("tr.checkrow").count() == 0
            assert page.locator(".flash.ok").inner_text().startswith(dt)
            linked.append(dt)
        assert page.evaluate("window.__same_page === true") and loads == []  # never reloaded
        # each row shows its link; the focus left the linked rows
        for dt, real in blanks:
            assert page.locator(f"tr[data-mrn='{dt}'] td").nth(1).inner_text() == real
        assert not page.evaluate("!!document.activeElement.closest('tr.linked')")
        browser.close()
    assert not problems, problems
    for dt, real in blanks:
        assert kit.db.conn.execute("SELECT real_mrn, actor FROM identity_links WHERE downtime_mrn = ?",
                                   [dt]).fetchall() == [(real, "clara")]
    assert {r["object"] for r in audit_rows(kit, "identity.link")} == {f"downtime_mrn:{dt}" for dt, _ in blanks}
