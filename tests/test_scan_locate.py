"""Corner marks looked for near where the code puts them, the whole page only as the fallback.

On real printed, filled and damaged ward-pack pages the windowed search gives exactly the
location of the whole-page search (same marks, same transform, same levels); a page where a
window does not hold four marks that fit (a label over a mark, a phone photo's perspective) is
searched as a whole as before and still reads from three marks.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from fallbackkit.scan import locate
from fallbackkit.scan.degrade import degrade, occlude
from fallbackkit.scan.engine import _is_ours
from fallbackkit.scan.simulate import fill_page

from scan_engine_helpers import DPI, Sheets


@pytest.fixture
def ward(kit, ward_pack):
    return Sheets(kit, ward_pack.out_path)


def _whole_page(image: np.ndarray, code: locate.FoundCode, geometry: dict) -> locate.Location:
    """The search before windows: every blob of the page."""
    qr = locate._affine_h(locate._qr_corners_mm(geometry), code.corners_px)
    px_per_mm = math.sqrt(abs(np.linalg.det(qr[:2, :2])))
    work, factor = locate._work_copy(image, px_per_mm)
    blobs = locate._find_blobs(work, locate.MARK_SIZE_MM * px_per_mm / factor)
    return locate._locate_among(image, code, geometry, blobs, factor, px_per_mm, fast=False)


def _same(a: locate.Location, b: locate.Location) -> None:
    assert np.array_equal(a.transform, b.transform)
    assert a.marks_px == b.marks_px
    assert (a.fit_error_mm, a.black_level, a.paper_level, a.hole_ok, a.missing_mark, a.notes) == \
        (b.fit_error_mm, b.black_level, b.paper_level, b.hole_ok, b.missing_mark, b.notes)


@pytest.mark.parametrize("tier", ["office", "hard", "phone"])
def test_windowed_marks_locate_exactly_as_the_whole_page(ward, tier, monkeypatch):
    rng = np.random.default_rng({"office": 21, "hard": 22, "phone": 23}[tier])
    sheets = Sheets(ward.kit, ward.kit.db.conn.execute(
        "SELECT out_path FROM print_batches WHERE kind = 'ward'").fetchone()[0], 300) if tier == "phone" else ward
    dpi = 300 if tier == "phone" else DPI
    windowed = []
    real = locate._locate_among

    def spy(*args, fast, **kwargs):
        got = real(*args, fast=fast, **kwargs)
        if fast:
            windowed.append(got is not None)
        return got
    monkeypatch.setattr(locate, "_locate_among", spy)
    pages = sheets.pages()
    for i in range(5):
        _, img, geom = pages[(i * 5) % len(pages)]
        filled, _ = fill_page(img, geom, dpi, rng, writing=0.5, spilled=0.15)
        page = degrade(filled, tier, rng, dpi)
        codes, _ = locate.find_codes(page, _is_ours)
        _same(locate.locate_with_code(page, codes[0], geom), _whole_page(page, codes[0], geom))
    assert len(windowed) == 5
    if tier != "phone":  # flat scans: the marks are where the code says, every page found in the windows
        assert all(windowed)


@pytest.mark.parametrize("corner", ["tl", "br"])
def test_label_over_a_mark_falls_back_to_the_whole_page_and_reads_from_three(ward, corner):
    rng = np.random.default_rng(31)
    _, img, geom = next(p for p in ward.pages() if p[2]["template"] == "vitals")
    filled, _ = fill_page(img, geom, DPI, rng)
    x, y, w, h = geom["marks_mm"][corner]
    page = degrade(occlude(filled, [x - 3, y - 3, w + 6, h + 6], DPI, rng, "label"), "office", rng)
    codes, _ = locate.find_codes(page, _is_ours)
    loc = locate.locate_with_code(page, codes[0], geom)
    assert loc.missing_mark == corner
    _same(loc, _whole_page(page, codes[0], geom))
