"""A page's handwriting outlines measured in one go: the same numbers as edge by edge.

The visibility check's outline evidence of every handwriting frame of a page is worked out from
the edges' pixel strips laid end to end (`read._weakest_of_strips`); `read._edge_evidence` (a stack
of patches, the mark boxes' path and the way every frame was measured before) is the reference, on
crops of real printed, filled and damaged pages, for rectangles inside the crop and at its border.
"""
from __future__ import annotations

import numpy as np
import pytest

from fallbackkit.scan import read
from fallbackkit.scan.degrade import degrade
from fallbackkit.scan.simulate import fill_page

from scan_engine_helpers import DPI, Sheets


@pytest.fixture
def ward(kit, ward_pack):
    return Sheets(kit, ward_pack.out_path)


def _reference(crop: np.ndarray, rect: tuple[int, int, int, int], ppm: float) -> np.ndarray:
    one = np.array([0])
    x0, y0, x1, y1 = rect
    return read._edge_evidence(crop[None], one + x0, one + y0, one + x1, one + y1, ppm)[0]


@pytest.mark.parametrize("tier", ["office", "hard"])
def test_outlines_laid_end_to_end_equal_edge_by_edge(ward, tier, monkeypatch):
    rng = np.random.default_rng({"office": 41, "hard": 42}[tier])
    ppm = read.CROP_PX_PER_MM
    m = int(round(read.CROP_MARGIN_MM * ppm))
    strips, expected = [], []
    for _, img, geom in ward.pages()[:4]:
        filled, _ = fill_page(img, geom, DPI, rng, writing=0.6)
        page = degrade(filled, tier, rng, DPI)
        result = ward.read(page)
        assert result.status == "read", result.detail
        hmat = np.array(result.transform)
        for f in [f for f in geom["fields"] if f["type"] in read.HANDWRITTEN][:8]:
            x, y, w, h = f["box_mm"]
            crop = read.patch(page, hmat, x - read.CROP_MARGIN_MM, y - read.CROP_MARGIN_MM,
                              w + 2 * read.CROP_MARGIN_MM, h + 2 * read.CROP_MARGIN_MM, ppm)
            H, W = crop.shape
            bw, bh = int(round(w * ppm)), int(round(h * ppm))
            # the frame lined up, shifted to the crop's border (the border rule) and a short rectangle
            for rect in [(m, m, m + bw, m + bh), (1, 2, m + bw + 5, m + bh + 4), (m - 4, m + 3, m + bw - 4, H - 1),
                         (0, 0, W - 1, H - 1), (m, m, m + 4, m + 6)]:
                strips += read._rect_strips(crop, *rect)
                expected.append(_reference(crop, rect, ppm))
    expected = np.concatenate(expected)
    assert np.array_equal(read._weakest_of_strips(strips, ppm), expected)
    # in several running sums (pages with more outline than STRIPS_AT_ONCE): the same again
    monkeypatch.setattr(read, "STRIPS_AT_ONCE", 2000)
    assert np.array_equal(read._weakest_of_strips(strips, ppm), expected)


def test_handwriting_printed_measure_equals_the_reference(ward):
    """The "printed" every handwriting field gets from read_page's page-wide path equals the
    reference measure of its frame (or of each group of comb cells)."""
    rng = np.random.default_rng(43)
    ppm = read.CROP_PX_PER_MM
    checked = 0
    for _, img, geom in [p for p in ward.pages() if p[2]["template"] in ("vitals", "registration", "mar")][:3]:
        filled, _ = fill_page(img, geom, DPI, rng, writing=0.5)
        page = degrade(filled, "office", rng, DPI)
        result = ward.read(page)
        hmat = np.array(result.transform)
        fields = [f for f in geom["fields"] if f["type"] in read.HANDWRITTEN]
        for f, (raw, crop) in zip(fields, read.measure_handwritten_many(page, hmat, fields, result.quality["black_level"])):
            x, y, w, h = f["box_mm"]
            sx, sy = (round(v * ppm) for v in raw["shift_mm"])
            origin = (x - read.CROP_MARGIN_MM - sx / ppm, y - read.CROP_MARGIN_MM - sy / ppm)
            m = int(round(read.CROP_MARGIN_MM * ppm))
            cells = f.get("cells_mm") or []
            if not cells:
                rects = [(m + sx, m + sy, m + sx + int(round(w * ppm)), m + sy + int(round(h * ppm)))]
            else:
                groups = [[cells[0]]]
                for a, b in zip(cells, cells[1:]):
                    if b[0] - (a[0] + a[2]) > 0.5:
                        groups.append([])
                    groups[-1].append(b)
                rects = [tuple(int(round((v - o) * ppm)) for v, o in (
                    (g[0][0], origin[0]), (min(c[1] for c in g), origin[1]),
                    (g[-1][0] + g[-1][2], origin[0]), (max(c[1] + c[3] for c in g), origin[1]))) for g in groups]
            want = min(1.0, *(float(_reference(crop, r, ppm).min()) for r in rects))
            assert raw["printed"] == round(want, 3), f["name"]
            checked += 1
    assert checked > 60
