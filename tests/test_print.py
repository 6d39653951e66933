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

from kit_helpers import drawn_sheets
from pdf_helpers import render_pages


def decode_qr(image: np.ndarray) -> list[str]:
    return [r.data.decode("ascii") for r in pyzbar.decode(Image.fromarray(image), symbols=[pyzbar.ZBarSymbol.QRCODE])]


def page_texts(pdf_path) -> list[str]:
    """The text of each printed page, in order: the cover, then one per sheet. The blank backs a
    double-sided pack has between forms (pages with nothing on them) are left out."""
    pdf = pdfium.PdfDocument(str(pdf_path))
    try:
        texts = []
        for page in pdf:
            if len(list(page.get_objects())):
                tp = page.get_textpage()
                texts.append(tp.get_text_range())
                tp.close()
            page.close()
        return texts
    finally:
        pdf.close()


def test_ward_pack_codes_verify_are_unique_and_in_order(kit, tmp_path):
    """The pack has two-page forms (vitals, the MARs of 8 drugs): it asks to be printed double-sided
    on the long edge, each form starts on a front (PDF page 1, 3, 5 …), a blank back after a form
    that ends on a front, so that a form's page 2 is the back of its page 1 and no sheet of paper
    holds two forms."""
    ward_pack = print_ward(kit, "3B", tmp_path / "ward-3B.pdf", actor="tester")
    images = render_pages(ward_pack.out_path, dpi=150)
    assert b"/Duplex /DuplexFlipLongEdge" in ward_pack.out_path.read_bytes()
    [cover] = decode_qr(images[0])  # the cover is not a form: its code is a cover code, not a sheet's
    assert payload.verify_cover(cover, kit.secret, kit.kit_id) == \
        payload.CoverPayload(kit.kit_id, ward_pack.sheets[0]["sheet_id"], len(ward_pack.sheets))
    printed = [(k, image) for k, image in enumerate(images) if image.min() < 255]
    blank = len(images) - len(printed)
    assert len(printed) == len(ward_pack.sheets) + 1 and blank > 0  # the cover page comes first
    for (k, _), sheet in zip(printed[1:], ward_pack.sheets):
        assert k % 2 == sheet["page"] - 1, (k, sheet)  # page 1 on a front (0-based even), page 2 its back
    images = [image for _, image in printed]
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
        if image.min() == 255:  # the blank back after a one-page form of a double-sided pack
            continue
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
        y, m, d = p["birth_date"].split("-")
        assert f"MRN {p['mrn']}" in text and f"{d}/{m}/{y}" in text  # the forms' own order, not ISO
        assert ids.pretty_sheet_id(sheet["sheet_id"]) in text
        assert "data as of 28/11/2026 06:00" in text
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


def _worst_case_kit(tmp_path):
    """A census at its worst: long names, four long allergies, eight long drug names and doses."""
    import csv

    from fallbackkit.generate import import_census
    from fallbackkit.store import init_kit
    kit = init_kit(tmp_path / "worst", actor="tester")
    patients, meds = tmp_path / "p.csv", tmp_path / "m.csv"
    with patients.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mrn", "encounter", "last_name", "first_name", "birth_date", "sex", "ward", "bed", "allergies"])
        w.writerow(["M1000001", "E2000001", "Vandenbroucke-Schellekens de Wilde", "Marie-Christine Élisabeth",
                    "1948-03-07", "F", "3B", "12", WORST_ALLERGIES])
    with meds.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mrn", "medication", "dose", "route", "frequency", "scheduled_times", "prn"])
        for i in range(8):
            w.writerow(["M1000001", f"Insulin aspart (sliding scale per protocol) {i}",
                        "according to blood glucose 2-12 units", "subcutaneous", "three times daily before meals",
                        "08:00;12:00;18:00", "0"])
        w.writerow(["M1000001", "Paracetamol intravenous infusion", "1 g", "IV", "max 4x daily", "", "1"])
    import_census(kit, patients, meds, actor="tester", as_of="2026-11-28T06:00:00+01:00")
    return kit


WORST_ALLERGIES = ("penicillin (anaphylaxis); sulfamethoxazole-trimethoprim (rash); iodinated contrast media "
                   "(urticaria); latex (contact dermatitis); peanut and tree nut proteins (angioedema)")


