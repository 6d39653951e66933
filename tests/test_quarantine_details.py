"""Issue 12.7: why a page was put aside is said in the reader's language, the detail too. Every
quarantine detail the scan writes is a code plus parameters (quarantine.detail_codes), beside the
English text kept for logs and exports (quarantine.detail); the station says it in the clerk's
language, `scan` and `quarantine list` in the kit's (setting `language`).

One kit gets a page put aside for each kind of reason, made the real way (printed, marked, scanned
by `fallbackkit scan`): no code at all, a QR code that is not ours, a page scanned mirrored, the back
of a duplex sheet with a note on it, a forged code, another kit's sheet, a sheet not in the
registry, two corner marks covered, and a page the reader fails on."""
from __future__ import annotations

import json
import re
from html import unescape
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fallbackkit import ids
from fallbackkit.cli import cli
from fallbackkit.generate import print_blank
from fallbackkit.payload import SheetPayload
from fallbackkit.review import create_app
from fallbackkit.review.i18n import DETAILS as SAID, detail_text, reason_text
from fallbackkit.scan import engine, reasons
from fallbackkit.store import init_kit, open_kit

from kit_helpers import census_kit
from review_helpers import PASSWORD, add_people, station_page
from scan_engine_helpers import DPI, Sheets, paint_qr, white_out
from test_scan_duplex import strong_show_through, threshold, write_a_note

CRASH_SHAPE = (1100, 780)  # the page the reader is made to fail on (an engine bug), told by its size

# the detail code each made-up page must get
EXPECTED = {"stray.png": ("no_code", "no_code_found"), "not-ours.png": ("no_code", "not_our_qr"),
            "mirrored.png": ("no_code", "scanned_mirrored"), "duplex.tif": ("no_code", "back_with_ink"),
            "forged.png": ("bad_signature", "signature_fails"), "foreign.png": ("foreign_kit", "other_kit"),
            "unknown.png": ("unknown_sheet", "not_registered"), "no-marks.png": ("no_marks", "marks_after_code"),
            "crash.png": ("unreadable", "reader_failed")}


def _pages(kit, tmp: Path) -> list[Path]:
    ours = Sheets(kit, print_blank(kit, "lab-request", 4, tmp / "ours.pdf", actor="tester").out_path)
    (sid, img, geom), (sid2, img2, _g2), (sid3, img3, geom3) = ours.pages()[:3]
    out = tmp / "in"
    out.mkdir()
    stray = np.full((1169, 827), 250, np.uint8)
    cv2.putText(stray, "a note, no sheet code", (60, 500), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 20, 4)
    cv2.imwrite(str(out / "stray.png"), stray)
    cv2.imwrite(str(out / "not-ours.png"), paint_qr(img, geom, "https://example.org/menu", DPI))
    cv2.imwrite(str(out / "mirrored.png"), np.ascontiguousarray(img[:, ::-1]))
    frames = [threshold(p) for p in (img2, write_a_note(strong_show_through(img2, seed=3), seed=3))]
    frames[0].save(out / "duplex.tif", compression="group4", save_all=True, append_images=frames[1:], dpi=(DPI, DPI))
    forged = SheetPayload(kit.kit_id, geom["template"], geom["version"], sid, 1, 1).encode(b"not the kit secret")
    cv2.imwrite(str(out / "forged.png"), paint_qr(img, geom, forged, DPI))
    other = init_kit(tmp / "other-kit", actor="tester")
    theirs = Sheets(other, print_blank(other, "lab-request", 1, tmp / "theirs.pdf", actor="tester").out_path)
    other.close()
    cv2.imwrite(str(out / "foreign.png"), theirs.images[0])
    unknown = SheetPayload(kit.kit_id, geom["template"], geom["version"], ids.new_sheet_id(), 1, 1).encode(kit.secret)
    cv2.imwrite(str(out / "unknown.png"), paint_qr(img, geom, unknown, DPI))
    covered = img3
    for corner in ("tl", "bl"):
        covered = white_out(covered, geom3["marks_mm"][corner], DPI, 3.0)
    cv2.imwrite(str(out / "no-marks.png"), covered)
    cv2.imwrite(str(out / "crash.png"), cv2.resize(img, CRASH_SHAPE[::-1]))
    return sorted(out.iterdir())


