"""Two clerks in real browsers (Chromium) on one station: each screen shows a different reading, and
what one clerk has on screen or loaded next is never shown to the other (static/app.js keep=)."""
from __future__ import annotations

import os

import pytest

from fallbackkit.generate import print_ward
from fallbackkit.review import create_app
from fallbackkit.review import users as u

from kit_helpers import census_kit
from review_helpers import PASSWORD, ServerThread, seed_queue
from test_review_browser import CHROMIUM

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="needs Debian's chromium: sudo apt-get install chromium")


def test_two_clerks_in_browsers_are_shown_different_readings(tmp_path):
    from playwright.sync_api import sync_playwright
    kit = census_kit(tmp_path, {"3B": 2})
    print_ward(kit, "3B", tmp_path / "ward.pdf", actor="tester")
    for name in ("clara", "bob"):
        u.add_user(kit.db, name, "clerk", PASSWORD, "tester")
    seed_queue(kit, 8)
    with ServerThread(create_app(kit.path)) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-sync"])
        problems: list[str] = []
        pages = {}
        for name in ("clara", "bob"):
            pg = browser.new_context(base_url=server.url).new_page()
            pg.set_default_timeout(10_000)
            pg.on("pageerror", lambda e: problems.append(str(e)))
            pg.goto("/login")
            pg.fill("input[name=name]", name)
            pg.fill("input[name=password]", PASSWORD)
            pg.press("input[name=password]", "Enter")
            pg.wait_for_selector("#start")
            pg.goto("/review")
            pg.wait_for_selector("section[data-reading]")
            pages[name] = pg
        seen = {"clara": set(), "bob": set()}

        def on_screen(name: str) -> int:
            return int(pages[name].get_attribute("section[data-reading]", "data-reading"))

        def held(name: str) -> set[int]:
            return {r[0] for r in kit.db.conn.execute("SELECT reading_id FROM review_claims WHERE actor = ?", [name])}

        for _ in range(3):
            for name, other in (("clara", "bob"), ("bob", "clara")):
                rid = on_screen(name)
                assert rid not in held(other), (name, rid)
                seen[name].add(rid)
                pages[name].keyboard.press("1")  # decide: the next reading appears
                pages[name].wait_for_selector(f"section[data-reading]:not([data-reading='{rid}']), #done:not([hidden])")
        assert not seen["clara"] & seen["bob"]
        decided = kit.db.conn.execute("SELECT actor, COUNT(*) FROM reviews GROUP BY actor ORDER BY actor").fetchall()
        assert decided == [("bob", 3), ("clara", 3)]  # no 409 on the way: nobody worked the same item
        assert not problems, problems
        browser.close()
    kit.close()
