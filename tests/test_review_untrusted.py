"""Forged and foreign pages are read in by a supervisor only, with a warning, and the audit says so.

Real pages: a blank lab request printed by the kit with a QR code re-made with another secret
(bad_signature), and one printed by another kit (foreign_kit), both scanned by the real pipeline.
"""
from __future__ import annotations

import re

import cv2
import pytest
from click.testing import CliRunner

from fallbackkit.cli import cli
from fallbackkit.generate import print_blank
from fallbackkit.payload import SheetPayload
from fallbackkit.review import create_app
from fallbackkit.scan.pipeline import scan_paths
from fallbackkit.store import init_kit

from kit_helpers import census_kit
from review_helpers import add_people, audit_rows
from scan_engine_helpers import DPI, Sheets, paint_qr
from test_review_app import csrf_of, login


@pytest.fixture(scope="module")
def untrusted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("untrusted")
    kit = census_kit(tmp)
    add_people(kit)
    ours = Sheets(kit, print_blank(kit, "lab-request", 2, tmp / "ours.pdf", actor="tester").out_path)
    (sid1, img1, geom1), (sid2, _img2, _g2) = ours.pages()[:2]
    forged = paint_qr(img1, geom1, SheetPayload(kit.kit_id, geom1["template"], geom1["version"], sid1, 1, 1)
                      .encode(b"not the kit secret"), DPI)
    other = init_kit(tmp / "other-kit", actor="tester")
    theirs = Sheets(other, print_blank(other, "lab-request", 1, tmp / "theirs.pdf", actor="tester").out_path)
    other.close()
    cv2.imwrite(str(tmp / "forged.png"), forged)
    cv2.imwrite(str(tmp / "foreign.png"), theirs.images[0])
    scan_paths(kit, [tmp / "forged.png", tmp / "foreign.png"], workers=1, progress=False)
    qids = dict(kit.db.conn.execute("SELECT reason, quarantine_id FROM quarantine").fetchall())
    assert set(qids) == {"bad_signature", "foreign_kit"}, kit.db.conn.execute("SELECT reason, detail FROM quarantine").fetchall()
    yield kit, qids, sid1, sid2
    kit.close()


def _assigned(kit, qid) -> int:
    return kit.db.conn.execute("SELECT COUNT(*) FROM quarantine_assignments WHERE quarantine_id = ?",
                               [qid]).fetchone()[0]


def test_a_clerk_cannot_read_a_forged_or_foreign_page_in(untrusted):
    kit, qids, sid1, sid2 = untrusted
    app = create_app(kit.path)
    clerk = app.test_client()
    login(clerk, "clara")
    html = clerk.get("/quarantine").get_data(as_text=True)
    assert "not signed by this kit (bad_signature)" in html and "belongs to another kit (foreign_kit)" in html
    assert html.count("Only a supervisor may identify this page.") == 2
    assert 'name="sheet_id"' not in html  # no Identify form for a clerk
    token = csrf_of(clerk)
    for reason, sid in (("bad_signature", sid1), ("foreign_kit", sid2)):
        resp = clerk.post(f"/quarantine/{qids[reason]}/assign", data={"sheet_id": sid, "csrf_token": token})
        assert resp.status_code == 302
        assert _assigned(kit, qids[reason]) == 0, reason
    assert "only a supervisor may read it in" in clerk.get("/quarantine").get_data(as_text=True)
    res = CliRunner().invoke(cli, ["--kit", str(kit.path), "--user", "clara", "quarantine", "assign",
                                   str(qids["bad_signature"]), sid1])
    assert res.exit_code == 4 and "only a supervisor" in res.output and _assigned(kit, qids["bad_signature"]) == 0
    res = CliRunner().invoke(cli, ["--kit", str(kit.path), "quarantine", "assign", "9" * 20, sid1])
    assert res.exit_code == 2 and "Traceback" not in res.output  # a page number no store id can be


def test_a_supervisor_reads_them_in_with_a_warning_and_the_audit_row_says_so(untrusted):
    kit, qids, sid1, sid2 = untrusted
    res = CliRunner().invoke(cli, ["--kit", str(kit.path), "--user", "sam", "--quiet", "quarantine", "assign",
                                   str(qids["bad_signature"]), sid1])
    assert res.exit_code == 0, res.output
    assert "warning: page" in res.output and "bad_signature" in res.output and "supervisor sam" in res.output
    app = create_app(kit.path)
    sup = app.test_client()
    login(sup, "sam")
    html = sup.get("/quarantine").get_data(as_text=True)
    assert "foreign_kit" in html and 'name="sheet_id"' in html  # warned, and the form is there
    resp = sup.post(f"/quarantine/{qids['foreign_kit']}/assign", data={"sheet_id": sid2, "csrf_token": csrf_of(sup)})
    assert resp.status_code == 302 and _assigned(kit, qids["foreign_kit"]) == 1
    assert re.search(r'class="flash warn"[^<]*foreign_kit', sup.get("/").get_data(as_text=True))
    rows = {r["object"]: r for r in audit_rows(kit, "quarantine.assign")}
    for reason in ("bad_signature", "foreign_kit"):
        row = rows[f"quarantine:{qids[reason]}"]
        assert row["actor"] == "sam" and row["after"]["quarantine_reason"] == reason
        assert row["after"]["supervisor_override"]
