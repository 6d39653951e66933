"""Duplex scans on a bilevel office scanner (CCITT G4, thresholded): the back of each sheet shows its
front through the paper as black as ink. A back is told by the front just before it in the same
file: the front's mirror explains all of its ink (blank page), or ink is left over (a person looks)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from fallbackkit.generate import sheet_geometry
from fallbackkit.scan import duplex, engine
from fallbackkit.scan.marks import InkLayer, Pen, draw_handwriting
from fallbackkit.scan.pipeline import format_summary, scan_paths
from fallbackkit.scan.simulate import fill_page, page_transform
from pdf_helpers import render_pages

DPI = 200


def strong_show_through(front: np.ndarray, seed: int, turn: str = "long_edge") -> np.ndarray:
    """The back of a printed, filled sheet as a duplex scanner's second side sees it, in grey before
    the scanner thresholds it: the front mirrored (turned over its long or its short edge), blurred
    by the paper, dark enough that its print and ink come out black; shifted, scaled and turned a
    little, as the two sides of a duplex scan never line up exactly."""
    rng = np.random.default_rng(seed)
    mirror = np.fliplr(front) if turn == "long_edge" else np.flipud(front)
    back = 255.0 - (255.0 - mirror.astype(np.float32)) * 0.65
    back = cv2.GaussianBlur(back, (0, 0), 1.5) * 0.97 + rng.normal(0, 2.5, back.shape)
    h, w = back.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-0.4, 0.4)), float(rng.uniform(0.995, 1.006)))
    m[:, 2] += rng.uniform(-1.5, 1.5, 2) * DPI / 25.4  # up to 1.5 mm each way
    back = cv2.warpAffine(back, m, (w, h), borderValue=240)
    return np.clip(back, 0, 255).astype(np.uint8)


def write_a_note(back: np.ndarray, seed: int) -> np.ndarray:
    """A nurse's note written on the back of the sheet: three lines of handwriting."""
    layer = InkLayer(back, page_transform(DPI))
    rng = np.random.default_rng(seed)
    for row in range(3):
        draw_handwriting(layer, {"type": "text", "box_mm": [25, 150 + 9 * row, 110, 8]}, rng, Pen(0.5, 20))
    return layer.apply()


def threshold(page: np.ndarray) -> Image.Image:
    return Image.fromarray(np.where(page > 160, 255, 0).astype(np.uint8)).convert("1")


def _rows(kit, sql, params=()):
    return kit.db.conn.execute(sql, params).fetchall()


@pytest.fixture
def cover_page(ward_pack):
    return render_pages(ward_pack.out_path, dpi=DPI)[0]


