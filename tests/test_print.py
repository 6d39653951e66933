"""Printing, checked on the real output: PDFs rendered with pypdfium2, every QR decoded with
pyzbar, the text layer read back."""
import json
import os
import re
import stat

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image
from pyzbar import pyzbar

from fallbackkit import ids, payload
from fallbackkit.errors import NotFound
from fallbackkit.generate import print_all_wards, print_blank, print_patient, print_ward, sheet_geometry

from pdf_helpers import render_pages


def decode_qr(image: np.ndarray) -> list[str]:
    return [r.data.decode("ascii") for r in pyzbar.decode(Image.fromarray(image), symbols=[pyzbar.ZBarSymbol.QRCODE])]


def page_texts(pdf_path) -> list[str]:
    pdf = pdfium.PdfDocument(str(pdf_path))
    try:
        texts = []
        for page in pdf:
            tp = page.get_textpage()
            texts.append(tp.get_text_range())
            tp.close()
            page.close()
        return texts
    finally:
        pdf.close()


def test_ward_pack_codes_verify_are_unique_and_in_order(kit, ward_pack):
    images = render_pages(ward_pack.out_path, dpi=150)
    assert len(images) == len(ward_pack.sheets) + 1  # the cover page comes first
    assert decode_qr(images[0]) == []  # the cover is not a form
    seen = []
    for image, sheet in zip(images[1:], ward_pack.sheets):
        codes = decode_qr(image)
        assert len(codes) == 1
        p = payload.verify(codes[0], kit.secret, kit.kit_id)
        assert (p.sheet_id, p.template, p.page, p.pages) == \
            (sheet["sheet_id"], sheet["template"], sheet["page"], sheet["pages"])
        seen.append(p.sheet_id)
    assert len(set(seen)) == len(seen)


def test_no_patient_data_in_codes(kit, ward_pack):
    """Each code is exactly what the registry's non-patient fields sign, and holds no patient value."""
    sheets = {s["sheet_id"]: s for s in ward_pack.sheets}
    patients = list(kit.db.query("SELECT * FROM patients WHERE ward = '3B'"))
    images = render_pages(ward_pack.out_path, dpi=150)
    for image in images[1:]:
        code = decode_qr(image)[0]
        p = payload.parse(code)
        s = sheets[p.sheet_id]
        rebuilt = payload.SheetPayload(kit.kit_id, s["template"], s["version"], s["sheet_id"], s["page"], s["pages"])
        assert code == rebuilt.encode(kit.secret)
        for patient in patients:
            for value in (patient["mrn"], patient["last_name"], patient["first_name"], patient["birth_date"],
                          patient["encounter"]):
                # short values could turn up by chance in the random id and signature
                if len(value) >= 5:
                    assert value.upper() not in code.upper()


def test_pack_is_in_bed_order_and_prints_two_identifiers(kit, ward_pack):
    texts = page_texts(ward_pack.out_path)
    patients = {p["mrn"]: p for p in kit.db.query("SELECT * FROM patients WHERE ward = '3B'")}
    beds = []
    for text, sheet in zip(texts[1:], ward_pack.sheets):
        p = patients[sheet["patient_mrn"]]
        assert p["last_name"].upper() in text and p["first_name"] in text
        assert f"MRN {p['mrn']}" in text and p["birth_date"] in text
        assert ids.pretty_sheet_id(sheet["sheet_id"]) in text
        assert "data as of 2026-11-28T06:00:00+01:00" in text
        beds.append(int(p["bed"]))
    assert beds == sorted(beds)
    templates = [s["template"] for s in ward_pack.sheets if s["patient_mrn"] == ward_pack.sheets[0]["patient_mrn"]]
    assert list(dict.fromkeys(templates)) == ["registration", "lab-request", "mar", "vitals"]
    assert f"{len(patients)} patients" in texts[0]


def test_accented_names_print_with_embedded_fonts(kit, tmp_path):
    kit.db.conn.execute("UPDATE patients SET last_name = 'Łukasiewicz-Nguyễn', first_name = 'Zoë' WHERE mrn = "
                        "(SELECT mrn FROM patients WHERE ward = 'ICU' LIMIT 1)")
    kit.db.conn.commit()
    result = print_ward(kit, "ICU", tmp_path / "icu.pdf", langs=("fr", "nl"))
    texts = page_texts(result.out_path)
    assert any("ŁUKASIEWICZ-NGUYỄN, Zoë" in t for t in texts)
    raw = result.out_path.read_bytes()
    assert b"/FontFile2" in raw  # TrueType embedded, not a base-14 font
    assert any("Identité du patient / Identiteit van de patiënt" in t for t in texts)


def test_mar_prints_the_patients_medications(kit, ward_pack):
    texts = page_texts(ward_pack.out_path)
    for sheet, text in zip(ward_pack.sheets, texts[1:]):
        if sheet["template"] == "mar" and sheet["page"] == 1:
            meds = [m["medication"] for m in kit.db.query(
                "SELECT medication FROM medications WHERE mrn = ? AND prn = 0 ORDER BY line", [sheet["patient_mrn"]])]
            assert meds and meds[0] in text


