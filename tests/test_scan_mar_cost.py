"""A MAR page's reading with less glue: the same PageResults as the code it replaced, bit for bit.

The functions made cheaper (one product for a stack's patch transforms, the printed bands and comb
frames of a stack worked out together, the outline windows from one running sum, a stack's box
measures rounded as columns, a mark field's boxes taken once, each outline measure read once for
the visibility check) are checked here against the code they replaced (`read_reference.py`,
frozen), on real printed ward pages (MAR, vitals, registration, lab) filled with marks,
handwriting and digits, clean and damaged as office scanners, worn printers and phones do.
Everything a PageResult holds is compared: status, transform, quality,
every reading's raw measures, value, confidence, status, reason, ink and crop pixels.
"""
from __future__ import annotations

import numpy as np
import pytest

from fallbackkit.scan import engine, read
from fallbackkit.scan.degrade import degrade
from fallbackkit.scan.simulate import fill_page

import read_reference as ref
from scan_engine_helpers import DPI, Sheets

REPLACED_READ = ("_weakest_chunk", "_best_shifts", "_measure_boxes", "_measure_hand_group", "_print_bands")
REPLACED_ENGINE = ("_read_located", "_measure_field", "_decide_field", "_visibility")


@pytest.fixture
def ward(kit, ward_pack):
    return Sheets(kit, ward_pack.out_path)


def _everything(result: engine.PageResult) -> tuple:
    quality = dict(result.quality)
    quality.pop("timings_ms", None)
    readings = [(r.field, r.type, r.raw, r.value, r.confidence, r.status, r.reason, r.ink,
                 None if r.crop is None else (r.crop.shape, r.crop.tobytes())) for r in result.readings]
    return (result.status, result.reason, result.detail, result.payload_text, result.sheet_id, result.template,
            result.version, result.page, result.pages, result.orientation, result.transform, result.fit_error_mm,
            result.dpi, repr(quality), repr(readings))


def _pages(ward) -> list[np.ndarray]:
    """Every template's pages, filled (half the handwriting inked, some spilled and cancelled marks),
    clean and damaged."""
    rng = np.random.default_rng(21)
    pages = ward.pages()
    mars = [p for p in pages if p[2]["template"] == "mar"]
    others = [p for p in pages if p[2]["template"] != "mar"]
    chosen = mars[:3] + [next(p for p in others if p[2]["template"] == t) for t in ("vitals", "registration",
                                                                                   "lab-request")]
    out = []
    for (_, img, geom), tier in zip(chosen * 2, ["clean"] * len(chosen) + ["office", "hard", "phone"] * 2):
        filled, _ = fill_page(img, geom, DPI, rng, writing=0.5, spilled=0.1)
        out.append(degrade(filled, tier, rng, DPI))
    return out


def test_filled_and_damaged_pages_read_as_before(ward, monkeypatch):
    pages = _pages(ward)
    now = [ward.read(p) for p in pages]
    assert sum(r.status == "read" for r in now) >= len(pages) - 2
    assert sum(len(r.readings) for r in now) > 400
    with monkeypatch.context() as m:
        for name in REPLACED_READ:
            m.setattr(read, name, getattr(ref, name))
        for name in REPLACED_ENGINE:
            m.setattr(engine, name, getattr(ref, name))
        before = [ward.read(p) for p in pages]
    for a, b in zip(now, before):
        assert _everything(a) == _everything(b)


def test_stack_patches_are_the_patches_one_by_one(ward):
    """read.patches gives each region's patch() pixels (the same transform matrices), for the sizes
    the reader cuts and on real page transforms."""
    rng = np.random.default_rng(5)
    for img in _pages(ward)[3:7]:
        result = ward.read(img)
        if result.status != "read":
            continue
        hmat = np.array(result.transform)
        xs, ys = rng.uniform(-5, 205, 40).tolist(), rng.uniform(-5, 290, 40).tolist()
        for w, h, ppm in ((9.0, 9.0, read.BOX_PX_PER_MM), (27.5, 11.0, read.CROP_PX_PER_MM),
                          (8.5, 11.0, read.CROP_PX_PER_MM), (0.1, 0.1, 3.0)):
            one_by_one = [read.patch(img, hmat, x, y, w, h, ppm) for x, y in zip(xs, ys)]
            together = read.patches(img, hmat, xs, ys, w, h, ppm)
            assert all(np.array_equal(a, b) for a, b in zip(one_by_one, together))
            t = np.array([[1 / ppm, 0, xs[0]], [0, 1 / ppm, ys[0]], [0, 0, 1]], float)
            stacked = np.zeros((1, 3, 3))
            stacked[0, 0, 0] = stacked[0, 1, 1] = 1 / ppm
            stacked[0, 0, 2], stacked[0, 1, 2], stacked[0, 2, 2] = xs[0], ys[0], 1.0
            assert (hmat @ t).tobytes() == (hmat @ stacked)[0].tobytes()


