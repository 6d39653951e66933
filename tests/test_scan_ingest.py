"""Ingest: every file format scanners write becomes the same upright grey page; bad files get a clear error."""
from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from fallbackkit.scan.ingest import UnreadableFile, count_pages, iter_pages, load_page, sniff
from pdf_helpers import render_pages
from scan_pipeline_helpers import (write_bad_files, write_jpeg, write_png, write_scanner_pdf, write_tiff_g4)


@pytest.fixture
def pages(blank_lab):
    """Three blank lab-request sheets printed by the kit, rendered at 200 dpi."""
    return render_pages(blank_lab.out_path, dpi=200)


def _similar(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute grey difference between two page images of the same size."""
    assert a.shape == b.shape
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_vector_pdf_is_rendered_grey_at_200_dpi(blank_lab, pages):
    got = list(iter_pages(blank_lab.out_path))
    assert [p.index for p in got] == [1, 2, 3]
    for page, rendered in zip(got, pages):
        assert page.kind == "pdf" and page.how == "render" and page.dpi == 200
        assert page.image.dtype == np.uint8 and page.image.ndim == 2
        assert _similar(page.image, rendered) < 1.0


def test_scanner_pdf_image_is_extracted_not_rendered(tmp_path, pages):
    path = write_scanner_pdf(tmp_path / "scan.pdf", pages, dpi=200)
    got = list(iter_pages(path))
    assert len(got) == 3
    for page, rendered in zip(got, pages):
        assert page.how == "extract"
        assert page.dpi == pytest.approx(200, abs=0.5)
        assert _similar(page.image, rendered) < 3.0  # JPEG noise only


def test_multipage_tiff_g4_bilevel(tmp_path, pages):
    path = write_tiff_g4(tmp_path / "office.tif", pages, dpi=300)
    assert sniff(path) == "tiff" and count_pages(path) == 3
    got = list(iter_pages(path))
    assert [p.dpi for p in got] == [300, 300, 300]
    for page, rendered in zip(got, pages):
        assert set(np.unique(page.image)) <= {0, 255}
        assert page.image.mean() > 200  # paper is white, not inverted
        assert _similar(page.image, rendered) < 12.0
    assert load_page(path, 3).image.tobytes() == got[2].image.tobytes()


def test_png_colour_and_transparent_become_grey_on_white(tmp_path, pages):
    rgba = np.dstack([pages[0]] * 3 + [np.full_like(pages[0], 255)])
    rgba[:50, :50, 3] = 0  # transparent corner must read as paper, not black
    path = tmp_path / "colour.png"
    Image.fromarray(rgba, "RGBA").save(path, dpi=(200, 200))
    page = load_page(path, 1)
    assert page.kind == "png" and page.dpi == 200
    assert page.image[:50, :50].min() == 255
    assert _similar(page.image, pages[0]) < 1.0


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_jpeg_exif_orientation_is_applied(tmp_path, pages, orientation):
    path = write_jpeg(tmp_path / f"phone-{orientation}.jpg", pages[0], exif_orientation=orientation, colour=True)
    stored = np.array(Image.open(path))
    assert stored.shape[:2] != pages[0].shape or orientation == 3  # pixels really are stored turned
    page = load_page(path, 1)
    assert page.image.shape == pages[0].shape
    assert _similar(page.image, pages[0]) < 3.0


def test_type_comes_from_content_not_extension(tmp_path, pages):
    path = write_png(tmp_path / "scan.pdf", pages[0])
    assert sniff(path) == "png"
    assert load_page(path, 1).image.shape == pages[0].shape


def test_each_bad_file_has_a_clear_error_naming_it(tmp_path, blank_lab, pages):
    good_png = write_png(tmp_path / "good.png", pages[0])
    expected = write_bad_files(tmp_path / "bad", blank_lab.out_path, good_png)
    for name, phrase in expected.items():
        path = tmp_path / "bad" / name
        with pytest.raises(UnreadableFile) as info:
            for _ in iter_pages(path):
                pass
        message = str(info.value)
        assert str(path) in message, message
        assert phrase in message, message
        assert info.value.hint, f"{name}: the error must say what to do"


def test_bomb_is_refused_before_decoding(tmp_path, blank_lab, pages):
    expected = write_bad_files(tmp_path / "bad", blank_lab.out_path, write_png(tmp_path / "g.png", pages[0]))
    assert "bomb.png" in expected
    with pytest.raises(UnreadableFile, match="900000000 pixels"):
        count_pages(tmp_path / "bad" / "bomb.png")


def test_plain_grey_png_decodes_to_the_pixels_pillow_gives(tmp_path, pages):
    """8-bit grey PNG pages are decoded by OpenCV (cheaper): the very pixels Pillow gives; any other
    PNG (16 bits of grey, a palette) and every JPEG still go through Pillow, and a cut-short PNG
    gets Pillow's diagnosis."""
    from fallbackkit.scan import ingest
    page = pages[0]
    Image.fromarray(page).save(tmp_path / "grey.png", dpi=(200, 200))
    Image.fromarray(page).save(tmp_path / "grey.jpg", quality=85, dpi=(200, 200))
    Image.fromarray(page.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(page).quantize(16).save(tmp_path / "palette.png")
    with Image.open(tmp_path / "grey.png") as im:
        want = np.array(im)
        assert ingest._plain_grey(tmp_path / "grey.png", im, "png") is not None
    got = load_page(tmp_path / "grey.png", 1)
    assert got.dpi == 200 and np.array_equal(got.image, want)
    for name, kind in (("deep.png", "png"), ("palette.png", "png"), ("grey.jpg", "jpeg")):
        with Image.open(tmp_path / name) as im:
            assert ingest._plain_grey(tmp_path / name, im, kind) is None, name
        assert load_page(tmp_path / name, 1).image.shape == page.shape
    data = (tmp_path / "grey.png").read_bytes()
    (tmp_path / "short.png").write_bytes(data[:len(data) // 2])
    with Image.open(tmp_path / "short.png") as im:
        assert ingest._plain_grey(tmp_path / "short.png", im, "png") is None
    with pytest.raises(UnreadableFile, match="cut short"):
        load_page(tmp_path / "short.png", 1)
