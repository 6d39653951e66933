"""Scan: files that are no page or that this build cannot decode are refused with a reason that
says what to do, decoder chatter never reaches the console unattributed (issue 9 item 19), and a
ward pack's cover scanned with its pack is recognised and counted (item 20). Real files, real store."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fallbackkit import payload
from fallbackkit.cli import cli
from fallbackkit.errors import PayloadError
from fallbackkit.generate import print_ward
from fallbackkit.scan.pipeline import scan_paths
from kit_helpers import census_kit
from pdf_helpers import render_pages
from scan_pipeline_helpers import write_png


def _scan(kit, *paths):
    return CliRunner().invoke(cli, ["--kit", str(kit.path), "--user", "clerk", "--quiet", "scan",
                                    *map(str, paths), "--workers", "1"])


def _patch_tiff_tag(path: Path, tag_wanted: int, value: int) -> Path:
    """Rewrite one SHORT tag of a little-endian TIFF's first page in place (a scanner's setting)."""
    data = bytearray(path.read_bytes())
    assert data[:2] == b"II"
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack("<H", data[entry:entry + 2])[0] == tag_wanted:
            data[entry + 8:entry + 10] = struct.pack("<H", value)
            path.write_bytes(bytes(data))
            return path
    raise AssertionError(f"no tag {tag_wanted}")


@pytest.fixture
def page(blank_lab):
    return render_pages(blank_lab.out_path, dpi=150)[0]


# --- item 19 -------------------------------------------------------------------------------------
def test_an_image_too_small_to_be_a_page_is_a_file_error_not_a_quarantined_page(kit, tmp_path, page):
    small = write_png(tmp_path / "thumb.png", np.ascontiguousarray(page[::8, ::8]))  # ~155 x 220 px
    r = _scan(kit, small)
    assert r.exit_code == 1, r.output
    assert "thumb.png: page 1 is too small to be a scanned page" in r.output
    assert "at least 300 on each side" in r.output and "ValueError" not in r.output
    assert kit.db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0
    assert kit.db.execute("SELECT status FROM input_files").fetchone()[0] == "failed"


def test_webp_compressed_tiff_is_unsupported_and_libtiff_says_nothing_on_the_console(kit, tmp_path, page, capfd):
    # Pillow writes the TIFF; the compression tag then says WebP (50001), which this libtiff lacks
    path = tmp_path / "webp.tif"
    Image.fromarray(page).save(path, dpi=(150, 150))
    _patch_tiff_tag(path, 259, 50001)
    capfd.readouterr()
    summary = scan_paths(kit, [path], workers=0, progress=False, actor="clerk")
    out, err = capfd.readouterr()
    assert "WEBP" not in err and "tempfile.tif" not in err and "WEBP" not in out, err
    [failed] = summary.failed
    assert "webp.tif" in failed["error"] and "unsupported encoding (WebP compression)" in failed["error"]
    assert "save as PDF, PNG, JPEG, or TIFF" in failed["error"] and "scan the paper again" not in failed["error"]


def test_cielab_tiff_is_unsupported_with_what_to_save_as(kit, tmp_path, page):
    path = tmp_path / "lab.tif"
    Image.fromarray(page).convert("LAB").save(path, dpi=(150, 150))
    r = _scan(kit, path)
    assert r.exit_code == 1, r.output
    assert "lab.tif: page 1: unsupported encoding (CIELAB colour) — save as" in r.output, r.output
    assert "scan the paper again" not in r.output


def test_jpeg2000_tiff_that_pillow_cannot_even_open_is_named(kit, tmp_path, page):
    path = tmp_path / "j2k.tif"
    Image.fromarray(page).save(path, dpi=(150, 150))
    _patch_tiff_tag(path, 259, 34712)
    r = _scan(kit, path)
    assert r.exit_code == 1 and "unsupported encoding (JPEG 2000 compression) — save as" in r.output, r.output


def test_what_the_decoder_says_on_failure_is_in_our_message(kit, tmp_path, capfd):
    """A G4 TIFF cut short: libtiff's complaint is part of the message that names the file."""
    rng = np.random.default_rng(1)
    noise = np.where(rng.random((1200, 900)) > 0.5, 255, 0).astype(np.uint8)
    path = tmp_path / "cut.tif"
    Image.fromarray(noise).convert("1").save(path, compression="group4")
    data = bytearray(path.read_bytes())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        e = ifd + 2 + 12 * i
        tag, _, count = struct.unpack("<HHI", data[e:e + 8])
        if tag == 279:  # strip byte counts: claim more bytes than the file has
            at = struct.unpack("<I", data[e + 8:e + 12])[0] if count > 1 else e + 8
            data[at:at + 4] = struct.pack("<I", 10 * len(data))
    path.write_bytes(bytes(data))
    capfd.readouterr()
    summary = scan_paths(kit, [path], workers=0, progress=False, actor="clerk")
    err = capfd.readouterr().err
    assert "TIFF" not in err, err
    [failed] = summary.failed
    assert failed["error"].startswith(str(path)) and "the decoder said: TIFFFillStrip" in failed["error"], failed