@pytest.mark.parametrize("langs", [("en",), ("fr",), ("nl",), ("fr", "nl")])
def test_worst_case_census_keeps_text_clear_of_code_marks_and_margins(tmp_path, langs, monkeypatch):
    """Every text box drawn (form furniture and the per-sheet header) stays inside the margins and
    out of the QR zone and the corner marks; and the ink on the rendered page agrees. The worst
    case's MAR (8 long orders, a PRN drug, five long allergies) is laid out dense: 2 sheets in
    en, fr, nl and fr+nl (3 before)."""
    from fallbackkit.templates.layout import MARGIN, mark_boxes, qr_zone, text_box
    kit = _worst_case_kit(tmp_path)
    drawn = drawn_sheets(monkeypatch)
    # two dated MARs (print --days 2): the day line, the held-code boxes, the PRN reason and effect,
    # the new orders' prescriber and the initials legend are all checked with the rest
    from fallbackkit.generate.issue import outage_days
    result = print_ward(kit, "3B", tmp_path / "w.pdf", langs=langs, days=outage_days(kit, 2, "2026-12-01"))
    assert drawn and len(drawn) == len(result.sheets)
    mar_fields = {f["name"] for s in drawn if s.layout.template == "mar" for f in s.layout.fields}
    mar_pages = {s.layout.pages for s in drawn if s.layout.template == "mar"}
    assert mar_pages == {2}, mar_pages
    assert {"m8.s3.held", "p1.s4.reason", "p1.s4.effect", "n1.prescriber", "n1.ordered", "l4.name"} <= mar_fields
    for sheet in drawn:
        w, h = sheet.layout.size_mm
        forbidden = [qr_zone((w, h))] + list(mark_boxes((w, h)).values())
        for item in sheet.layout.items + sheet.header:
            if item[0] != "text":
                continue
            x0, y0, x1, y1 = text_box(item)
            assert MARGIN - 0.01 <= x0 and x1 <= w - MARGIN + 0.01, item
            assert MARGIN - 0.01 <= y0 and y1 <= h - MARGIN + 0.01, item
            for fx, fy, fw, fh in forbidden:
                assert x1 <= fx or x0 >= fx + fw or y1 <= fy or y0 >= fy + fh, (item, (fx, fy, fw, fh))
        body_top = min(item[2] for item in sheet.layout.items if item[0] == "rect" and item[2] >= 45)
        for item in sheet.header:
            assert item[0] != "text" or text_box(item)[3] <= body_top, item  # header never runs into the body
    texts = page_texts(result.out_path)
    mar = [t for t, s in zip(texts[1:], result.sheets) if s["template"] == "mar"]
    joined = " ".join(" ".join(mar).split())
    assert "Insulin aspart (sliding scale per protocol) 7" in joined  # wrapped, not cut
    assert "according to blood glucose 2-12 units subcutaneous" in joined
    assert "…" not in " ".join(mar).split("ALLERGI")[0]
    # the header's allergy box says "see list", and the full list is on the sheet
    first = " ".join(texts[1].split())
    assert any(words in first for words in ("see list below", "voir liste ci-dessous", "zie lijst hieronder"))
    assert "peanut and tree nut proteins (angioedema)" in first
    # ink: nothing but the code in the QR zone's quiet ring, nothing past the margins
    px = 150 / 25.4
    for image in render_pages(result.out_path, dpi=150)[1:]:
        qx, qy, qw, qh = qr_zone((210.0, 297.0))
        ring = image[int((qy + 0.5) * px):int((qy + 2.5) * px), int((qx + 0.5) * px):int((qx + qw - 0.5) * px)]
        assert ring.min() > 200, "ink in the QR quiet zone"
        right = image[int(MARGIN * px):int((297 - MARGIN) * px), int((210 - MARGIN + 0.6) * px):int((210 - 15) * px)]
        assert right.min() > 200, "ink past the right margin"