@pytest.fixture(scope="module")
def quarantined(tmp_path_factory):
    """The kit (language fr), what `fallbackkit scan` printed, and per file its quarantine row."""
    tmp = tmp_path_factory.mktemp("qdetail")
    kit = census_kit(tmp)
    add_people(kit)  # clara reads English, sam French
    files = _pages(kit, tmp)
    kit.close()
    runner = CliRunner()
    kit_dir = str(tmp / "kit")
    res = runner.invoke(cli, ["--kit", kit_dir, "settings", "set", "language", "fr"])
    assert res.exit_code == 0, res.output
    with sqlite3.connect(tmp / "kit" / "store.sqlite") as raw:  # the language is no form's business (m0071)
        assert raw.execute("SELECT COUNT(*) FROM summary_dirty WHERE form_id = '**'").fetchone()[0] == 0
    real = engine.read_page

    def failing(image, **kw):  # an engine bug on one page: the page is quarantined, never lost
        if image.shape == CRASH_SHAPE:
            raise RuntimeError("boom in the reader")
        return real(image, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "read_page", failing)
        scanned = runner.invoke(cli, ["--kit", kit_dir, "--quiet", "scan", "--workers", "0", *map(str, files)])
    assert scanned.exit_code == 0, scanned.output
    kit = open_kit(tmp / "kit")
    rows = kit.db.conn.execute(
        "SELECT f.first_path, c.page_index, q.quarantine_id, q.reason, q.detail, q.detail_codes FROM quarantine q"
        " JOIN captures c USING (capture_id) JOIN input_files f ON f.sha256 = c.file_sha256").fetchall()
    by_file = {Path(r[0]).name: {"page": r[1], "id": r[2], "reason": r[3], "detail": r[4],
                                 "codes": json.loads(r[5])} for r in rows}
    yield kit, scanned.output, by_file
    kit.close()


def test_every_kind_of_page_put_aside_has_a_detail_code_and_parameters(quarantined):
    kit, _, by_file = quarantined
    assert set(by_file) == set(EXPECTED), {k: (v["reason"], v["detail"]) for k, v in by_file.items()}
    for name, (reason, code) in EXPECTED.items():
        row = by_file[name]
        assert (row["reason"], row["codes"]["code"]) == (reason, code), (name, row["detail"])
        assert row["codes"] == reasons.parse_detail(row["detail"])  # the English text is kept beside it
    why = by_file["no-marks.png"]["codes"]["params"]["why"]  # why the marks were not found: a code too
    assert why["code"] in reasons.DETAILS and why["code"] != "other", why
    assert by_file["duplex.tif"]["page"] == 2 and by_file["duplex.tif"]["codes"]["params"]["page"] == "1"
    assert "boom in the reader" in by_file["crash.png"]["codes"]["params"]["error"]


def test_every_detail_code_is_a_sentence_in_each_language_and_round_trips():
    for code, english in reasons.DETAILS.items():
        names = re.findall(r"\{(\w+)\}", english)
        params = {n: {"mark": "tr", "marks": ["tl", "br"], "why": reasons.detail("fewer_marks")}.get(n, "X7")
                  for n in names}
        text = reasons.detail(code, **params)
        parsed = reasons.parse_detail(text)
        assert parsed["code"] == code, (code, text, parsed)
        for lang in ("en", "fr", "nl"):
            assert code in SAID[lang], (lang, code)
            assert set(re.findall(r"\{(\w+)\}", SAID[lang][code])) == set(names), (lang, code)
            said = detail_text(lang, parsed)
            assert "{" not in said and "'tl'" not in said and "'tr'" not in said, (lang, said)
        assert "en haut à droite" in detail_text("fr", parsed) or "mark" not in names
    assert detail_text("fr", reasons.parse_detail("an older wording")) == "an older wording"


