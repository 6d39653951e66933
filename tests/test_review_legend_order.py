"""The review queue hands a MAR's initials legend ("Nurses on this sheet") before that form's
initials slots (issue 10 item 6), so that the clerk types the legend once and every slot is then a
one-key pick. Real printed MAR, ink in the legend and slot boxes, scanned by the real pipeline."""
from __future__ import annotations

from fallbackkit.generate import print_patient, sheet_geometry
from fallbackkit.review import queue as q
from fallbackkit.review.initials import initials_help
from fallbackkit.scan.pipeline import list_readings, scan_paths
from fallbackkit.store.decisions import record_review

from kit_helpers import census_kit
from scan_engine_helpers import Sheets
from scan_pipeline_helpers import write_png

LEGEND = ["l1.initials", "l1.name", "l2.initials", "l2.name"]
DPI = 200


def _write(img, box_mm, text: str) -> None:
    """Handwriting the machine does not read, inside the box (page pixels at DPI)."""
    import cv2
    x, y, w, h = (v * DPI / 25.4 for v in box_mm)
    cv2.putText(img, text, (int(x + 0.15 * w), int(y + 0.8 * h)), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
                h / 40, 0, 2, cv2.LINE_AA)


def _mar(tmp_path):
    kit = census_kit(tmp_path)
    mrn = kit.db.execute("SELECT mrn FROM medications WHERE scheduled_times LIKE '%;%' ORDER BY mrn LIMIT 1").fetchone()[0]
    mar = print_patient(kit, "mar", mrn, tmp_path / "mar.pdf", actor="tester")
    names = {f["name"] for s in mar.sheets for f in sheet_geometry(kit, s["sheet_id"])["fields"]}
    row = next(f"m{k}" for k in range(1, 9) if f"m{k}.s2.initials" in names)
    slots = [f"{row}.s1.initials", f"{row}.s2.initials"]
    inbox = tmp_path / "in"
    inbox.mkdir()
    for k, (sid, img, geo) in enumerate(Sheets(kit, mar.out_path, DPI).pages()):
        img = img.copy()
        for f in geo["fields"]:
            if f["name"] in LEGEND + slots:
                _write(img, f["box_mm"], "JM")
        write_png(inbox / f"mar{k}.png", img, DPI)
    scan_paths(kit, [inbox], workers=0, progress=False)
    sheets = {s["sheet_id"] for s in mar.sheets}
    got = {r["field"]: r for r in list_readings(kit) if r["sheet_id"] in sheets}
    return kit, got, slots


def _order(kit, actor="clara", decide=True, skip=()):
    """The fields handed to one clerk, in order, deciding each one (or skipping those in skip)."""
    fields = {r: f for r, f in kit.db.execute("SELECT reading_id, field FROM readings")}
    seen, after = [], 0
    for _ in range(200):
        rid = q.claim_next(kit.db, actor, after, now=1000.0)
        if rid is None or (seen and fields[rid] == seen[0] and after):
            break
        if fields[rid] in seen and fields[rid] in skip:
            break
        seen.append(fields[rid])
        if decide and fields[rid] not in skip:
            text = "JM" if fields[rid].endswith("initials") else "Jan MAES"
            record_review(kit.db, rid, "transcribe", text, actor)
        after = rid
    return seen


def test_the_legend_of_a_mar_is_handed_before_its_initials_slots(tmp_path):
    kit, got, slots = _mar(tmp_path)
    ids = {f: got[f]["reading_id"] for f in LEGEND + slots}
    assert ids[slots[0]] < ids["l1.initials"], "the legend is printed after the slots: reading order alone puts it last"
    order = [f for f in _order(kit) if f in ids]
    assert order == LEGEND + slots, order
    # every slot then has the legend as one-key picks
    detail = q.reading_detail(kit.db, ids[slots[1]])
    assert [p["initials"] for p in initials_help(kit.db, {**detail, "review": None}, "clara")["picks"]] == ["JM", "JM"]
    kit.close()