def test_sections_kept_together_and_no_near_empty_pages(kit, tmp_path):
    """Issue 15 item 2: 7 sheets per patient before (en), 5 now: registration, lab request and a MAR
    for up to 8 medications on one sheet each; the vitals' second band of columns is page 2 and its
    heading says "(continued)"; in fr/nl a section is never split from its own heading."""
    from fallbackkit.templates import layout_form
    from fallbackkit.generate.issue import kit_templates
    result = print_ward(kit, "3B", tmp_path / "w.pdf")
    per_patient: dict[str, dict[str, int]] = {}
    for s in result.sheets:
        per_patient.setdefault(s["patient_mrn"], {}).setdefault(s["template"], 0)
        per_patient[s["patient_mrn"]][s["template"]] += 1
    most_meds = max(kit.db.execute("SELECT COUNT(*) FROM medications GROUP BY mrn").fetchall())[0]
    assert most_meds == 8
    for mrn, counts in per_patient.items():
        assert {k: v for k, v in counts.items() if k != "mar"} == {"registration": 1, "lab-request": 1, "vitals": 2}
        assert counts["mar"] in (1, 2)
    # issue 15 item 4 added held codes, PRN reason codes and effect with a slot per dose the
    # frequency allows (q4h: 6), prescriber and order time on new orders and the initials legend:
    # 5 of 8 MARs stay on one sheet (6 before); the others are two
    assert sum(c["mar"] == 1 for c in per_patient.values()) >= 5
    sheets_of = {s["sheet_id"]: s for s in result.sheets}
    for s in result.sheets:
        if s["template"] == "mar" and s["page"] == 2:  # not an orphan row: new orders and signatures
            names = {f["name"] for f in sheet_geometry(kit, s["sheet_id"])["fields"]}
            assert {"l1.initials", "l4.signature", "n1.order", "n2.order"} <= names, names
    assert sheets_of
    assert sum(sum(c.values()) for c in per_patient.values()) / len(per_patient) <= 5.375  # was 7, 5.25 before item 4
    texts = page_texts(result.out_path)
    vitals_2 = [t for t, s in zip(texts[1:], result.sheets) if s["template"] == "vitals" and s["page"] == 2]
    assert all("Observations (continued)" in t for t in vitals_2)
    templates = kit_templates(kit)
    for name in ("registration", "mar", "vitals", "lab-request"):
        for langs in (("en",), ("fr", "nl")):
            pages = layout_form(templates[name], "a4", langs)
            for section in templates[name].sections:
                names = {f.name for f in section.fields}
                on = {p.page for p in pages for f in p.fields if f["name"] in names}
                assert len(on) <= 1, (name, langs, section.name if hasattr(section, "name") else names)
            if len(pages) > 1:  # a second page is not near-empty
                assert len(pages[-1].fields) >= 5, (name, langs)


def test_fr_nl_pack_cover_and_footer_in_the_chosen_languages(kit, tmp_path):
    """Issue 15 item 5: the cover sheet is all fr/nl, dates dd/mm/yyyy; titles wrap (never cut);
    the footer instruction does not run into the form code."""
    from fallbackkit.templates.layout import text_box
    result = print_ward(kit, "3B", tmp_path / "w.pdf", langs=("fr", "nl"))
    cover = page_texts(result.out_path)[0]
    for english in ("This cover page", "printed", "sheets", "downtime pack", "data as of"):
        assert english not in cover
    assert "Dit voorblad is geen formulier" in cover and "données du / gegevens van 28/11/2026 06:00" in cover
    texts = page_texts(result.out_path)
    registration = next(t for t, s in zip(texts[1:], result.sheets) if s["template"] == "registration")
    assert "Registratie / opname (noodprocedure)" in registration and "…" not in registration
    sheet = next(s for s in result.sheets if s["template"] == "registration")
    from fallbackkit.generate.issue import kit_templates
    from fallbackkit.templates import layout_form
    layout = layout_form(kit_templates(kit)["registration"], "a4", ("fr", "nl"))[0]
    footer = [text_box(i) for i in layout.items if i[0] == "text" and i[2] > 260]
    for a in footer:
        for b in footer:
            if a is not b:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    vitals = layout_form(kit_templates(kit)["vitals"], "a4", ("en",))[0]
    labels = " ".join(i[5] for i in vitals.items if i[0] == "text")
    assert "Unresponsive" in labels and "Unresp…" not in labels
    assert sheet


