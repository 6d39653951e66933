"""The engine's field measures with fewer array calls: the same numbers as the plain way.

`read.py` measures a page's mark boxes and handwriting fields as stacks of patches. The helpers that
make a stack cheaper (one median filter for the stack, the patches' paper levels from one running
sum of histograms, one usable-pixel mask per distinct layout of printed lines, no ink counts for a
stack with no light ink at all) are checked here against the plain per-patch operations, on patches
of real printed, filled and damaged pages and on made-up ones that hit the edge cases (two-row
patches, fields whose printed lines fall differently, blank stacks). Page-level equality (stacks
against one field at a time) is in test_scan_engine.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from cv2 import medianBlur

from fallbackkit.scan import read
from fallbackkit.scan.degrade import degrade
from fallbackkit.scan.simulate import fill_page

from scan_engine_helpers import DPI, Sheets


@pytest.fixture
def ward(kit, ward_pack):
    return Sheets(kit, ward_pack.out_path)


def _real_stacks(ward, tier: str, seed: int) -> list[tuple[np.ndarray, np.ndarray, list[dict], float]]:
    """(page, transform, handwriting fields, black level) of a few filled, damaged ward pages."""
    rng = np.random.default_rng(seed)
    out = []
    pages = ward.pages()
    for _, img, geom in [p for p in pages if p[2]["template"] in ("mar", "vitals")][:2] + pages[:1]:
        filled, _ = fill_page(img, geom, DPI, rng, writing=0.6)
        page = degrade(filled, tier, rng, DPI)
        result = ward.read(page)
        assert result.status == "read", result.detail
        out.append((page, np.array(result.transform), [f for f in geom["fields"] if f["type"] in read.HANDWRITTEN],
                    result.quality["black_level"]))
    return out


def test_stack_median_and_paper_levels_equal_patch_by_patch(ward):
    rng = np.random.default_rng(3)
    stacks = [rng.integers(0, 256, (n, h, w), dtype=np.uint8) for n, h, w in
              [(1, 5, 7), (2, 2, 9), (3, 3, 3), (5, 65, 115), (4, 2, 1), (9, 3, 4), (60, 72, 72), (15, 65, 50),
              (3, 65, 66), (2, 70, 65)]]
    ppm = read.CROP_PX_PER_MM
    for page, hmat, fields, _ in _real_stacks(ward, "hard", 8):
        groups: dict[tuple, list[np.ndarray]] = {}
        for f in fields:
            x, y, w, h = f["box_mm"]
            groups.setdefault(read._hand_shape(f), []).append(
                read.patch(page, hmat, x - 1.5, y - 1.5, w + 3, h + 3, ppm))
        stacks += [np.stack(c) for c in groups.values() if len(c) > 1]
    assert len(stacks) > 8
    for P in stacks:
        assert np.array_equal(read._median3_stack(P), np.stack([medianBlur(p, 3) for p in P])), P.shape
        for q in (0.0, read.PAPER_QUANTILE, 0.5):
            k = int(P[0].size * q)
            assert read._kth_greys(P, k).tolist() == [read._kth_grey(p, k) for p in P]


def _usable_one_by_one(H, W, r0s, c0s, bh, bw, bands):
    usable = np.zeros((len(r0s), H, W), bool)
    for n, (r0, c0) in enumerate(zip(r0s, c0s)):
        usable[n, max(0, r0):r0 + bh, max(0, c0):c0 + bw] = True
    for n, a0, a1, b0, b1 in bands.tolist():
        usable[n, a0:a1, b0:b1] = False
    return usable


def test_usable_masks_per_layout_equal_field_by_field():
    """Fields whose box was lined up differently (other shifts) or whose printed lines fall on other
    pixels each get their own mask; fields alike share one."""
    rng = np.random.default_rng(4)
    H, W, bh, bw = 40, 60, 30, 48
    r0s, c0s = [5, 5, 3, 5, 7, 5], [6, 6, 6, 2, 6, 6]
    bands = []
    for n in range(len(r0s)):
        for a0, a1, b0, b1 in [(3, 8, 4, 56), (30, 36, 4, 56), (3, 36, 4, 9), (3, 36, 50, 56)]:
            bands.append((n, a0, a1, b0, b1))
        if n == 5:  # one more printed line (a comb cell's edge one pixel over)
            bands.append((n, 0, H, 20, 22))
    bands = np.array(bands, np.int64)
    patterns, which = read._usable_patterns(H, W, r0s, c0s, bh, bw, bands)
    expected = _usable_one_by_one(H, W, r0s, c0s, bh, bw, bands)
    assert np.array_equal(patterns[which], expected)
    assert len(patterns) == 5 and which[0] == which[1]
    # a field with no band at all, and random bands
    for _ in range(20):
        n = int(rng.integers(1, 6))
        r0s, c0s = rng.integers(-2, 8, n).tolist(), rng.integers(-2, 8, n).tolist()
        rows = [(i, *sorted(rng.integers(0, H, 2)), *sorted(rng.integers(0, W, 2))) for i in range(n)
                for _ in range(int(rng.integers(0, 4)))]
        bands = np.array(rows, np.int64).reshape(-1, 5)
        patterns, which = read._usable_patterns(H, W, r0s, c0s, bh, bw, bands)
        assert np.array_equal(patterns[which], _usable_one_by_one(H, W, r0s, c0s, bh, bw, bands))


def test_blank_fields_measured_as_before(ward):
    """A stack of fields without any ink (no ink counted at all, the shortcut) has the raw measures
    of each field measured alone (where the counts are made)."""
    sheets = [(p, g) for _, p, g in ward.pages() if g["template"] in ("mar", "vitals")][:2]
    rng = np.random.default_rng(9)
    for img, geom in sheets:
        page = degrade(img, "office", rng, DPI)  # printed, nothing written
        result = ward.read(page)
        hmat, black = np.array(result.transform), result.quality["black_level"]
        fields = [f for f in geom["fields"] if f["type"] in read.HANDWRITTEN]
        together = read.measure_handwritten_many(page, hmat, fields, black)
        for f, (raw, crop) in zip(fields, together):
            alone_raw, alone_crop = read.measure_handwritten(page, hmat, f, black)
            assert raw == alone_raw and raw["tiles_inked"] == 0 and raw["ink_fraction"] == 0.0
            assert raw["tiles"] > 0 and np.array_equal(crop, alone_crop)


def test_outline_blocks_equal_strip_by_strip(ward, monkeypatch):
    """The same edge of every crop of a stack as one block of strips gives each crop's figure of
    that edge measured alone, mixed with single strips and blocks split over several running sums."""
    ppm = read.CROP_PX_PER_MM
    m = int(round(read.CROP_MARGIN_MM * ppm))
    items, expected = [], []
    for page, hmat, fields, _ in _real_stacks(ward, "office", 12):
        groups: dict[tuple, list] = {}
        for f in fields:
            x, y, w, h = f["box_mm"]
            groups.setdefault(read._hand_shape(f), []).append(
                read.patch(page, hmat, x - 1.5, y - 1.5, w + 3, h + 3, ppm))
        for crops in groups.values():
            P = np.stack(crops)
            _, H, W = P.shape
            rects = [(m, m, W - m - 1, H - m - 1), (m + 2, m - 1, m + 9, H - m), (m, m, m + 1, m + 8)]
            blocks = read._edge_blocks(P, rects)
            assert blocks is not None and len(blocks) == 4 * len(rects)
            items += blocks
            per_crop = [[s for r in rects for s in read._rect_strips(p, *r)] for p in P]
            expected += [float(read._weakest_of_strips([per_crop[n][e]], ppm)[0])  # [edge][crop], each alone
                         for e in range(len(blocks)) for n in range(len(P))]
            single = read._rect_strips(P[0], *rects[0])[2]
            items.append(single)
            expected.append(float(read._weakest_of_strips([single], ppm)[0]))
            assert read._edge_blocks(P, [(0, 0, W - 1, H - 1)]) is None  # at the border: strip by strip
    assert len(expected) > 500
    assert read._weakest_of_strips(items, ppm).tolist() == expected
    monkeypatch.setattr(read, "STRIPS_AT_ONCE", 500)  # blocks longer than a running sum: strip by strip
    assert read._weakest_of_strips(items, ppm).tolist() == expected


def test_narrow_images_median_filtered_as_opencv_does():
    """Images narrower than MEDIAN_MIN_WIDTH (OpenCV's slow case) are filtered widened by copies of
    their last column: the same pixels as cv2.medianBlur, at any width and height."""
    rng = np.random.default_rng(7)
    for h, w in [(1, 1), (2, 1), (1, 5), (65, 50), (975, 50), (3, 65), (9, 66), (40, 67), (65, 221)]:
        img = rng.integers(0, 256, (h, w), dtype=np.uint8)
        img[:, -1] = rng.integers(0, 2, h) * 255  # the border column that the widening copies
        assert np.array_equal(read._median3(img), medianBlur(img, 3)), (h, w)