@pytest.fixture
def filled_fronts(kit, ward_pack):
    """Six printed ward-pack sheets, filled in by pen, with their sheet ids and what was written."""
    rng = np.random.default_rng(21)
    out = []
    for front in render_pages(ward_pack.out_path, dpi=DPI)[1:7]:  # after the cover page
        sid = engine.read_page(front, kit_id=kit.kit_id, secret=kit.secret,
                               geometry_for=lambda s: sheet_geometry(kit, s)).sheet_id
        filled, truth = fill_page(front, sheet_geometry(kit, sid), DPI, rng, hard_cases=0, two_marks=0)
        out.append((sid, filled, truth))
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_bilevel_duplex_show_through_backs_are_blank_and_a_back_with_a_note_goes_to_a_person(
        kit, cover_page, filled_fronts, tmp_path, workers):
    """A G4 duplex TIFF: the pack's cover, its back, then front, back, front, back... Every back
    shows its front through the paper as black as print (before this, each was quarantined, and the
    cover's back, its code read mirrored, was taken for a second cover); one back also carries a
    handwritten note. The cover is counted once, every front is read, every plain back is counted
    blank and matched to no sheet, nothing plain is quarantined, the note's back goes to a person
    with a reason that says why. With two workers a back is often read by another process than its
    front: the front is decoded again."""
    pages = [cover_page, strong_show_through(cover_page, seed=9)]
    note_on = 3
    for i, (_, filled, _) in enumerate(filled_fronts):
        back = strong_show_through(filled, seed=i, turn="short_edge" if i == 4 else "long_edge")
        if i == note_on:
            back = write_a_note(back, seed=i)
        pages += [filled, back]
    frames = [threshold(p) for p in pages]
    inbox = tmp_path / "duplex"
    inbox.mkdir()
    frames[0].save(inbox / "duplex-g4.tif", compression="group4", save_all=True, append_images=frames[1:],
                   dpi=(DPI, DPI))

    summary = scan_paths(kit, [inbox], workers=workers, progress=False, actor="clerk")

    assert (summary.pages_read, summary.pages_blank, summary.pages_quarantined) == (6, 6, 1), summary.quarantined
    assert summary.cover_sheets == 1 and "blank pages  6" in format_summary(summary)
    rows = _rows(kit, "SELECT page_index, status, sheet_id, quality, capture_id FROM captures ORDER BY page_index")
    assert [r[1] for r in rows[:2]] == ["cover", "blank"]
    assert json.loads(rows[1][3])["show_through"]["front_page"] == 1  # the cover's back, by the cover before it
    rows = rows[2:]
    assert [r[1] for r in rows[::2]] == ["read"] * 6
    assert [r[2] for r in rows[::2]] == [sid for sid, _, _ in filled_fronts]
    backs = rows[1::2]
    assert [r[1] for r in backs] == ["blank"] * 3 + ["quarantined"] + ["blank"] * 2
    assert all(r[2] is None for r in backs)  # a back is never matched to its front's sheet
    for (page_index, status, _, quality, _), (sid, _, _) in zip(backs, filled_fronts):
        seen = json.loads(quality)["show_through"]
        assert seen["sheet_seen_through"] == sid and seen["front_page"] == page_index - 1
    assert json.loads(backs[4][3])["show_through"]["mirror"]["turn"] == "short_edge"
    (q,) = summary.quarantined
    assert q["page"] == 2 * note_on + 4 and q["reason"] == "no_code"
    detail = _rows(kit, "SELECT detail FROM quarantine")[0][0]
    assert f"the back of sheet {filled_fronts[note_on][0]}" in detail and "written on the back" in detail
    assert _rows(kit, "SELECT COUNT(*) FROM readings r JOIN captures c ON c.capture_id = r.capture_id"
                      " WHERE c.status != 'read'")[0][0] == 0
    # the fronts are read as well as ever: nothing accepted that was not written
    for (_, _, _, _, cid), (_, _, truth) in zip(rows[::2], filled_fronts):
        for field, status, value, ink in _rows(kit, "SELECT field, status, value, ink FROM readings"
                                                    " WHERE capture_id = ?", [cid]):
            if status != "accepted":
                continue
            t = truth[field]
            if "ink" in t:
                assert bool(ink) == t["ink"] or not t["ink"], field
            else:
                assert (None if value is None else json.loads(value)) == t["value"], (field, value, t)


def test_a_back_out_of_order_is_not_blank_without_its_own_front_before_it(kit, filled_fronts, tmp_path):
    """The evidence is the front just before: a show-through back after another sheet's front (the
    pile reordered), or first in its file, stays with a person."""
    (a, fa, _), (b, fb, _) = filled_fronts[:2]
    pages = [strong_show_through(fa, 1), fb, strong_show_through(fa, 2)]
    path = tmp_path / "reordered.tif"
    frames = [threshold(p) for p in pages]
    frames[0].save(path, compression="group4", save_all=True, append_images=frames[1:], dpi=(DPI, DPI))

    summary = scan_paths(kit, [path], workers=0, progress=False)

    assert (summary.pages_read, summary.pages_blank, summary.pages_quarantined) == (1, 0, 2)
    assert {q["page"] for q in summary.quarantined} == {1, 3}