# --- item 20 -------------------------------------------------------------------------------------
def test_cover_code_is_signed_and_never_read_as_a_sheet(kit):
    text = payload.CoverPayload(kit.kit_id, "0" * 8 + __import__("fallbackkit.ids").ids.check_char("0" * 8),
                                12).encode(kit.secret)
    assert payload.verify_cover(text, kit.secret, kit.kit_id).sheets == 12
    with pytest.raises(PayloadError):
        payload.parse(text)  # a sheet reader refuses it
    with pytest.raises(PayloadError, match="does not verify"):
        payload.verify_cover(text[:-1] + ("0" if text[-1] != "0" else "1"), kit.secret, kit.kit_id)
    with pytest.raises(PayloadError, match="another kit"):
        payload.verify_cover(text, kit.secret, "ABCDE" + __import__("fallbackkit.ids").ids.check_char("ABCDE"))


def test_scanned_ward_pack_with_its_cover_counts_the_cover_and_quarantines_nothing(tmp_path):
    kit = census_kit(tmp_path, {"3B": 2})
    pack = print_ward(kit, "3B", tmp_path / "ward-3B.pdf", actor="coordinator", one_sided=True)
    images = render_pages(pack.out_path, dpi=150)
    assert len(images) == len(pack.sheets) + 1  # the cover, then every sheet
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i, image in enumerate(images, 1):
        write_png(inbox / f"page-{i:03d}.png", image, dpi=150)
    r = _scan(kit, inbox)
    assert r.exit_code == 0, r.output
    assert "cover sheets: 1 (ward 3B" in r.output, r.output
    db = kit.db.conn
    assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0
    assert db.execute("SELECT status, COUNT(*) FROM captures GROUP BY status ORDER BY status").fetchall() == \
        [("cover", 1), ("read", len(pack.sheets))]
    assert db.execute("SELECT COUNT(*) FROM input_files WHERE status = 'done'").fetchone()[0] == len(images)
    summary = scan_paths(kit, [inbox], workers=0, progress=False, actor="clerk")  # again: nothing new
    assert summary.cover_sheets == 0 and summary.files_already_scanned == len(images)


def test_cover_of_another_kit_is_quarantined_as_foreign(tmp_path):
    kit = census_kit(tmp_path / "a", {"3B": 1})
    other = census_kit(tmp_path / "b", {"3B": 1})
    pack = print_ward(other, "3B", tmp_path / "other.pdf", actor="x")
    cover = render_pages(pack.out_path, dpi=150)[0]
    summary = scan_paths(kit, [write_png(tmp_path / "cover.png", cover, dpi=150)], workers=0,
                         progress=False, actor="clerk")
    assert summary.cover_sheets == 0 and [q["reason"] for q in summary.quarantined] == ["foreign_kit"]