def test_print_bands_and_frames_of_odd_stacks_as_before():
    """Made-up stacks the printed forms do not have: shifted origins, bands running out of the crop,
    combs with and without groups, ruled lines."""
    rng = np.random.default_rng(8)
    ppm = read.CROP_PX_PER_MM
    for cells_n, gaps, lines in ((0, (), 1), (0, (), 3), (1, (), 1), (4, (1,), 1), (8, (1, 3, 5), 1), (3, (), 2)):
        N = int(rng.integers(1, 12))
        w, h = 5.5 * max(cells_n, 1) + 2.0 * len(gaps), 8.0 * lines
        fields = []
        for _ in range(N):
            x, y = rng.uniform(10, 150), rng.uniform(10, 250)
            cells, cx = [], x
            for i in range(cells_n):
                cells.append([cx, y, 5.5, 8.0])
                cx += 5.5 + (2.0 if i in gaps else 0.0)
            fields.append({"box_mm": [x, y, w, h], "cells_mm": cells, "lines": lines})
        x = np.array([f["box_mm"][0] for f in fields])
        y = np.array([f["box_mm"][1] for f in fields])
        for spread in (0.0, 0.3, 2.5):
            ox = x - read.CROP_MARGIN_MM + rng.uniform(-spread, spread, N)
            oy = y - read.CROP_MARGIN_MM + rng.uniform(-spread, spread, N)
            H, W = int(round((h + 3) * ppm)), int(round((w + 3) * ppm))
            assert np.array_equal(read._print_bands(fields, x, y, w, h, ox, oy, ppm, H, W),
                                  ref._print_bands(fields, x, y, w, h, ox, oy, ppm, H, W))
            x0 = rng.integers(5, 14, N)
            y0 = rng.integers(5, 14, N)
            bw, bh = int(round(w * ppm)), int(round(h * ppm))
            rects = read._frame_rects_stack(fields, ox, oy, ppm, x0, y0, bw, bh)
            for f, o_x, o_y, a, b, got in zip(fields, ox, oy, x0, y0, rects.tolist()):
                assert [list(r) for r in read._frame_rects(f, (o_x, o_y), ppm, (int(a), int(b), bw, bh))] == got


def test_outline_windows_as_before_with_many_strips_and_short_ones():
    rng = np.random.default_rng(4)
    for lengths in ((3,), (4, 3, 50), (12,) * 40, (200, 7, 7, 3, 90)):
        blocks = [rng.integers(0, 256, (int(rng.integers(1, 5)), 4 * read.OUTLINE_BAND_PX + 1, n), dtype=np.uint8)
                  for n in lengths]
        for window in (3, 9, 60):
            assert read._weakest_chunk(blocks, window).tolist() == ref._weakest_chunk(blocks, window).tolist()


def test_reason_codes_stored_as_before():
    """reasons.data, made once per distinct reason, gives the text the plain way gives, every time."""
    import json

    from fallbackkit.scan import reasons
    texts = [reasons.english("to_transcribe"), reasons.english("faint_mark", option="refused"),
             reasons.join(reasons.english("covered"), reasons.english("two_marked")), "written by hand", "no_code"]
    for _ in range(3):
        for text in texts:
            for quarantine in (False, True):
                parts = [{"code": text, "params": {}}] if quarantine else reasons.parse(text)
                assert reasons.data(text, quarantine=quarantine) == json.dumps(parts, ensure_ascii=False,
                                                                                sort_keys=True)
    assert reasons.data(None) is None and reasons.data("") is None
