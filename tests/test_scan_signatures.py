"""Fields that need no typing (issue 10 item 6): a signature is read as signed / not signed from its
ink, on real printed sheets, and the template's `transcribe:` setting decides how other handwriting
is read. Doubt (faint ink, a covered box) still goes to a person."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fallbackkit.generate import print_blank
from fallbackkit.reconcile.worklist import _value
from fallbackkit.reconcile.state import Val
from fallbackkit.review.queue import list_queue
from fallbackkit.scan import read
from fallbackkit.scan.marks import Pen
from fallbackkit.scan.pipeline import scan_paths
from fallbackkit.store.kit import SHIPPED_TEMPLATES

from scan_engine_helpers import DPI, Sheets, field, reading, white_out, write

SIGNATURE = "clinician_signature"


@pytest.fixture
def lab(kit, blank_lab):
    return Sheets(kit, blank_lab.out_path)


def _page_with(sheets: Sheets, name: str):
    return next((s, img, g) for s, img, g in sheets.pages() if any(f["name"] == name for f in g["fields"]))


def test_signed_and_unsigned_signature_boxes_are_read_without_a_person(lab):
    sheet_id, img, geom = _page_with(lab, SIGNATURE)
    sig = field(geom, SIGNATURE)
    assert "transcribe" not in sig  # the type's default (ink-only): the geometry stays as it was
    unsigned = reading(lab.read(img), SIGNATURE)
    assert (unsigned.value, unsigned.status, unsigned.ink, unsigned.reason) == (False, "accepted", False, None)
    signed = reading(lab.read(write(img, DPI, [sig], seed=2, pen=Pen(0.45, 20))), SIGNATURE)
    assert (signed.value, signed.status, signed.ink) == (True, "accepted", True)
    assert signed.crop is not None and signed.crop.ndim == 2 and (signed.crop < 128).any()  # the ink is in it
    # re-deciding the stored raw measures gives the same reading
    assert read.decide(signed.raw, "signature")[:3] == (True, signed.confidence, "accepted")
    # consumers read the same thing: the worklist's value of a signature is whether it is signed
    for r, want in ((signed, True), (unsigned, False)):
        v = Val.of(1, "signature", r.value, r.value, True, int(r.ink), r.status, r.reason, "machine")
        assert _value(v) is want and v.present is want


def test_faint_or_covered_signature_goes_to_review(lab):
    sheet_id, img, geom = _page_with(lab, SIGNATURE)
    sig = field(geom, SIGNATURE)
    faint = reading(lab.read(write(img, DPI, [sig], seed=3, pen=Pen(0.3, 178))), SIGNATURE)
    assert (faint.status, faint.value) == ("review", None), faint.raw
    assert "faint" in faint.reason
    covered = reading(lab.read(white_out(write(img, DPI, [sig], seed=4), sig["box_mm"], DPI, 1.0)), SIGNATURE)
    assert covered.status == "review" and read.COVERED in covered.reason
    # a trace too small to be a signature (one inked tile) is not "signed"
    raw = {"tiles": 40, "tiles_inked": 1, "max_tile": 0.2, "max_light_tile": 0.2}
    assert read.decide(raw, "signature")[2] == "review"


def test_transcribe_setting_in_a_template_copy(kit, tmp_path: Path):
    """diagnosis set to ink-only and other_tests to no in a copy of the lab request: written in,
    scanned through the pipeline into the store, neither is in the review queue; a text field left
    at yes is still to transcribe."""
    text = (SHIPPED_TEMPLATES / "lab-request.yaml").read_text(encoding="utf-8")
    text = text.replace("- {name: diagnosis, type: text,", "- {name: diagnosis, type: text, transcribe: ink-only,")
    text = text.replace("- {name: other_tests, type: text,", "- {name: other_tests, type: text, transcribe: no,")
    assert "diagnosis, type: text, transcribe: ink-only," in text and "other_tests, type: text, transcribe: no," in text
    (kit.templates_dir / "lab-request.yaml").write_text(text, encoding="utf-8")
    printed = print_blank(kit, "lab-request", 1, tmp_path / "lab.pdf", actor="tester")
    sheets = Sheets(kit, printed.out_path)
    files = []
    for i, (sheet_id, img, geom) in enumerate(sheets.pages()):
        names = {f["name"] for f in geom["fields"]}
        if "diagnosis" in names:
            assert field(geom, "diagnosis")["transcribe"] == "ink-only"
            assert field(geom, "other_tests")["transcribe"] == "no"
            result = sheets.read(write(img, DPI, [field(geom, n) for n in ("diagnosis", "other_tests")], seed=7))
            d, o = reading(result, "diagnosis"), reading(result, "other_tests")
            assert (d.value, d.status, d.ink) == (True, "accepted", True)
            assert (o.value, o.status, o.ink, o.reason) == (None, "accepted", True, read.english("image_only"))
            img = write(img, DPI, [field(geom, n) for n in ("diagnosis", "other_tests", "ordering_clinician")],
                        seed=7)
        files.append(tmp_path / f"page-{i}.png")
        cv2.imwrite(str(files[-1]), img)
    scan_paths(kit, files, workers=1, progress=False)
    conn = kit.db.conn
    rows = {name: (status, value, crop) for name, status, value, crop in conn.execute(
        "SELECT field, status, value, crop_path FROM readings WHERE field IN"
        " ('diagnosis', 'other_tests', 'ordering_clinician')")}
    assert rows["diagnosis"][:2] == ("accepted", "true") and rows["diagnosis"][2]
    assert rows["other_tests"][:2] == ("accepted", None) and rows["other_tests"][2]  # the image is kept
    assert rows["ordering_clinician"][0] == "review"  # transcribe: yes (the default), as before
    queued = {item["field"] for item in list_queue(conn)}
    assert "ordering_clinician" in queued and not queued & {"diagnosis", "other_tests"}


def test_transcribe_yes_and_old_readings_unchanged():
    inked = {"tiles": 40, "tiles_inked": 6, "max_tile": 0.3, "max_light_tile": 0.3}
    assert read.decide(inked, "text") == (None, 0.9, "review", "to transcribe")
    assert read.decide({**inked, "transcribe": "yes"}, "signature")[2:] == ("review", "to transcribe")
    assert read.decide({**inked, "transcribe": "ink-only"}, "initials")[:3] == (True, 0.9, "accepted")
    assert read.decide({**inked, "transcribe": "no"}, "text")[:3] == (None, 0.95, "accepted")
    blank = {"tiles": 40, "tiles_inked": 0, "max_tile": 0.0, "max_light_tile": 0.0}
    assert read.decide(blank, "text") == (None, 0.95, "accepted", None)
    assert read.decide(blank, "signature") == (False, 0.95, "accepted", None)
    assert np.isscalar(read.SIGNED_MIN_TILES)