def test_a_decoder_warning_on_a_page_that_reads_is_a_note_naming_the_file(kit, blank_lab, tmp_path, capfd,
                                                                         monkeypatch):
    """Fault injected at the decode call: a C-level write to descriptor 2, as libtiff warns, while
    the page decodes fine. It becomes a `note:` naming file and page, and never reaches the console."""
    import ctypes
    from PIL import ImageFile
    libc = ctypes.CDLL(None)
    original = ImageFile.ImageFile.load

    def chatty_load(self):
        message = b"tempfile.tif: TIFFReadDirectory: Warning, Unknown field with tag 65000 (0xfde8) encountered.\n"
        libc.write(2, message, len(message))
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", chatty_load)
    path = tmp_path / "scan-0001.tif"
    Image.fromarray(render_pages(blank_lab.out_path, dpi=150)[0]).save(path, dpi=(150, 150))
    capfd.readouterr()
    summary = scan_paths(kit, [path], workers=0, progress=False, actor="clerk")
    assert "Unknown field" not in capfd.readouterr().err
    assert summary.pages_read == 1 and not summary.failed
    assert summary.decoder_notes == [{"path": str(path), "page": 1, "note": "TIFFReadDirectory: Warning, Unknown "
                                      "field with tag 65000 (0xfde8) encountered."}]
    from fallbackkit.scan.pipeline import format_summary
    assert f"note: {path} page 1: the image decoder said: TIFFReadDirectory" in format_summary(summary)


def test_scanner_pdf_whose_jpeg_is_cut_short_fails_instead_of_reading_grey_as_blank(kit, blank_lab, tmp_path, capfd):
    """OpenCV's libjpeg decodes a cut JPEG, fills the rest grey and says so on stderr only: the
    marks in the grey part would read as empty boxes. The page fails, with what libjpeg said."""
    import io

    import cv2
    import pypdfium2 as pdfium
    image = render_pages(blank_lab.out_path, dpi=150)[0]
    data = cv2.imencode(".jpg", image)[1].tobytes()
    data = data[:len(data) // 2] + b"\xff\xd9"
    pdf = pdfium.PdfDocument.new()
    sheet = pdf.new_page(595, 842)
    obj = pdfium.PdfImage.new(pdf)
    obj.load_jpeg(io.BytesIO(data), inline=False)
    obj.set_matrix(pdfium.PdfMatrix().scale(595, 842))
    sheet.insert_obj(obj)
    sheet.gen_content()
    path = tmp_path / "scanner.pdf"
    pdf.save(path)
    pdf.close()
    capfd.readouterr()
    summary = scan_paths(kit, [path], workers=0, progress=False, actor="clerk")
    assert "Corrupt JPEG" not in capfd.readouterr().err
    assert summary.pages_read == 0 and summary.pages_quarantined == 0
    [failed] = summary.failed
    assert "scanner.pdf: page 1: its image is cut short (the decoder said: Corrupt JPEG data: premature end" \
        in failed["error"], failed


def test_a_cover_of_two_pages_carries_the_code_on_both(tmp_path):
    kit = census_kit(tmp_path, {"3B": 30})
    pack = print_ward(kit, "3B", tmp_path / "ward-3B.pdf", actor="coordinator", one_sided=True)
    images = render_pages(pack.out_path, dpi=150)
    covers = len(images) - len(pack.sheets)
    assert covers >= 2, covers  # 30 beds: the cover runs over more than one page
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(covers):
        write_png(inbox / f"cover-{i}.png", images[i], dpi=150)
    summary = scan_paths(kit, [inbox], workers=0, progress=False, actor="clerk")
    assert summary.cover_sheets == covers and summary.pages_quarantined == 0
    assert {c["ward"] for c in summary.covers} == {"3B"}