def test_a_skipped_legend_row_does_not_hold_the_queue(tmp_path):
    kit, got, slots = _mar(tmp_path)
    order = [f for f in _order(kit, skip={"l1.name"}) if f in LEGEND + slots]
    # l1.name skipped (Esc): the other legend rows, then the slots; it is not handed again before each slot
    assert order == LEGEND + slots, order
    kit.close()


def test_the_legend_lookup_uses_indexes(tmp_path):
    kit, got, slots = _mar(tmp_path)
    for sql in (f"{q._FORM_READINGS} AND {q._LEGEND_SQL} AND rd.reading_id > ? AND {q.PENDING}"
                f" AND NOT {q.CLAIMED_BY_OTHER} ORDER BY rd.reading_id LIMIT 1",
                f"SELECT MIN(reading_id) FROM ({q._FORM_READINGS} AND {q._SLOT_SQL} AND {q.PENDING})",
                f"{q._FORM_READINGS} AND {q._SLOT_SQL} AND NOT ({q.undecided_sql('rd')}) LIMIT 1"):
        n = sql.count("?")
        plan = " ".join(r[-1] for r in kit.db.execute("EXPLAIN QUERY PLAN " + sql, [1] * n))
        assert "SCAN c" not in plan and "SCAN rd" not in plan, plan
    kit.close()


def test_in_the_station_the_legend_comes_first_and_each_slot_is_then_one_key(tmp_path):
    """A real browser: the clerk types the legend (it says why it comes first), then each slot is a
    single digit key picking a legend row; nothing is stored before the key."""
    import os

    import pytest
    from fallbackkit.review import create_app
    from fallbackkit.store.decisions import current_review
    from review_helpers import PASSWORD, ServerThread, add_people
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("needs Debian's chromium: sudo apt-get install chromium")
    from playwright.sync_api import sync_playwright
    kit, got, slots = _mar(tmp_path)
    wanted = {got[f]["reading_id"] for f in LEGEND + slots}
    for (rid,) in kit.db.execute("SELECT reading_id FROM readings WHERE status = 'review'").fetchall():
        if rid not in wanted:  # the rest of the sheet decided already: the queue holds legend and slots
            record_review(kit.db, rid, "illegible", None, "sam")
    add_people(kit)
    typed = {"l1.initials": "AD", "l1.name": "Anne DUPONT", "l2.initials": "JM", "l2.name": "Jan MAES"}
    shots = os.environ.get("FALLBACKKIT_SCREENSHOTS")
    with ServerThread(create_app(kit.path)) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        page = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url).new_page()
        page.set_default_timeout(10_000)
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto("/login")
        page.fill("input[name=name]", "clara")
        page.fill("input[name=password]", PASSWORD)
        page.press("input[name=password]", "Enter")
        page.wait_for_selector("#start")
        page.goto("/review")
        for name in LEGEND:
            rid = got[name]["reading_id"]
            page.wait_for_selector(f"section[data-reading='{rid}']")
            assert page.is_visible("#legend-note")
            if shots and name == "l1.initials":
                page.screenshot(path=os.path.join(shots, "legend-first.png"), full_page=True)
            page.keyboard.type(typed[name])
            page.keyboard.press("Enter")
        for slot, key in zip(slots, "21"):
            rid = got[slot]["reading_id"]
            page.wait_for_selector(f"section[data-reading='{rid}'] #initials-picks")
            assert page.locator("#initials-picks button.pick").count() == 2
            # the legend as just typed, its last row too (not as it was when the slot was fetched ahead)
            assert "JM — Jan MAES" in page.locator("#initials-picks button.pick").nth(1).inner_text()
            assert current_review(kit.db, rid) is None
            if shots and slot == slots[0]:
                page.screenshot(path=os.path.join(shots, "legend-slot-pick.png"), full_page=True)
            page.keyboard.press(key)  # one key: the legend row
            page.wait_for_selector(f"section[data-reading]:not([data-reading='{rid}']), #done:not([hidden])")
        page.wait_for_selector("#done:not([hidden])")
        browser.close()
    assert not problems, problems
    assert [current_review(kit.db, got[s]["reading_id"])["value"] for s in slots] == ["JM", "AD"]
    kit.close()