def test_blank_stock_allocates_fresh_downtime_ids_never_reused(kit, tmp_path):
    first = print_blank(kit, "registration", 3, tmp_path / "a.pdf")
    second = print_blank(kit, "lab-request", 2, tmp_path / "b.pdf")
    mrns = [s["mrn"] for s in first.sheets if s["page"] == 1] + [s["mrn"] for s in second.sheets]
    assert len(mrns) == 5 and len(set(mrns)) == 5
    assert all(re.fullmatch(r"DTM\d{8}", m) for m in mrns)
    assert {s["encounter"] for s in first.sheets if s["page"] == 1}.__len__() == 3
    assert all(s["accession"].startswith("DTA") for s in second.sheets)
    texts = page_texts(second.out_path)
    for text, sheet in zip(texts, second.sheets):
        assert sheet["mrn"] in text and sheet["accession"] in text
    stored = {r[0] for r in kit.db.execute("SELECT value FROM downtime_ids WHERE kind = 'mrn'")}
    assert set(mrns) == stored
    geometry = sheet_geometry(kit, second.sheets[0]["sheet_id"])
    names = {f["name"] for f in geometry["fields"]}
    assert {"patient_name", "patient_birth_date"} <= names


def test_registry_and_geometry(kit, ward_pack):
    count = kit.db.execute("SELECT COUNT(*) FROM sheets WHERE batch_id = ?", [ward_pack.batch_id]).fetchone()[0]
    assert count == len(ward_pack.sheets)
    sheet = next(s for s in ward_pack.sheets if s["template"] == "lab-request")
    geometry = sheet_geometry(kit, ids.pretty_sheet_id(sheet["sheet_id"]).lower())
    assert geometry["page_size_mm"] == [210.0, 297.0]
    fields = {f["name"]: f for f in geometry["fields"]}
    assert [o["value"] for o in fields["priority"]["options"]] == ["routine", "urgent", "stat"]
    assert fields["collector_initials"]["type"] == "initials" and len(fields["collector_initials"]["box_mm"]) == 4
    with pytest.raises(NotFound):
        sheet_geometry(kit, ids.new_sheet_id())


def test_qr_is_about_25mm_and_marks_tell_orientation(kit, blank_lab):
    dpi = 200
    image = render_pages(blank_lab.out_path, dpi=dpi)[0]
    found = pyzbar.decode(Image.fromarray(image), symbols=[pyzbar.ZBarSymbol.QRCODE])[0]
    width_mm = found.rect.width / dpi * 25.4
    assert 23 <= width_mm <= 26
    geometry = sheet_geometry(kit, blank_lab.sheets[0]["sheet_id"])
    px = dpi / 25.4
    holes = {}
    for corner, (x, y, w, h) in geometry["marks_mm"].items():
        centre = image[int((y + h / 2) * px) - 2:int((y + h / 2) * px) + 3, int((x + w / 2) * px) - 2:int((x + w / 2) * px) + 3]
        edge = image[int((y + 1) * px), int((x + 1) * px)]
        assert edge < 80, f"{corner} mark not printed"
        holes[corner] = centre.mean() > 170
    assert holes == {"tl": False, "tr": False, "bl": False, "br": True}


def test_all_wards_writes_one_pack_per_ward(kit, tmp_path):
    results = print_all_wards(kit, tmp_path / "packs")
    assert sorted(p.name for p in (tmp_path / "packs").iterdir() if not p.name.startswith(".")) == ["ward-3B.pdf", "ward-ICU.pdf"]
    assert {r.ward for r in results} == {"3B", "ICU"}


def test_failed_print_leaves_no_file_and_no_registry_rows(kit, tmp_path, monkeypatch):
    from fallbackkit.generate import issue

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    before = kit.db.execute("SELECT COUNT(*) FROM sheets").fetchone()[0]
    monkeypatch.setattr(issue, "write_pdf", explode)
    with pytest.raises(RuntimeError):
        print_ward(kit, "3B", tmp_path / "out.pdf")
    assert not (tmp_path / "out.pdf").exists()
    assert kit.db.execute("SELECT COUNT(*) FROM sheets").fetchone()[0] == before
    assert kit.db.execute("SELECT COUNT(*) FROM downtime_ids").fetchone()[0] == 0


def test_single_patient_form_and_pdf_is_private(kit, tmp_path):
    mrn = kit.db.execute("SELECT mrn FROM patients LIMIT 1").fetchone()[0]
    result = print_patient(kit, "vitals", mrn, tmp_path / "v.pdf")
    assert [s["page"] for s in result.sheets] == [1, 2]
    assert stat.S_IMODE(os.stat(result.out_path).st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(NotFound, match="no patient with MRN"):
        print_patient(kit, "vitals", "nope", tmp_path / "x.pdf")
    audit = [json.loads(r[0]) for r in kit.db.execute("SELECT after FROM audit WHERE action = 'print'")]
    assert audit[-1]["kind"] == "patient"
