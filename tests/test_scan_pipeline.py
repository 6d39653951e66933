"""The scan pipeline on real files: printed by the kit, rendered, written as scanners write them, scanned
into a real SQLite store. Nothing lost, nothing doubled, every bad file named."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fallbackkit.cli import cli
from fallbackkit.store import verify_audit
from fallbackkit.store.decisions import record_review
from fallbackkit.scan import engine
from fallbackkit.scan.pageview import page_image_png
from fallbackkit.scan.pipeline import format_summary, list_readings, scan_paths
from fault_injection import kill_worker_on_page, no_faults
from pdf_helpers import render_pages
from scan_pipeline_helpers import (white_out, write_bad_files, write_jpeg, write_png, write_scanner_pdf,
                                   write_tiff_g4)

BLANK = {"checkbox": False, "choice": None, "multichoice": []}


def _rows(kit, sql, params=()):
    return kit.db.conn.execute(sql, params).fetchall()


def _sheet_ids(print_result) -> list[str]:
    return [s["sheet_id"] for s in print_result.sheets]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def lab_pages(blank_lab):
    return render_pages(blank_lab.out_path, dpi=200)


def test_every_format_is_read_and_blank_sheets_read_blank(kit, blank_lab, lab_pages, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "tray2").mkdir(parents=True)
    shutil.copy(blank_lab.out_path, inbox / "vector.pdf")
    write_scanner_pdf(inbox / "scanner.pdf", lab_pages)
    write_tiff_g4(inbox / "tray2" / "office.tif", render_pages(blank_lab.out_path, dpi=300), dpi=300)
    write_png(inbox / "tray2" / "page2.png", lab_pages[1])
    write_jpeg(inbox / "phone.jpg", lab_pages[2], exif_orientation=6, colour=True)
    (inbox / ".hidden.png").write_bytes(b"not even an image: hidden files are skipped")

    summary = scan_paths(kit, [inbox], workers=2, progress=False, actor="clerk")

    assert summary.failed == []
    assert (summary.files_new, summary.files_failed) == (5, 0)
    assert (summary.pages_read, summary.pages_quarantined) == (11, 0)
    # the first capture of each sheet is the original; the 8 others are flagged as duplicates
    assert summary.pages_duplicate == 8 and len(summary.duplicates) == 8
    expected = _sheet_ids(blank_lab)
    by_file = {}
    for path, page_index, sheet_id, status in _rows(
            kit, "SELECT f.first_path, c.page_index, c.sheet_id, c.status FROM captures c"
                 " JOIN input_files f ON f.sha256 = c.file_sha256 ORDER BY c.page_index"):
        assert status == "read"
        by_file.setdefault(Path(path).name, []).append(sheet_id)
    assert by_file == {"vector.pdf": expected, "scanner.pdf": expected, "office.tif": expected,
                       "page2.png": [expected[1]], "phone.jpg": [expected[2]]}
    firsts = {sid: cid for cid, sid in _rows(kit, "SELECT MIN(capture_id), sheet_id FROM captures GROUP BY sheet_id")}
    for cid, sid, dup in _rows(kit, "SELECT capture_id, sheet_id, duplicate_of FROM captures"):
        assert dup == (None if cid == firsts[sid] else firsts[sid])

    # a blank sheet reads blank: nothing accepted as marked, no ink accepted anywhere
    readings = list_readings(kit)
    assert len(readings) > 30
    for r in readings:
        if r["status"] == "accepted":
            if r["type"] in BLANK:
                assert r["value"] == BLANK[r["type"]], r
            else:
                assert r["value"] is (False if r["type"] == "signature" else None) and r["ink"] is False, r

    # the originals are archived byte for byte, content-addressed; no page image is made by the scan:
    # each capture names where its image is cached once someone looks at it (scan/pageview.py)
    for sha, archive, status, pages in _rows(kit, "SELECT sha256, archive_path, status, pages FROM input_files"):
        assert status == "done"
        assert archive == f"archive/{sha[:2]}/{sha}{Path(archive).suffix}"
        assert _sha(kit.path / archive) == sha
    assert not list((kit.path / "pages").rglob("*.png"))
    for cid, sha, index, image in _rows(kit, "SELECT capture_id, file_sha256, page_index, image_path FROM captures"):
        assert image == f"pages/{sha[:2]}/{sha}-p{index}.png"
        assert len(page_image_png(kit.db.conn, kit.path, cid)) > 1000 and (kit.path / image).stat().st_size > 1000
    assert [a for (a,) in _rows(kit, "SELECT action FROM audit WHERE action = 'scan'")] == ["scan"]
    assert verify_audit(kit.db)[1] is None


def test_bad_files_are_named_and_the_batch_goes_on(kit, blank_lab, lab_pages, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good = write_png(inbox / "good.png", lab_pages[0])
    expected = write_bad_files(inbox / "bad", blank_lab.out_path, good)
    result = CliRunner().invoke(cli, ["--kit", str(kit.path), "--quiet", "scan", str(inbox), "--workers", "0"])
    assert result.exit_code == 1, result.output
    for name, phrase in expected.items():
        line = next((ln for ln in result.output.splitlines() if name in ln), None)
        assert line is not None and line.startswith("FAILED") and phrase in line, (name, result.output)
    assert "1 new" in result.output and f"{len(expected)} failed" in result.output
    assert _rows(kit, "SELECT sheet_id, status FROM captures") == [(_sheet_ids(blank_lab)[0], "read")]
    failed = dict(_rows(kit, "SELECT first_path, status FROM input_files WHERE status = 'failed'"))
    assert {Path(p).name for p in failed} == set(expected)
    sightings = _rows(kit, "SELECT path, outcome FROM input_sightings")
    assert len(sightings) == len(expected) + 1
    assert all(o.startswith("failed") for p, o in sightings if Path(p).name in expected)

    # the same batch again as JSON: the good file is already scanned, the bad ones fail again
    result = CliRunner().invoke(cli, ["--kit", str(kit.path), "--quiet", "scan", str(inbox), "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["files_already_scanned"] == 1 and summary["files_failed"] == len(expected)
    assert {Path(f["path"]).name for f in summary["failed"]} == set(expected)


def test_rescanning_is_a_no_op_and_copies_are_recognised(kit, blank_lab, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(blank_lab.out_path, inbox / "monday.pdf")
    shutil.copy(blank_lab.out_path, inbox / "monday-copy.pdf")  # same bytes, another name

    first = scan_paths(kit, [inbox], workers=0, progress=False)
    assert (first.files_new, first.files_already_scanned, first.pages_read) == (1, 1, 3)
    counts = [_rows(kit, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("captures", "readings")]

    # the parent folder holds the kit itself (whose archive must not be scanned again), the printed
    # PDF (same bytes as monday.pdf) and the census CSVs (not scans: named as failures)
    again = scan_paths(kit, [tmp_path], workers=0, progress=False)
    assert again.files_new == 0 and again.pages_read == 0
    assert again.files_already_scanned == 3
    assert sorted(Path(f["path"]).name for f in again.failed) == ["meds.csv", "patients.csv"]
    assert [_rows(kit, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("captures", "readings")] == counts[:2]
    sightings = _rows(kit, "SELECT path, outcome FROM input_sightings ORDER BY id")
    assert not [p for p, _ in sightings if Path(p).is_relative_to(kit.path)]
    outcomes = [o for _, o in sightings]
    assert outcomes[0] == "new" and outcomes[1].startswith("already scanned (same content as")
    assert outcomes.count("already scanned") == 3
    assert len(_rows(kit, "SELECT 1 FROM audit WHERE action = 'scan'")) == 2


def test_a_reader_crash_on_one_page_quarantines_that_page_only(kit, blank_lab, monkeypatch):
    real = engine.read_page
    calls = []

    def flaky(image, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise ZeroDivisionError("bug in the reader")
        return real(image, **kw)

    monkeypatch.setattr(engine, "read_page", flaky)
    summary = scan_paths(kit, [blank_lab.out_path], workers=0, progress=False)
    assert (summary.pages_read, summary.pages_quarantined, summary.files_failed) == (2, 1, 0)
    (reason, detail, status, image), = _rows(
        kit, "SELECT q.reason, q.detail, c.status, c.image_path FROM quarantine q JOIN captures c USING (capture_id)")
    assert (reason, status) == ("unreadable", "quarantined")
    assert "ZeroDivisionError: bug in the reader" in detail
    cid = _rows(kit, "SELECT capture_id FROM quarantine")[0][0]
    assert page_image_png(kit.db.conn, kit.path, cid)[:8] == b"\x89PNG\r\n\x1a\n" and (kit.path / image).exists()
    assert _rows(kit, "SELECT status FROM input_files") == [("done",)]


def test_killed_mid_batch_then_rerun_loses_and_doubles_nothing(kit, ward_pack, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(ward_pack.out_path, inbox / "ward-3B.pdf")
    printed = ward_pack.sheets
    total = len(printed) + 1  # + the pack's cover page
    cmd = [sys.executable, "-m", "fallbackkit", "--kit", str(kit.path), "--quiet", "scan", str(inbox),
           "--workers", "2"]
    log = tmp_path / "scan.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=err)
    db = sqlite3.connect(kit.path / "store.sqlite", timeout=30)
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        stored = db.execute("SELECT COUNT(*) FROM captures").fetchone()[0]
        if stored >= 5:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the scan finished before it could be killed: " + log.read_text()
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, as a power cut would
    proc.wait()
    killed_at = db.execute("SELECT COUNT(*) FROM captures").fetchone()[0]
    assert 5 <= killed_at < total
    assert db.execute("SELECT status FROM input_files").fetchall() == [("started",)]
    db.close()

    # another batch meanwhile: the summary points at the unfinished file
    other = CliRunner().invoke(cli, ["--kit", str(kit.path), "--quiet", "scan", str(ward_pack.out_path.parent / "census"),
                                     "--workers", "0"])
    assert "unfinished: " in other.output and "ward-3B.pdf" in other.output, other.output

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    db = sqlite3.connect(kit.path / "store.sqlite")
    pages = [p for (p,) in db.execute("SELECT page_index FROM captures ORDER BY page_index")]
    assert pages == list(range(1, total + 1))  # every page exactly once
    assert db.execute("SELECT status, pages FROM input_files WHERE first_path LIKE '%ward-3B.pdf'"
                      ).fetchall() == [("done", total)]
    sheets = {s for (s,) in db.execute("SELECT sheet_id FROM captures WHERE status = 'read'")}
    assert sheets == {s["sheet_id"] for s in printed}
    readings = db.execute("SELECT COUNT(*), COUNT(DISTINCT capture_id || ':' || field) FROM readings").fetchone()
    assert readings[0] == readings[1] > 0
    assert db.execute("SELECT outcome FROM input_sightings WHERE path LIKE '%ward-3B.pdf' ORDER BY id"
                      ).fetchall() == [("new",), ("resumed",)]
    db.close()


def test_quarantine_list_and_assign_by_printed_sheet_id(kit, blank_lab, lab_pages, tmp_path):
    geometry = json.loads(CliRunner().invoke(
        cli, ["--kit", str(kit.path), "sheets", "show", _sheet_ids(blank_lab)[1], "--json"]).stdout)
    torn = white_out(lab_pages[1], geometry["qr_mm"], dpi=200)
    write_png(tmp_path / "torn.png", torn)
    run = lambda *args: CliRunner().invoke(cli, ["--kit", str(kit.path), "--quiet", *args])  # noqa: E731

    result = run("scan", str(tmp_path / "torn.png"), "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "1 quarantined" in result.output
    listed = json.loads(run("quarantine", "list", "--json").stdout)
    assert [(q["reason"], q["page"], Path(q["file"]).name) for q in listed] == [("no_code", 1, "torn.png")]
    qid = listed[0]["quarantine_id"]
    assert str(qid) in run("quarantine", "list").stdout

    sheet_id = _sheet_ids(blank_lab)[1]
    wrong = sheet_id[:-1] + ("0" if sheet_id[-1] != "0" else "1")
    result = run("quarantine", "assign", str(qid), wrong)
    assert result.exit_code == 4 and "check character" in result.output, result.output
    result = run("quarantine", "assign", "999", sheet_id)
    assert result.exit_code == 5 and "no quarantined page 999" in result.output

    typed = f"{sheet_id[:4]}-{sheet_id[4:]}".lower()  # as a clerk types what is printed
    result = run("--user", "clerk1", "quarantine", "assign", str(qid), typed)
    assert result.exit_code == 0, result.output
    assert f"read as sheet {sheet_id}" in result.stdout
    (cid, source, status, sid), = _rows(kit, "SELECT capture_id, source, status, sheet_id FROM captures"
                                             " WHERE source = 'assigned'")
    assert (status, sid) == ("read", sheet_id)
    assert _rows(kit, "SELECT sheet_id, capture_id, actor FROM quarantine_assignments") == [(sheet_id, cid, "clerk1")]
    assert _rows(kit, "SELECT actor FROM audit WHERE action = 'quarantine.assign'") == [("clerk1",)]
    readings = json.loads(run("readings", "--json", "--sheet", sheet_id).stdout)
    assert readings and {r["sheet_id"] for r in readings} == {sheet_id}
    assert set(readings[0]) == {"sheet_id", "field", "type", "value", "status", "confidence", "reason", "ink",
                                "reviewed"}
    assert run("quarantine", "list", "--json").stdout.strip() == "[]"
    assert len(json.loads(run("quarantine", "list", "--all", "--json").stdout)) == 1

    result = run("quarantine", "assign", str(qid), sheet_id)
    assert result.exit_code == 6 and "already assigned" in result.output

    # a page with no corner marks at all (a cover letter) cannot be read as any sheet: refused, nothing
    # stored (a white page is not quarantined at all: it is counted with the blank pages)
    import cv2
    letter = np.full((2339, 1654), 250, np.uint8)
    for line in range(12):
        cv2.putText(letter, "Dear colleague, please find the forms", (150, 300 + 120 * line),
                    cv2.FONT_HERSHEY_SIMPLEX, 1.6, 20, 3)
    write_png(tmp_path / "letter.png", letter)
    assert run("scan", str(tmp_path / "letter.png"), "--workers", "0").exit_code == 0
    qid2 = json.loads(run("quarantine", "list", "--json").stdout)[0]["quarantine_id"]
    captures = _rows(kit, "SELECT COUNT(*) FROM captures")
    result = run("quarantine", "assign", str(qid2), _sheet_ids(blank_lab)[2])
    assert result.exit_code == 4 and "cannot be read as sheet" in result.output, result.output
    assert _rows(kit, "SELECT COUNT(*) FROM captures") == captures
    assert len(_rows(kit, "SELECT 1 FROM quarantine_assignments")) == 1


def test_readings_report_peoples_decisions(kit, blank_lab):
    scan_paths(kit, [blank_lab.out_path], workers=0, progress=False)
    sheet_id = _sheet_ids(blank_lab)[0]
    rows = list_readings(kit, sheet_id=sheet_id.lower())
    handwritten = next(r for r in rows if r["type"] in ("text", "number", "datetime"))
    assert handwritten["value"] is None and handwritten["reviewed"] is False
    record_review(kit.db, handwritten["reading_id"], "transcribe", "42", "clerk1")
    after = {r["field"]: r for r in list_readings(kit, sheet_id=sheet_id)}[handwritten["field"]]
    assert (after["value"], after["status"], after["reviewed"]) == ("42", "accepted", True)
    assert all(r["status"] == "review" for r in list_readings(kit, status="review"))
    accepted = list_readings(kit, status="accepted")
    assert handwritten["field"] in {r["field"] for r in accepted if r["sheet_id"] == sheet_id}


def _check_against_truth(kit, sha: str, page_index: int, truth_page: dict, where: str,
                         thresholded: bool = False) -> int:
    """Every accepted value of this capture equals the truth; returns how many were compared.

    thresholded: the page was made black and white by the test, which can erase a faint mark from
    the paper itself; such fields are not compared (the reader never saw the mark)."""
    row = _rows(kit, "SELECT capture_id, status, sheet_id FROM captures WHERE file_sha256 = ? AND page_index = ?"
                     " AND source = 'scan'", [sha, page_index])
    assert row, f"{where}: page not stored"
    capture_id, status, sheet_id = row[0]
    assert (status, sheet_id) == ("read", truth_page["sheet_id"]), where
    compared = 0
    for field, ftype, value, rstatus, ink in _rows(
            kit, "SELECT field, type, value, status, ink FROM readings WHERE capture_id = ?", [capture_id]):
        truth = truth_page["fields"].get(field)
        if truth is None:
            continue
        styles = truth.get("style")
        if thresholded and "faint" in (styles if isinstance(styles, list) else [styles]):
            continue
        if ftype in BLANK:
            if rstatus == "accepted":
                got = None if value is None else json.loads(value)
                assert got == truth["value"], f"{where} {field}: read {value}, truth {truth}"
                compared += 1
        else:
            if truth["ink"] and ftype == "signature":  # signed, or a person looks; never "not signed"
                assert ink == 1 and (rstatus == "review" or value == "true"), f"{where} {field}: {value}"
            elif truth["ink"]:  # a field with ink is never accepted as blank
                assert rstatus == "review" and ink == 1, f"{where} {field}: ink not sent to review"
            elif rstatus == "accepted":
                assert ink == 0 and value == ("false" if ftype == "signature" else None), f"{where} {field}"
                compared += 1
    return compared


def test_simulated_fills_in_every_format_read_as_the_truth(kit, tmp_path):
    """Printed MARs and lab requests, filled with pen marks and damaged by `simulate`, written in
    every format: every page identified, every accepted value equal to the truth."""
    from fallbackkit.generate import print_blank
    from fallbackkit.scan.ingest import iter_pages
    from fallbackkit.scan.simulate import simulate
    sets = [(print_blank(kit, "mar", 2, tmp_path / "mar.pdf", actor="t").out_path, "mixed", 5),
            (print_blank(kit, "lab-request", 2, tmp_path / "lab.pdf", actor="t").out_path, "office", 6)]
    inbox = tmp_path / "inbox"
    truths = []
    for pdf, tier, seed in sets:
        out = inbox / pdf.stem
        simulate(kit, pdf, out, seed=seed, tier=tier)
        truths.append((out, json.loads((out / "truth.json").read_text())))
    (inbox / "mar" / "truth.json").rename(tmp_path / "mar-truth.json")
    (inbox / "lab" / "truth.json").rename(tmp_path / "lab-truth.json")

    # the same simulated pages again, as a scanner PDF, a G4 TIFF and phone JPEGs turned by EXIF
    repacked = tmp_path / "repacked"
    repacked.mkdir()
    pages, truth_pages = [], []
    for out, truth in truths:
        for f in truth["files"]:
            for page, t in zip(iter_pages(out / f["file"]), f["pages"]):
                pages.append(page.image)
                truth_pages.append(t)
    write_scanner_pdf(repacked / "all.pdf", pages)
    clean = [i for i, t in enumerate(truth_pages) if t["tier"] in ("clean", "office")]
    write_tiff_g4(repacked / "clean.tif", [pages[i] for i in clean], dpi=200)
    for n, i in enumerate(clean[:2]):
        write_jpeg(repacked / f"phone{n}.jpg", pages[i], exif_orientation=(6, 8)[n])

    summary = scan_paths(kit, [inbox, repacked], workers=2, progress=False)
    assert summary.failed == [] and summary.pages_quarantined == 0

    compared = 0
    for out, truth in truths:
        for f in truth["files"]:
            sha = _sha(out / f["file"])
            for t in f["pages"]:
                compared += _check_against_truth(kit, sha, t["page"], t, f"{f['file']} p{t['page']}",
                                                 thresholded=t.get("bilevel", False))
    sha = _sha(repacked / "all.pdf")
    for k, t in enumerate(truth_pages):
        compared += _check_against_truth(kit, sha, k + 1, t, f"all.pdf p{k + 1}")
    sha = _sha(repacked / "clean.tif")
    for k, i in enumerate(clean):
        t = truth_pages[i]
        compared += _check_against_truth(kit, sha, k + 1, t, f"clean.tif p{k + 1}", thresholded=True)
    for n, i in enumerate(clean[:2]):
        compared += _check_against_truth(kit, _sha(repacked / f"phone{n}.jpg"), 1, truth_pages[i], f"phone{n}.jpg")
    assert compared > 200


@pytest.mark.parametrize("deaths", [1, 3])
def test_a_worker_dying_costs_a_retry_and_twice_fails_only_that_page(kit, blank_lab, tmp_path, monkeypatch, deaths):
    """Page 2 kills its worker `deaths` times: once in the batch (its neighbours in flight die with it),
    then, read alone, again and again. One death costs a retry; a page that kills a worker twice on
    its own fails, and only that page."""
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    for i in range(deaths):
        (tokens / f"t{i}").touch()
    kill_worker_on_page(monkeypatch, 2, tokens)
    summary = scan_paths(kit, [blank_lab.out_path], workers=2, progress=False)
    assert list(tokens.iterdir()) == []  # the worker really died that many times
    pages = [p for (p,) in _rows(kit, "SELECT page_index FROM captures ORDER BY page_index")]
    if deaths == 1:
        assert summary.failed == [] and pages == [1, 2, 3]
        assert _rows(kit, "SELECT status FROM input_files") == [("done",)]
    else:
        assert pages == [1, 3]
        (failure,) = summary.failed
        assert "page 2 made the reader process crash twice" in failure["error"]
        assert str(blank_lab.out_path) in failure["error"]
        assert _rows(kit, "SELECT status FROM input_files") == [("failed",)]
        no_faults(monkeypatch)
        again = scan_paths(kit, [blank_lab.out_path], workers=2, progress=False)  # the page is read now
        assert again.failed == [] and again.pages_read == 1 and again.pages_skipped == 2
        assert _rows(kit, "SELECT status FROM input_files") == [("done",)]


def test_two_clerks_scanning_the_same_file_at_once_store_each_page_once(kit, ward_pack, tmp_path):
    cmd = [sys.executable, "-m", "fallbackkit", "--kit", str(kit.path), "--quiet", "scan",
           str(ward_pack.out_path), "--workers", "0"]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = []
    for log in logs:
        with open(log, "wb") as err:
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err))
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [log.read_text() for log in logs]
    pages = [p for (p,) in _rows(kit, "SELECT page_index FROM captures ORDER BY page_index")]
    assert pages == list(range(1, len(ward_pack.sheets) + 2))
    assert _rows(kit, "SELECT status FROM input_files") == [("done",)]
    dup = _rows(kit, "SELECT COUNT(*) - COUNT(DISTINCT capture_id || ':' || field) FROM readings")
    assert dup == [(0,)]


def _show_through(front: np.ndarray, strength: float, seed: int) -> np.ndarray:
    """The back of a printed, filled sheet on a duplex scan: its front seen through the paper,
    mirrored, faint and blurred, on slightly grey paper."""
    import cv2
    back = 255.0 - (255.0 - np.fliplr(front).astype(np.float32)) * strength
    back = cv2.GaussianBlur(back, (0, 0), 1.5) * 0.97
    back += np.random.default_rng(seed).normal(0, 2.5, back.shape)
    return np.clip(back, 0, 255).astype(np.uint8)


def test_duplex_batch_blank_and_show_through_backs_are_counted_not_quarantined(kit, ward_pack, tmp_path):
    """A duplex TIFF: every front read, every back (blank, or the front showing through, its code
    readable mirrored) counted as a blank page, nothing in quarantine, no back matched to a sheet.
    A back with something written on it is never counted blank: a person looks at it."""
    from PIL import Image
    from fallbackkit.scan.simulate import fill_page
    from fallbackkit.generate import sheet_geometry
    fronts = render_pages(ward_pack.out_path, dpi=200)[1:7]  # after the cover page
    rng = np.random.default_rng(4)
    pages, expected = [], []
    for i, front in enumerate(fronts):
        sp = engine.read_page(front, kit_id=kit.kit_id, secret=kit.secret,
                              geometry_for=lambda s: sheet_geometry(kit, s))
        filled, _ = fill_page(front, sheet_geometry(kit, sp.sheet_id), 200, rng)
        expected.append(sp.sheet_id)
        back = np.full(front.shape, 246, np.uint8) if i % 3 == 0 else _show_through(filled, (0.12, 0.3, 0.45)[i % 3], i)
        pages += [filled, back]
    inbox = tmp_path / "duplex"
    inbox.mkdir()
    frames = [Image.fromarray(p) for p in pages]
    frames[0].save(inbox / "duplex.tif", compression="tiff_lzw", save_all=True, append_images=frames[1:], dpi=(200, 200))
    written_on = _show_through(pages[0], 0.3, 99)
    import cv2
    cv2.putText(written_on, "allergic: penicillin", (300, 1400), cv2.FONT_HERSHEY_SIMPLEX, 2.0, 30, 5)
    write_png(inbox / "back-with-a-note.png", written_on)

    summary = scan_paths(kit, [inbox], workers=0, progress=False, actor="clerk")

    assert (summary.pages_read, summary.pages_blank, summary.pages_quarantined) == (6, 6, 1)
    assert summary.quarantined[0]["reason"] == "no_code" and "back-with-a-note" in summary.quarantined[0]["path"]
    rows = _rows(kit, "SELECT c.page_index, c.status, c.sheet_id, c.quality FROM captures c JOIN input_files f"
                      " ON f.sha256 = c.file_sha256 WHERE f.first_path LIKE '%duplex.tif' ORDER BY c.page_index")
    assert [r[1] for r in rows] == ["read", "blank"] * 6
    assert [r[2] for r in rows[::2]] == expected
    assert all(r[2] is None for r in rows[1::2])  # a back is never matched to its front's sheet
    seen_through = [json.loads(r[3]).get("show_through", {}).get("sheet_seen_through") for r in rows[1::2]]
    assert [s for s in seen_through if s] == [e for i, e in enumerate(expected) if i % 3 and i % 3 != 0]
    assert summary.pages_duplicate == 0
    assert "blank pages  6" in format_summary(summary)
    assert _rows(kit, "SELECT COUNT(*) FROM readings r JOIN captures c ON c.capture_id = r.capture_id"
                      " WHERE c.status = 'blank'")[0][0] == 0


@pytest.mark.parametrize("compression", ["group3", "group4"])
def test_fax_tiff_204_by_98_dpi_is_read_like_a_200_dpi_page(kit, blank_lab, tmp_path, compression):
    """A standard-mode fax: 204 dpi across, 98 dpi down, CCITT G3 or G4. Resampled to square pixels
    from its resolution tags, it is read like a 200 dpi scan: every page identified, every accepted
    value the truth."""
    import cv2
    from PIL import Image
    from fallbackkit.generate import sheet_geometry
    from fallbackkit.scan.simulate import fill_page
    rng = np.random.default_rng(12)
    frames, truths = [], []
    for img in render_pages(blank_lab.out_path, dpi=204):
        sid = engine.read_page(img, kit_id=kit.kit_id, secret=kit.secret,
                               geometry_for=lambda s: sheet_geometry(kit, s)).sheet_id
        filled, truth = fill_page(img, sheet_geometry(kit, sid), 204, rng, hard_cases=0, two_marks=0)
        truths.append((sid, truth))
        h, w = filled.shape
        fax = cv2.resize(filled, (w, round(h * 98 / 204)), interpolation=cv2.INTER_AREA)
        frames.append(Image.fromarray(np.where(fax > 170, 255, 0).astype(np.uint8)).convert("1"))
    path = tmp_path / f"fax-{compression}.tif"
    frames[0].save(path, compression=compression, save_all=True, append_images=frames[1:], dpi=(204, 98))

    summary = scan_paths(kit, [path], workers=0, progress=False)

    assert (summary.pages_read, summary.pages_quarantined) == (len(frames), 0), summary.quarantined
    rows = _rows(kit, "SELECT capture_id, sheet_id, dpi, fit_error_mm FROM captures ORDER BY page_index")
    assert [r[1] for r in rows] == [sid for sid, _ in truths]
    for (cid, sid, dpi, fit), (_, truth) in zip(rows, truths):
        assert abs(dpi - 204) < 6 and fit < 1.0
        for field, status, value, ink in _rows(kit, "SELECT field, status, value, ink FROM readings"
                                                    " WHERE capture_id = ?", [cid]):
            t = truth[field]
            if status == "accepted":
                if "ink" in t:
                    assert not t["ink"], field
                else:
                    assert (None if value is None else json.loads(value)) == t["value"], (field, value, t)


def test_review_crops_are_cut_on_demand_from_the_archived_original(kit, blank_lab, lab_pages, tmp_path):
    """Scanning writes no crop files but the inked comb fields'; the station's crop of a field is cut from the archived
    original with the stored transform, framed as the engine framed it (150 dpi)."""
    import cv2
    from fallbackkit.generate import sheet_geometry
    from fallbackkit.scan.crops import field_crop_png
    from fallbackkit.scan.simulate import fill_page
    rng = np.random.default_rng(3)
    sid = engine.read_page(lab_pages[0], kit_id=kit.kit_id, secret=kit.secret,
                           geometry_for=lambda s: sheet_geometry(kit, s)).sheet_id
    geom = sheet_geometry(kit, sid)
    filled, truth = fill_page(lab_pages[0], geom, 200, rng, writing=1.0)
    write_jpeg(tmp_path / "in.jpg", filled)
    scan_paths(kit, [tmp_path / "in.jpg"], workers=0, progress=False)
    every = _rows(kit, "SELECT reading_id, field, type, crop_path, ink FROM readings")
    # only inked signatures keep a crop file (read as signed, nobody types them: the crop is what is
    # kept of the signature); comb fields are cut from the original for learning too (learn.py)
    assert every and all((r[3] is not None) == (r[2] == "signature" and bool(r[4])) for r in every)
    assert any(r[2] == "signature" and r[3] for r in every)
    assert len(list((kit.path / "crops").rglob("*.png"))) == sum(r[3] is not None for r in every)
    rows = _rows(kit, "SELECT reading_id, field, type, crop_path, ink FROM readings WHERE status = 'review'")
    expected = engine.read_page(cv2.imread(str(tmp_path / "in.jpg"), cv2.IMREAD_GRAYSCALE), kit_id=kit.kit_id,
                                secret=kit.secret, geometry_for=lambda s: geom)
    for rid, name, type_, _, _ in rows:
        png = field_crop_png(kit.db.conn, kit.path, rid)
        crop = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
        want = next(r.crop for r in expected.readings if r.field == name)
        assert crop.shape == want.shape, name
        assert np.abs(crop.astype(int) - want.astype(int)).mean() < 3, name


def test_the_stored_page_image_shows_white_paper_and_keeps_faint_ink():
    """The page image kept for people: the paper's grain is flattened to white (it is most of what
    a PNG of an office scan has to encode), print and faint pencil stay as they were, within a step."""
    import cv2
    from fallbackkit.scan.page_task import PNG_PARAMS, viewing_copy
    rng = np.random.default_rng(3)
    page = np.clip(rng.normal(238, 4, (1169, 827)), 0, 255).astype(np.uint8)  # office paper grain
    for y in range(100, 1100, 25):                  # a form's printed lines
        page[y:y + 3, 60:760] = 20
    page[200:204, 100:700] = 20
    page[400:403, 100:400] = 238 - 0.18 * 218       # faint pencil: 18 % of the ink's contrast
    page[601:624, 100:700] = 205                    # a light grey printed band
    shown = viewing_copy(page)
    paper = np.ones(page.shape, bool)
    for y in range(100, 1100, 25):
        paper[y - 2:y + 5] = False
    paper[380:420], paper[590:650] = False, False
    assert (shown[paper] == 255).mean() > 0.995  # paper: white
    assert abs(int(shown[202, 300]) - 20) <= 2 and abs(int(shown[401, 200]) - int(page[401, 200])) <= 2
    assert abs(int(shown[610, 300]) - 205) <= 2
    assert len(cv2.imencode(".png", shown, PNG_PARAMS)[1]) < len(cv2.imencode(".png", page, PNG_PARAMS)[1]) / 3


def test_page_and_crop_pngs_hold_exactly_the_pixels_given(monkeypatch):
    """The page image and crops are written by fallbackkit's own PNG encoder (zlib-ng's deflate):
    any viewer (libpng through OpenCV, Pillow) reads back exactly the pixels, for any size, a view
    of a bigger image included, and the files stay as small as OpenCV's with the same settings."""
    import io

    import cv2
    from PIL import Image

    from fallbackkit.scan.page_task import PNG_PARAMS, encode_png, viewing_copy
    rng = np.random.default_rng(7)
    page = np.clip(rng.normal(238, 4, (1169, 827)), 0, 255).astype(np.uint8)
    page[100:1100:25, 60:760] = 20
    shown = viewing_copy(page)
    images = [shown, shown[10:500:2, 3:700], rng.integers(0, 256, (1, 1), np.uint8),
              rng.integers(0, 256, (37, 3), np.uint8), np.full((5, 9), 255, np.uint8)]
    for image in images:
        data = encode_png(image)
        assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), image)
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == "L" and np.array_equal(np.asarray(im), image)
    assert len(encode_png(shown)) <= 1.05 * len(cv2.imencode(".png", shown, PNG_PARAMS)[1])
    colour = rng.integers(0, 256, (6, 4, 3), np.uint8)  # not a grey page: OpenCV's encoder
    assert np.array_equal(cv2.imdecode(np.frombuffer(encode_png(colour), np.uint8), cv2.IMREAD_UNCHANGED), colour)
    import zlib

    from fallbackkit.scan import page_task
    monkeypatch.setattr(page_task, "_deflate", zlib)  # zlib-ng missing: stdlib zlib, the same pixels
    assert np.array_equal(cv2.imdecode(np.frombuffer(encode_png(shown), np.uint8), cv2.IMREAD_UNCHANGED), shown)
