"""Issue 15 item 2: what one A4 sheet of MAR holds. A MAR that would need a second page is laid out
dense (templates/layout.py DENSE) when that keeps it on one; otherwise it is two-sided (one sheet,
front and back): every medication row on the front, new orders and the nurses' legend on the back.
Checked on the printed PDF (pages, every slot, the blank new-order row, the initials legend, no text
over the code, the marks or the margins, long-edge duplex) and on its scan (every slot read, nothing
wrong accepted; the two sides scanned apart; a double-sided pack scanned double-sided)."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from fallbackkit.generate import import_census, print_patient, print_ward, sheet_geometry
from fallbackkit.scan.degrade import degrade
from fallbackkit.scan.read import MARK_TYPES
from fallbackkit.scan.simulate import fill_page
from fallbackkit.store import init_kit
from fallbackkit.templates.layout import MARGIN, mark_boxes, qr_zone, text_box
from kit_helpers import drawn_sheets
from scan_engine_helpers import DPI, Sheets, mark

FOUR_ALLERGIES = "penicillin; latex; peanut; iodine"
QID = ("Paracetamol", "1 g", "PO", "QID", "06:00;12:00;18:00;24:00", "0")
TID = ("Amoxicillin/clavulanate", "1 g", "IV", "TID", "06:00;14:00;22:00", "0")
PRN = ("Ondansetron", "4 mg", "IV", "q8h PRN nausea", "", "1")
# the most a sheet holds (a four-dose drug, three-dose drugs and a PRN drug; short names)
ONE_SHEET = {("en",): 6, ("fr",): 6, ("nl",): 6, ("fr", "nl"): 5}


def _kit(tmp_path, meds: list[tuple], allergies: str = FOUR_ALLERGIES):
    kit = init_kit(tmp_path / "kit", actor="tester")
    patients, med_file = tmp_path / "p.csv", tmp_path / "m.csv"
    with patients.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mrn", "encounter", "last_name", "first_name", "birth_date", "sex", "ward", "bed", "allergies"])
        w.writerow(["M1000001", "E2000001", "Peeters", "Anna", "1948-03-07", "F", "3B", "12", allergies])
    with med_file.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mrn", "medication", "dose", "route", "frequency", "scheduled_times", "prn"])
        for med in meds:
            w.writerow(["M1000001", *med])
    import_census(kit, patients, med_file, actor="tester", as_of="2026-11-28T06:00:00+01:00")
    return kit


def _meds(n: int) -> list[tuple]:
    """n medications: a four-dose drug, three-dose drugs, one PRN drug."""
    return [QID] + [(f"{TID[0]} {k}", *TID[1:]) for k in range(n - 2)] + [PRN]


def _text_clear(layout, header) -> None:
    """Every text box inside the margins, out of the QR zone and the corner marks."""
    w, h = layout.size_mm
    forbidden = [qr_zone((w, h))] + list(mark_boxes((w, h)).values())
    for item in layout.items + header:
        if item[0] != "text":
            continue
        x0, y0, x1, y1 = text_box(item)
        assert MARGIN - 0.01 <= x0 and x1 <= w - MARGIN + 0.01, item
        assert MARGIN - 0.01 <= y0 and y1 <= h - MARGIN + 0.01, item
        for fx, fy, fw, fh in forbidden:
            assert x1 <= fx or x0 >= fx + fw or y1 <= fy or y0 >= fy + fh, (item, (fx, fy, fw, fh))


def _status_to_time_gap(fields: dict) -> float:
    status = fields["m1.s1.status"]["options"][0]["box_mm"]
    return round(fields["m1.s1.time"]["box_mm"][1] - (status[1] + status[3]), 2)


@pytest.mark.parametrize("langs", list(ONE_SHEET), ids="+".join)
def test_a_four_dose_drug_and_a_prn_drug_fit_one_sheet_with_a_new_order_row_and_the_legend(tmp_path, langs,
                                                                                            monkeypatch):
    """The most one sheet holds (ONE_SHEET, docs/ward.md). Before this round a sheet held 4 such
    drugs with a blank new-order row in en, fr or nl (6 by dropping the row), fr+nl 3 (5 without)."""
    n = ONE_SHEET[langs]
    kit = _kit(tmp_path, _meds(n))
    drawn = drawn_sheets(monkeypatch)
    result = print_patient(kit, "mar", "M1000001", tmp_path / "mar.pdf", langs=langs)
    assert len(result.sheets) == 1
    fields = {f["name"]: f for f in sheet_geometry(kit, result.sheets[0]["sheet_id"])["fields"]}
    slots = {name.rsplit(".", 1)[0] for name in fields if name.endswith(".status") or name.endswith(".given")}
    assert {f"m1.s{k}" for k in range(1, 5)} <= slots  # the four doses
    assert {f"m{m}.s3" for m in range(2, n)} <= slots and "p1.s3" in slots  # three-dose drugs, the PRN drug
    for slot in slots:  # a whole slot: time, initials and its code box
        assert {f"{slot}.time", f"{slot}.initials"} <= set(fields), slot
    assert {"n1.order", "n1.prescriber", "n1.ordered", "n1.s1.status"} <= set(fields)  # a blank new order
    assert {"l1.initials", "l4.signature", "mar_date", "allergies_checked"} <= set(fields)
    assert _status_to_time_gap(fields) == 1.5  # the dense slot (2.0 on a normal MAR)
    assert len(drawn) == 1
    _text_clear(drawn[0].layout, drawn[0].header)
    header_text = " ".join(i[5] for i in drawn[0].header if i[0] == "text")
    assert "penicillin; latex; peanut; iodine" in header_text  # the four allergies in the header's box


WORST_MEDS = [("Insulin aspart (sliding scale per protocol)", "according to blood glucose 2-12 units", "subcutaneous",
               "four times daily before meals and at night", "07:30;11:30;17:30;22:00", "0")] + [
    (f"Amoxicillin/clavulanic acid {k} (co-amoxiclav)", "1 g / 200 mg in 100 mL", "intravenous infusion",
     "three times daily", "06:00;14:00;22:00", "0") for k in range(6)] + [
    ("Morphine sulfate oral solution", "2.5-5 mg", "PO", "q4h PRN breakthrough pain", "", "1")]
WORST_ALLERGIES = ("penicillin (anaphylaxis); iodinated contrast media (urticaria); latex (contact dermatitis); "
                   "peanut and tree nut proteins (angioedema)")


@pytest.mark.parametrize("langs", [("en",), ("fr",), ("nl",), ("fr", "nl")], ids="+".join)
def test_the_worst_case_mar_has_every_medication_on_the_front_of_one_sheet(tmp_path, langs, monkeypatch):
    """8 drugs with long names and doses (a four-dose drug, a q4h PRN drug: 6 slots), four long
    allergies: a two-sided MAR, one sheet printed on both sides. The front (page 1) holds the Day
    line, the header with the allergies and every medication row; the back (page 2) the blank PRN
    row, new-order rows and the nurses' legend. Before: 2 pages with the 7th drug and the PRN drug
    on page 2. The PDF asks for long-edge duplex; text clear of the code, the marks and the
    margins, no header line starting with "·"; every slot of both sides read back from an office scan."""
    from fallbackkit.scan.engine import read_page
    kit = _kit(tmp_path, WORST_MEDS, WORST_ALLERGIES)
    drawn = drawn_sheets(monkeypatch)
    result = print_patient(kit, "mar", "M1000001", tmp_path / "mar.pdf", langs=langs)
    assert [s["page"] for s in result.sheets] == [1, 2]
    assert b"/Duplex /DuplexFlipLongEdge" in result.out_path.read_bytes()
    rows = [{f.get("row", f["name"]) for f in sheet_geometry(kit, s["sheet_id"])["fields"]} for s in result.sheets]
    medication_rows = {f"m{k}" for k in range(1, 8)} | {"p1"}
    assert medication_rows | {"mar_date", "weight", "allergies_checked"} <= rows[0]
    assert not medication_rows & rows[1]
    assert {"n1", "n2", "l1", "l2", "l3", "l4"} <= rows[1] and not {"n1", "l1"} & rows[0]
    for sheet in drawn:
        _text_clear(sheet.layout, sheet.header)
        header_lines = [i[5] for i in sheet.header if i[0] == "text"]
        assert not any(line.startswith("·") for line in header_lines), header_lines
        assert "peanut and tree nut proteins (angioedema)" in " ".join(header_lines)  # all four on both sides
    sheets = Sheets(kit, result.out_path, DPI)
    slots = set()
    rng = np.random.default_rng(3)
    for sheet_id, clean, geometry in sheets.pages():
        marked, truth = fill_page(clean, geometry, DPI, rng, fill=0.85, writing=0.6)
        page = read_page(degrade(marked, "office", rng, src_dpi=DPI), kit_id=kit.kit_id, secret=kit.secret,
                         geometry_for=sheets.geometry.get)
        assert page.status == "read" and page.sheet_id == sheet_id
        readings = {r.field: r for r in page.readings}
        for f in geometry["fields"]:
            if f["type"] in MARK_TYPES and f["name"][0] in "mpn" and f["name"].split(".")[1].startswith("s"):
                r, t = readings[f["name"]], truth[f["name"]]
                slots.add(f["name"].rsplit(".", 1)[0])
                assert r.status == "review" or r.value == t["value"], (f["name"], r.value, t)
                assert r.status == "accepted" or t["should_review"], (f["name"], r.reason, t)
    assert {f"m1.s{k}" for k in range(1, 5)} | {f"m{k}.s3" for k in range(2, 8)} | {"p1.s6", "n1.s1"} <= slots


def test_a_mar_that_fits_normally_keeps_its_normal_layout(tmp_path):
    kit = _kit(tmp_path, _meds(4))
    result = print_patient(kit, "mar", "M1000001", tmp_path / "mar.pdf")
    fields = {f["name"]: f for f in sheet_geometry(kit, result.sheets[0]["sheet_id"])["fields"]}
    assert len(result.sheets) == 1 and _status_to_time_gap(fields) == 2.0


@pytest.mark.parametrize("tier", ["clean", "office"])
def test_a_scan_of_the_dense_mar_reads_every_slot(tmp_path, tier):
    """The dense slots (marks 1.5 mm from the row line and from the time boxes) through the real
    reader: the page rendered, filled with pen marks and handwriting, damaged, read. Every slot's
    marks are read; a clear mark is accepted with its value, nothing wrong is accepted."""
    from fallbackkit.scan.engine import read_page
    kit = _kit(tmp_path, _meds(6))
    result = print_patient(kit, "mar", "M1000001", tmp_path / "mar.pdf")
    sheets = Sheets(kit, result.out_path, DPI)
    [(sheet_id, clean, geometry)] = sheets.pages()
    slot_marks = {f["name"] for f in geometry["fields"] if f["type"] in MARK_TYPES and f["name"][0] in "mpn"
                  and f["name"].split(".")[1].startswith("s")}
    assert len(slot_marks) >= 4 + 4 * 3 + 3 * 2 + 3  # status of 4 + 4 × 3 doses; PRN given and effect; new order
    accepted_clear = clear = 0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        marked, truth = fill_page(clean, geometry, DPI, rng, fill=0.85, writing=0.6)
        page = read_page(degrade(marked, tier, rng, src_dpi=DPI), kit_id=kit.kit_id, secret=kit.secret,
                         geometry_for=sheets.geometry.get)
        assert page.status == "read" and page.sheet_id == sheet_id
        readings = {r.field: r for r in page.readings}
        assert slot_marks <= set(readings)
        for name in slot_marks:
            r, t = readings[name], truth[name]
            if r.status == "accepted":
                assert r.value == t["value"], (seed, name, r.value, t)  # nothing wrong accepted
            if not t["should_review"]:
                clear += 1
                accepted_clear += r.status == "accepted"
    assert accepted_clear == clear  # every clear mark read (bench_accuracy --only mar: same review share)


@pytest.mark.parametrize("langs", [("en",), ("fr", "nl")], ids="+".join)
def test_every_census_mar_keeps_a_blank_new_order_row(kit, tmp_path, langs):
    """Last round a one-sheet MAR dropped its blank new-order rows to stay on one sheet (4 of 8 in
    3B en, every one in fr/nl): an order written during the outage had no row. Now every census MAR
    has one, also on every day of `print --days`."""
    from fallbackkit.generate.issue import outage_days
    for ward in ("3B", "ICU"):
        result = print_ward(kit, ward, tmp_path / f"{ward}.pdf", langs=langs,
                            days=outage_days(kit, 2, "2026-12-01") if ward == "ICU" else None)
        forms: dict[str, set[str]] = {}
        for s in result.sheets:
            if s["template"] == "mar":
                forms.setdefault(s["form_id"], set()).update(
                    f["name"] for f in sheet_geometry(kit, s["sheet_id"])["fields"])
        assert forms
        for form_id, names in forms.items():
            assert {"n1.order", "n1.prescriber", "n1.s1.status", "l1.initials"} <= names, (ward, form_id)


def test_a_two_sided_mar_front_and_back_scanned_apart(tmp_path):
    """The two sides of a two-sided MAR come back separately (a simplex scan of the fronts, the backs
    later in a batch of their own): with the front alone its form says page 2 is missing; the back
    alone is read as that form's page 2; the nurses' legend on the back is handed to the clerk before
    the front's initials slots and is what they are put to (the worklist's performer)."""
    from fallbackkit.reconcile import reconcile, worklist
    from fallbackkit.scan.pipeline import list_readings, scan_paths
    from fallbackkit.store.decisions import record_review
    from scan_pipeline_helpers import write_png
    from test_review_legend_order import LEGEND, _order, _write
    kit = _kit(tmp_path, WORST_MEDS, WORST_ALLERGIES)
    result = print_patient(kit, "mar", "M1000001", tmp_path / "mar.pdf")
    [(front_id, front, front_geo), (back_id, back, back_geo)] = Sheets(kit, result.out_path, 200).pages()
    slots = ["m1.s1.initials", "m7.s3.initials"]
    given = [next(o["box_mm"] for o in f["options"] if o["value"] == "given")
             for f in front_geo["fields"] if f["name"] in ("m1.s1.status", "m7.s3.status")]
    front = mark(front, 200, [(box, "tick") for box in given])
    for img, geo, names in ((front, front_geo, slots), (back, back_geo, LEGEND)):
        for f in geo["fields"]:
            if f["name"] in names:
                _write(img, f["box_mm"], "JM")
    for name, img in (("fronts", front), ("backs", back)):
        (tmp_path / name).mkdir()
        write_png(tmp_path / name / f"{name}.png", img, 200)

    scan_paths(kit, [tmp_path / "fronts"], workers=0, progress=False)
    [form] = [f for f in reconcile(kit)["forms"] if f["template"] == "mar"]
    assert form["state"] == "missing_pages" and form["pages_missing"] == [2] and form["pages_returned"] == [1]

    scan_paths(kit, [tmp_path / "backs"], workers=0, progress=False)
    [form] = [f for f in reconcile(kit)["forms"] if f["template"] == "mar"]
    assert form["state"] == "complete" and form["pages_returned"] == [1, 2]
    got = {r["field"]: r for r in list_readings(kit)}
    assert got["l1.initials"]["sheet_id"] == back_id and got[slots[0]]["sheet_id"] == front_id
    assert got[slots[0]]["reading_id"] < got["l1.initials"]["reading_id"]  # scanned later: last by reading order
    for (rid,) in kit.db.execute("SELECT reading_id FROM readings WHERE status = 'review'").fetchall():
        if rid not in {got[f]["reading_id"] for f in LEGEND + slots}:
            record_review(kit.db, rid, "illegible", None, "sam")
    order = [f for f in _order(kit) if f in LEGEND + slots]
    assert order == LEGEND + slots, order  # the back's legend first, then the front's slots
    # _order typed JM on both legend rows (two rows with one's initials name nobody): row 2 is AD
    record_review(kit.db, got["l2.initials"]["reading_id"], "transcribe", "AD", "clara")
    items = {i.item_id.split(":")[1]: i.values for i in worklist(kit) if i.kind == "medication"}
    for slot in ("m1.s1", "m7.s3"):
        assert items[slot]["status"] == "given"
        assert items[slot]["performer"] == {"initials": "JM", "name": "Jan MAES", "legend_row": 1,
                                            "signed": items[slot]["performer"]["signed"]}, items[slot]
    # and on to FHIR: the front's doses are MedicationAdministrations performed by the back's nurse
    import json
    for name, text in (("mar_date", "01/12/2026"), ("m1.s1.time", "07:40"), ("m7.s3.time", "22:05")):
        record_review(kit.db, got[name]["reading_id"], "transcribe", text, "clara")

    from fallbackkit.export import export_fhir
    export_fhir(kit, tmp_path / "fhir")
    resources = [e["resource"] for p in sorted((tmp_path / "fhir").glob("bundle-*.json"))
                 for e in json.loads(p.read_text())["entry"]]
    admins = {i["value"].rsplit(":", 1)[1]: r for r in resources if r["resourceType"] == "MedicationAdministration"
              for i in r["identifier"] if i["system"].endswith(":item")}
    for slot in ("m1.s1", "m7.s3"):
        assert admins[slot]["status"] == "completed"
        assert admins[slot]["performer"][0]["actor"]["display"].startswith("Jan MAES"), admins[slot]


def test_a_double_sided_pack_scanned_double_sided_reads_every_sheet_and_counts_the_blank_backs(tmp_path):
    """A ward pack printed double-sided and scanned double-sided, as one PDF: the cover, every sheet
    read (a two-page form's back as its page 2), each blank back counted as a blank page, nothing
    quarantined, every form complete."""
    from fallbackkit.reconcile import reconcile
    from fallbackkit.scan.pipeline import scan_paths
    from kit_helpers import census_kit
    from PIL import Image
    from pdf_helpers import render_pages
    kit = census_kit(tmp_path, {"3B": 2})
    pack = print_ward(kit, "3B", tmp_path / "ward-3B.pdf", actor="coordinator")
    assert pack.double_sided
    images = render_pages(pack.out_path, dpi=150)
    blanks = int(sum(image.min() == 255 for image in images))
    assert blanks and len(images) == 1 + len(pack.sheets) + blanks
    frames = [Image.fromarray(image) for image in images]  # the scanner's one file for the pile
    frames[0].save(tmp_path / "pile.tif", save_all=True, append_images=frames[1:], dpi=(150, 150),
                   compression="tiff_deflate")
    summary = scan_paths(kit, [tmp_path / "pile.tif"], workers=0, progress=False, actor="clerk")
    assert (summary.cover_sheets, summary.pages_read, summary.pages_blank, summary.pages_quarantined) == \
        (1, len(pack.sheets), blanks, 0)
    assert {f["state"] for f in reconcile(kit)["forms"]} == {"complete"}