def test_blank_set_shares_one_downtime_mrn_and_encounter(kit, tmp_path):
    """Issue 15 item 3: `print --blank-set 2` gives two sets of every patient form; within a set
    one downtime MRN and encounter (and each lab request its own accession), across sets none
    shared; every blank form has name, birth date, sex, ward, bed and allergy boxes."""
    from click.testing import CliRunner
    from fallbackkit.cli import cli
    out = tmp_path / "sets.pdf"
    res = CliRunner().invoke(cli, ["--kit", str(kit.path), "print", "--blank-set", "2", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    forms = list(kit.db.query("SELECT * FROM forms ORDER BY rowid"))
    assert [f["template"] for f in forms] == ["registration", "lab-request", "mar", "vitals"] * 2
    sets = [forms[:4], forms[4:]]
    for group in sets:
        assert len({f["downtime_mrn"] for f in group}) == 1 and group[0]["downtime_mrn"].startswith("DTM")
        assert len({f["encounter"] for f in group}) == 1 and group[0]["encounter"]
        assert next(f for f in group if f["template"] == "lab-request")["accession"].startswith("DTA")
    assert sets[0][0]["downtime_mrn"] != sets[1][0]["downtime_mrn"]
    assert sets[0][0]["encounter"] != sets[1][0]["encounter"]
    texts = page_texts(out)
    sheets = json.loads(res.stdout)
    for text, sheet in zip(texts, sheets):
        form = next(f for f in forms if f["form_id"] == sheet["form_id"])
        assert form["downtime_mrn"] in text and form["encounter"] in text
    need = {"patient_name", "patient_birth_date", "patient_sex", "patient_ward", "patient_bed",
            "patient_allergies_known", "patient_allergies"}
    for form in forms:
        if form["template"] == "registration":
            continue  # its own identity, ward, bed and allergy fields
        first = next(s for s in sheets if s["form_id"] == form["form_id"])
        names = {f["name"] for f in sheet_geometry(kit, first["sheet_id"])["fields"]}
        assert need <= names, (form["template"], need - names)


def test_blank_stock_pdf_is_compact_binary_and_every_code_reads(kit, tmp_path):
    """Issue 15 item 17 (speed is measured in bench/bench_print.py): the code is written as one
    run of rectangles in module units and streams are not ASCII85-encoded; codes still decode."""
    result = print_blank(kit, "lab-request", 20, tmp_path / "b.pdf")
    raw = result.out_path.read_bytes()
    assert b"/ASCII85Decode" not in raw
    images = render_pages(result.out_path, dpi=150)
    assert [len(decode_qr(i)) for i in images] == [1] * 20


def test_mar_content_of_real_paper_mars(kit, tmp_path):
    """Issue 15 item 4: new-order rows with prescriber and order time; PRN rows with reason and
    effect and a slot per dose the frequency allows over the day (q4h: 6, q8h: 3, no interval:
    3); a held-code box in every slot with status marks; the initials legend (numbered rows of
    initials, name, signature); print --days N: one dated MAR per patient per day, registered."""
    from fallbackkit.generate.issue import outage_days
    from fallbackkit.templates.model import prn_slot_count
    assert [prn_slot_count(f) for f in ("q4h PRN pain", "q8h PRN nausea", "PRN anxiety", "max 4x daily",
                                        "every 6 hours", "toutes les 12 heures")] == [6, 3, 3, 4, 4, 2]
    days = outage_days(kit, 3, "2026-12-01")
    assert days == ["2026-12-01", "2026-12-02", "2026-12-03"]
    result = print_ward(kit, "3B", tmp_path / "w.pdf", days=days)
    mars = kit.db.execute("SELECT form_id, patient_mrn, context FROM forms WHERE template = 'mar' AND batch_id = ?",
                          [result.batch_id]).fetchall()
    per_patient: dict[str, list[str]] = {}
    for _, mrn, context in mars:
        per_patient.setdefault(mrn, []).append(json.loads(context)["day"])
    assert len(per_patient) == 8 and all(sorted(d) == days for d in per_patient.values())
    others = kit.db.execute("SELECT COUNT(*) FROM forms WHERE template != 'mar' AND batch_id = ?",
                            [result.batch_id]).fetchone()[0]
    assert others == 8 * 3  # registration, lab request, vitals: once per patient
    texts = page_texts(result.out_path)
    mar_texts = [" ".join(t.split()) for t, s in zip(texts[1:], result.sheets) if s["template"] == "mar"]
    for day, label in (("2026-12-01", "Day 1/3: 01/12/2026"), ("2026-12-03", "Day 3/3: 03/12/2026")):
        assert any(label in t for t in mar_texts), label
    registered = {r[0] for r in kit.db.execute("SELECT sheet_id FROM sheets WHERE batch_id = ?", [result.batch_id])}
    assert registered == {s["sheet_id"] for s in result.sheets}
    # what each row and slot carries, from the recorded geometry
    prn_q4h = kit.db.execute("SELECT mrn FROM medications WHERE frequency LIKE 'q4h%' LIMIT 1").fetchone()[0]
    form = next(f for f, mrn, _ in mars if mrn == prn_q4h)
    fields = {f["name"]: f for s in result.sheets if s["form_id"] == form
              for f in sheet_geometry(kit, s["sheet_id"])["fields"]}
    prn_rows = {n.split(".")[0] for n in fields if n.startswith("p") and n.endswith(".given")}
    q4h_row = next(r for r in prn_rows if sum(n.startswith(r + ".") and n.endswith(".given") for n in fields) == 6)
    assert {f"{q4h_row}.s6.reason", f"{q4h_row}.s6.effect", f"{q4h_row}.s6.time", f"{q4h_row}.s6.initials"} <= set(fields)
    assert [o["value"] for o in fields[f"{q4h_row}.s1.effect"]["options"]] == ["better", "same", "worse"]
    assert f"{q4h_row}.s1.held" not in fields  # a PRN dose is given or not: no held code
    reason = fields[f"{q4h_row}.s1.reason"]  # why it was given: a code digit, like the held one
    assert reason["type"] == "number" and len(reason["cells_mm"]) == 1
    held = fields["m1.s1.held"]
    assert held["type"] == "number" and held["digits"] == 1 and len(held["cells_mm"]) == 1
    blank = print_blank(kit, "mar", 1, tmp_path / "blank.pdf")  # blank stock: every row a new order
    stock = {f["name"]: f for s in blank.sheets for f in sheet_geometry(kit, s["sheet_id"])["fields"]}
    assert stock["n6.prescriber"]["type"] == "text" and stock["n6.ordered"]["format"] == "time"
    assert "n1.s3.held" in stock and "l4.initials" in stock
    assert [fields[f"l{k}.initials"]["legend"] for k in range(1, 5)] == [1, 2, 3, 4]
    assert fields["l1.signature"]["transcribe"] == "ink-only" and fields["l1.name"]["type"] == "text"
    # the held-code box is clear of the initials box and inside its slot
    ix, _, iw, _ = fields["m1.s1.initials"]["box_mm"]
    hx = held["box_mm"][0]
    assert ix + iw + 1.0 <= hx
    with pytest.raises(Exception, match="--days 0"):
        outage_days(kit, 0)


def test_print_days_through_the_cli(kit, tmp_path):
    from click.testing import CliRunner

    from fallbackkit.cli import cli
    runner = CliRunner()
    ok = runner.invoke(cli, ["--kit", str(kit.path), "print", "--ward", "ICU", "--days", "2", "--first-day",
                             "2026-12-01", "--out", str(tmp_path / "icu.pdf"), "--json"])
    assert ok.exit_code == 0, ok.output
    sheets = json.loads(ok.stdout)
    forms = {s["form_id"] for s in sheets if s["template"] == "mar"}
    assert len(forms) == 4 * 2  # 4 ICU patients, 2 days
    bad = runner.invoke(cli, ["--kit", str(kit.path), "print", "registration", "--blank", "2", "--days", "2",
                              "--out", str(tmp_path / "x.pdf")])
    assert bad.exit_code != 0 and "--days goes with --ward or --patient" in bad.output
    bad = runner.invoke(cli, ["--kit", str(kit.path), "print", "--ward", "ICU", "--days", "2", "--first-day",
                              "1/12/2026", "--out", str(tmp_path / "y.pdf")])
    assert bad.exit_code != 0 and "YYYY-MM-DD" in bad.output


def test_one_sided_prints_no_blank_backs_and_says_double_sided_otherwise(kit, tmp_path):
    """A ward pack with two-page forms asks for double-sided printing (the command says so); for a
    printer without duplex, `--one-sided` gives one page per sheet, no blank backs, no duplex request,
    the same sheets registered."""
    from click.testing import CliRunner
    from fallbackkit.cli import cli
    runner = CliRunner()
    counts = {}
    for flag in ([], ["--one-sided"]):
        out = tmp_path / f"pack{len(flag)}.pdf"
        res = runner.invoke(cli, ["--kit", str(kit.path), "print", "--ward", "3B", "--out", str(out), *flag])
        assert res.exit_code == 0, res.output
        raw = out.read_bytes()
        pdf = pdfium.PdfDocument(str(out))
        counts[bool(flag)] = (len(pdf), sum(1 for page in pdf if not len(list(page.get_objects()))))
        assert (b"/DuplexFlipLongEdge" in raw) is not bool(flag)
        assert ("print double-sided" in res.stderr) is not bool(flag)
        cover = page_texts(out)[0]
        assert ("PRINT DOUBLE-SIDED" in cover) is not bool(flag)
        # 8 patients: registration, lab request, MAR (one or two pages), vitals (two): 4 sheets of paper each
        assert ("43 sheets on 32 sheets of paper, double-sided" in cover) is not bool(flag), cover
    sheets = kit.db.execute("SELECT COUNT(*) FROM sheets s JOIN print_batches b ON b.id = s.batch_id"
                            " GROUP BY b.id ORDER BY b.id").fetchall()
    assert sheets[0] == sheets[1]
    assert counts[True] == (sheets[1][0] + 1, 0)  # the cover and one page per sheet
    assert counts[False][0] == sheets[0][0] + 1 + counts[False][1] and counts[False][1] > 0