def test_scan_and_quarantine_list_say_why_in_the_kits_language(quarantined):
    kit, output, by_file = quarantined
    assert f"quarantined pages ({len(EXPECTED)})" in output
    for name, row in by_file.items():
        line = next(ln for ln in output.splitlines() if ln.startswith(f"  page {row['id']}: "))
        assert name in line and reason_text("fr", row["reason"]) in line, line
        assert detail_text("fr", row["codes"]) in line and row["detail"] not in line, line
    assert "aucun code de feuille lisible sur la page" in output
    assert "quelque chose a été écrit au verso" in output
    listed = CliRunner().invoke(cli, ["--kit", str(kit.path), "quarantine", "list"])
    assert listed.exit_code == 0 and "la signature du code de la feuille est fausse" in listed.output
    as_json = json.loads(CliRunner().invoke(cli, ["--kit", str(kit.path), "quarantine", "list", "--json"]).output)
    assert {r["detail"] for r in as_json} == {r["detail"] for r in by_file.values()}  # English kept for scripts
    assert all(r["detail_codes"]["code"] != "other" for r in as_json)


def _strings(page) -> list[str]:
    """Every piece of text a person can see or hear on the page: text nodes, titles, alt texts,
    placeholders and button values."""
    return page.evaluate("""() => {
        const out = [];
        const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        while (walk.nextNode()) { const t = walk.currentNode.textContent.trim(); if (t) out.push(t); }
        for (const el of document.querySelectorAll('[title],[alt],[placeholder],[aria-label]'))
            for (const a of ['title', 'alt', 'placeholder', 'aria-label'])
                if (el.getAttribute(a)) out.push(el.getAttribute(a).trim());
        out.push(document.title);
        return out.filter(Boolean);
    }""")


# what may read the same in English and French: numbers (a file's page, a count) and the language buttons
DATA = re.compile(r"^(?:\d+|EN|FR|NL)$")


def test_the_station_says_each_detail_in_the_clerks_language_with_no_english_left(quarantined):
    kit, _, by_file = quarantined
    app = create_app(kit.path)
    seen: dict[str, list[str]] = {}
    for user in ("clara", "sam"):
        with station_page(app, None) as (page, problems):
            page.goto("/login")
            page.fill("input[name=name]", user)
            page.fill("input[name=password]", PASSWORD)
            page.press("input[name=password]", "Enter")
            page.wait_for_url(re.compile(r"/$|/dashboard"))
            page.goto("/quarantine")
            cards = page.locator("section.quarantine")
            assert cards.count() == len(EXPECTED)
            seen[user] = _strings(page)
            shown = {int(cards.nth(k).get_attribute("data-quarantine")): cards.nth(k).locator("p").first.inner_text()
                     for k in range(cards.count())}
            lang = "en" if user == "clara" else "fr"
            for row in by_file.values():
                assert detail_text(lang, row["codes"]) in shown[row["id"]], shown[row["id"]]
            if user == "sam":
                page.screenshot(path=str(Path(kit.path) / "quarantine-fr.png"), full_page=True)
                page.click("button.lang[value=nl]")
                page.goto("/quarantine")
                nl = page.locator("section.quarantine").first.inner_text()
                text = page.locator("main").inner_text()
                for row in by_file.values():
                    assert detail_text("nl", row["codes"]) in text
                assert nl and "de code is gelezen, maar de hoekmerken niet" in text
                assert "geen leesbare bladcode op de pagina" in text
            assert problems == []
    english = set(seen["clara"])
    left = sorted(s for s in set(seen["sam"]) & english if not DATA.match(s))
    assert left == [], json.dumps(left)  # every string of the French page is French (or data)
    fr = " ".join(seen["sam"])
    for row in by_file.values():
        assert row["detail"] not in fr  # no English detail text