def test_the_mirror_of_the_front_explains_the_back_or_names_what_it_does_not():
    """On raw images: a plain back is explained whichever edge the sheet was turned over; a short
    word written over the front's own ink still leaves strokes outside it; another sheet's back is
    no mirror of this front."""
    def a_page(seed: int) -> np.ndarray:  # printed boxes and a name line
        rng = np.random.default_rng(seed)
        page = np.full((2339, 1654), 255, np.uint8)
        for _ in range(60):
            x, y = int(rng.integers(100, 1400)), int(rng.integers(100, 2100))
            cv2.rectangle(page, (x, y), (x + int(rng.integers(20, 250)), y + int(rng.integers(20, 80))), 0, 3)
        cv2.putText(page, "CLAES, Pieter  MRN 100345", (150, 160), cv2.FONT_HERSHEY_SIMPLEX, 1.6, 0, 4)
        return page

    front = a_page(5)
    bilevel = lambda img: np.where(img > 160, 255, 0).astype(np.uint8)  # noqa: E731
    for turn in ("long_edge", "short_edge"):
        back = bilevel(strong_show_through(front, 3, turn))
        m = duplex.compare(back, bilevel(front), DPI, DPI)
        assert duplex.is_show_through(m) and m["turn"] == turn, m
    back = bilevel(strong_show_through(front, 3))
    cv2.putText(back, "ok", (700, 1200), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 1.0, 0, 3)
    m = duplex.compare(back, bilevel(front), DPI, DPI)
    assert not duplex.is_show_through(m) and m["unexplained_longest_mm"] >= duplex.STROKE_MM
    other = bilevel(strong_show_through(a_page(6), 4))
    assert not duplex.is_show_through(duplex.compare(other, bilevel(front), DPI, DPI))



def test_a_cover_of_several_pages_in_one_file_is_not_taken_for_its_own_backs(tmp_path):
    """A ward pack's cover running over several pages carries the same code on each: scanned as one
    G4 file, each page is a cover. Their tables look alike, but no page is the one before it seen in
    a mirror by a duplex scanner's small shift: none is counted blank or put aside."""
    from fallbackkit.generate import print_ward
    from kit_helpers import census_kit
    kit = census_kit(tmp_path, {"3B": 30})
    try:
        pack = print_ward(kit, "3B", tmp_path / "ward-3B.pdf", actor="coordinator", one_sided=True)
        images = render_pages(pack.out_path, dpi=150)
        covers = len(images) - len(pack.sheets)
        assert covers >= 2, covers
        frames = [threshold(p) for p in images[:covers]]
        frames[0].save(tmp_path / "covers.tif", compression="group4", save_all=True, append_images=frames[1:],
                       dpi=(150, 150))
        summary = scan_paths(kit, [tmp_path / "covers.tif"], workers=0, progress=False)
        assert (summary.cover_sheets, summary.pages_blank, summary.pages_quarantined) == (covers, 0, 0)
    finally:
        kit.close()


def test_writing_on_the_back_of_a_cover_goes_to_a_person(kit, cover_page, tmp_path):
    """The cover's code read through the paper made its back a second cover, nothing to read, so a
    note written on it reached nobody: now it is the cover's back, and with the note a person looks."""
    back = write_a_note(strong_show_through(cover_page, seed=4), seed=4)
    frames = [threshold(p) for p in (cover_page, back)]
    frames[0].save(tmp_path / "cover.tif", compression="group4", save_all=True, append_images=frames[1:],
                   dpi=(DPI, DPI))
    summary = scan_paths(kit, [tmp_path / "cover.tif"], workers=0, progress=False)
    assert (summary.cover_sheets, summary.pages_blank, summary.pages_quarantined) == (1, 0, 1)
    detail = _rows(kit, "SELECT detail FROM quarantine")[0][0]
    assert "the back of the ward pack's cover sheet" in detail and "written on the back" in detail