def test_the_migration_fills_the_codes_of_pages_put_aside_before(tmp_path):
    """m0070: quarantine rows stored before the column get their codes from their English text."""
    from fallbackkit.store.migrations import m0070_quarantine_detail_codes as m
    kit = census_kit(tmp_path)
    from fallbackkit.scan.pipeline import scan_paths
    for k in range(3):
        stray = np.full((1169, 827), 250, np.uint8)
        cv2.putText(stray, f"note {k}, no sheet code", (60, 500), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 20, 4)
        Image.fromarray(stray).save(tmp_path / f"stray-{k}.png")
    scan_paths(kit, sorted(tmp_path.glob("stray-*.png")), workers=0, progress=False, actor="tester")
    older = [reasons.detail("marks_after_code", why=reasons.detail("marks_missing", marks=["tl", "bl"])),
             "an older wording"]
    with kit.db.conn:
        for qid, text in zip((2, 3), older):
            kit.db.conn.execute("UPDATE quarantine SET detail = ? WHERE quarantine_id = ?", [text, qid])
    kit.close()
    raw = sqlite3.connect(str(tmp_path / "kit" / "store.sqlite"))
    raw.execute("ALTER TABLE quarantine DROP COLUMN detail_codes")
    raw.execute("DELETE FROM _migrations WHERE name = ?", [m.__name__.rsplit(".", 1)[1]])
    raw.commit()
    raw.close()
    again = open_kit(tmp_path / "kit")
    try:
        got = [json.loads(c) for (c,) in again.db.conn.execute("SELECT detail_codes FROM quarantine ORDER BY 1")]
        assert {"code": "no_code_found", "params": {}} in got
        assert {"code": "marks_after_code", "params": {"why": {"code": "marks_missing",
                                                               "params": {"marks": "'tl', 'bl'"}}}} in got
        assert {"code": "other", "params": {"text": "an older wording"}} in got
        assert detail_text("nl", got[[g["code"] for g in got].index("marks_after_code")]) == (
            "de code is gelezen, maar de hoekmerken niet: hoekmerken linksboven en linksonder niet gevonden waar de"
            " code ze plaatst")
    finally:
        again.close()


def test_a_refused_identification_is_said_in_the_clerks_language(quarantined):
    """Identifying a page the station cannot read as that sheet (two corner marks covered), or typing
    a wrong sheet id: the station says why in the clerk's language, the detail too."""
    from fallbackkit import payload
    from test_review_app import csrf_of, login
    kit, _, by_file = quarantined
    row = by_file["no-marks.png"]
    code = kit.db.conn.execute("SELECT payload FROM quarantine WHERE quarantine_id = ?", [row["id"]]).fetchone()[0]
    sheet = payload.parse(code).sheet_id
    client = create_app(kit.path).test_client()
    login(client, "sam")
    client.post("/lang", data={"lang": "fr", "csrf_token": csrf_of(client)})  # (the station test left him in nl)
    for typed, want in ((sheet, "ne peut pas être lue comme feuille"), ("ABCD", "n'est pas un identifiant de feuille")):
        client.post(f"/quarantine/{row['id']}/assign", data={"sheet_id": typed, "csrf_token": csrf_of(client)})
        html = client.get("/quarantine").get_data(as_text=True)
        found = re.search(r'class="flash error"[^>]*>(.*?)</', html, re.S)
        flashed = unescape(found.group(1)) if found else ""
        assert want in flashed, html[:3000]
        assert "cannot" not in flashed and "sheet id" not in flashed, flashed
        if typed == sheet:
            assert "repères de coin introuvables" in flashed and "les carrés des coins sont introuvables" in flashed
    assert kit.db.conn.execute("SELECT COUNT(*) FROM quarantine_assignments").fetchone()[0] == 0


def test_the_report_says_why_each_page_was_put_aside_in_the_kits_language(quarantined, tmp_path):
    from fallbackkit.export.report import report_data, write_report
    kit, _, by_file = quarantined
    d = report_data(kit)
    assert {q["detail"] for q in d["quarantine"]} == {r["detail"] for r in by_file.values()}  # data: English kept
    write_report(kit, tmp_path / "report.html")
    html = unescape((tmp_path / "report.html").read_text())
    for row in by_file.values():
        assert detail_text("fr", row["codes"]) in html and reason_text("fr", row["reason"]) in html
    write_report(kit, tmp_path / "report.pdf")  # the PDF's table takes the same words (no crash on them)
    assert (tmp_path / "report.pdf").stat().st_size > 0
