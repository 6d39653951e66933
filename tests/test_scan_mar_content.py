"""Issue 15 item 4 end to end: the MAR's new fields printed, written on as a nurse would, scanned
and read: the held code (a real handwritten digit in its box: a suggestion checked against the
code list), a PRN dose's effect (marks, machine-read) and reason (handwriting: a person types it),
the initials legend (initials and name typed once, the signature read as ink); then the worklist
puts the slot's initials to the legend's nurse. And `simulate` fills these fields plausibly."""
from __future__ import annotations

import numpy as np
import pytest

from digits_helpers import write_comb
from fallbackkit.generate import print_patient
from fallbackkit.reconcile import reconcile, worklist
from fallbackkit.scan.pipeline import list_readings, scan_paths
from fallbackkit.scan.simulate import fill_page
from fallbackkit.store.decisions import record_review
from scan_engine_helpers import DPI, Sheets, field, mark, write
from scan_pipeline_helpers import write_png


def _q4h_patient(kit, dense: bool = False) -> str:
    """A patient with a q4h PRN order (6 PRN slots) and few orders (a normal MAR); dense: the one
    with 6 orders, whose MAR the dense layout keeps on one sheet (issue 15 item 2)."""
    if dense:
        return kit.db.execute("SELECT mrn FROM medications GROUP BY mrn HAVING COUNT(*) = 6 AND "
                              "SUM(frequency LIKE 'q4h%') = 1 ORDER BY mrn LIMIT 1").fetchone()[0]
    return kit.db.execute("SELECT mrn FROM medications GROUP BY mrn HAVING SUM(frequency LIKE 'q4h%') = 1 AND "
                          "SUM(frequency = 'QID') = 0 ORDER BY COUNT(*), mrn LIMIT 1").fetchone()[0]


@pytest.mark.parametrize("layout", ["normal", "dense"])
def test_mar_new_fields_print_scan_and_resolve(kit, tmp_path, layout):
    mrn = _q4h_patient(kit, dense=layout == "dense")
    result = print_patient(kit, "mar", mrn, tmp_path / "mar.pdf")
    sheets = Sheets(kit, result.out_path, DPI)
    first = {f["name"]: f for f in sheets.pages()[0][2]["fields"]}
    status = first["m1.s1.status"]["options"][0]["box_mm"]
    gap = round(first["m1.s1.time"]["box_mm"][1] - status[1] - status[3], 2)
    assert gap == (1.5 if layout == "dense" else 2.0)  # the dense slot: marks 1.5 mm above the time boxes
    if layout == "dense":
        assert len(result.sheets) == 1
    pages = sheets.pages()
    by_field = {f["name"]: (sid, img, geo) for sid, img, geo in pages for f in geo["fields"]}
    prn = next(n.rsplit(".", 2)[0] for n in by_field if n.startswith("p") and n.endswith(".s6.given"))
    images = {sid: img for sid, img, _ in pages}

    def geo_of(name):
        return field(by_field[name][2], name)

    def on(name, draw):
        sid = by_field[name][0]
        images[sid] = draw(images[sid])

    held_box = next(o["box_mm"] for o in geo_of("m1.s1.status")["options"] if o["value"] == "held")
    given_box = next(o["box_mm"] for o in geo_of("m1.s2.status")["options"] if o["value"] == "given") \
        if "m1.s2.status" in by_field else None
    better = next(o["box_mm"] for o in geo_of(f"{prn}.s1.effect")["options"] if o["value"] == "better")
    on("m1.s1.status", lambda im: mark(im, DPI, [(held_box, "tick")], seed=1))
    on("m1.s1.held", lambda im: write_comb(im, DPI, geo_of("m1.s1.held"), "1", seed=2, clear=True))
    on(f"{prn}.s1.given", lambda im: mark(im, DPI, [(geo_of(f"{prn}.s1.given")["box_mm"], "cross"), (better, "tick")],
                                          seed=3))
    on(f"{prn}.s1.reason", lambda im: write_comb(im, DPI, geo_of(f"{prn}.s1.reason"), "1", seed=4, clear=True))
    on(f"{prn}.s1.initials", lambda im: write(im, DPI, [geo_of(f"{prn}.s1.initials"), geo_of("m1.s1.initials")],
                                              seed=4))
    on("l1.initials", lambda im: write(im, DPI, [geo_of("l1.initials"), geo_of("l1.name"), geo_of("l1.signature")],
                                       seed=5))
    on("m2.s1.held", lambda im: write_comb(im, DPI, geo_of("m2.s1.held"), "8", seed=7, clear=True))
    if given_box:
        on("m1.s2.status", lambda im: mark(im, DPI, [(given_box, "tick")], seed=6))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for k, (sid, img) in enumerate(images.items()):
        write_png(inbox / f"p{k}.png", img)
    summary = scan_paths(kit, [inbox], workers=0, progress=False)
    assert summary.failed == [] and summary.pages_quarantined == 0

    readings = {r["field"]: r for r in list_readings(kit)}
    assert readings["m1.s1.status"]["value"] == "held" and readings["m1.s1.status"]["status"] == "accepted"
    held = readings["m1.s1.held"]
    assert held["ink"] is True and held["status"] == "review"  # never a value on its own
    assert held.get("suggestion") == "1"  # the digit written, checked against the code list (1-5)
    wrong = readings["m2.s1.held"]  # 8 is not a held code: shown with the rule it breaks, never pre-filled
    assert wrong["status"] == "review" and not wrong["prefill"]
    assert wrong["suggestion"] == "8" and "8" in wrong["rule"]  # e.g. "8 is above 5"
    assert held["prefill"] in (True, False) and held["rule"] is None
    if "m1.s2.held" in readings:
        assert readings["m1.s2.held"]["ink"] is False
    assert readings[f"{prn}.s1.given"]["value"] is True
    assert readings[f"{prn}.s1.effect"]["value"] == "better" and readings[f"{prn}.s1.effect"]["status"] == "accepted"
    assert readings[f"{prn}.s2.effect"]["value"] is None and readings[f"{prn}.s2.effect"]["status"] == "accepted"
    assert readings[f"{prn}.s1.reason"]["status"] == "review" and readings[f"{prn}.s1.reason"]["suggestion"] == "1"
    assert readings[f"{prn}.s2.reason"]["ink"] is False
    assert readings["l1.initials"]["status"] == "review" and readings["l1.name"]["status"] == "review"
    assert readings["l1.signature"]["value"] in (True, None)  # signed, or a person looks
    assert readings["l2.signature"]["value"] is False and readings["l2.initials"]["ink"] is False

    # the station names the code boxes and lists what each code means
    import re
    from fallbackkit.review import create_app
    from review_helpers import PASSWORD, add_people
    add_people(kit)
    client = create_app(kit.path).test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    client.post("/login", data={"name": "clara", "password": PASSWORD, "csrf_token": token})
    shown = client.get(f"/api/readings/{held['reading_id']}").get_json()["reading"]
    assert shown["field_label"].startswith("Held: reason code")
    assert shown["code_list"][0] == {"code": "1", "text": "nil by mouth"} and len(shown["code_list"]) == 5
    shown = client.get(f"/api/readings/{readings[f'{prn}.s1.reason']['reading_id']}").get_json()["reading"]
    assert shown["field_label"].startswith("PRN: reason code") and shown["code_list"][0]["text"] == "pain"
    legend = client.get(f"/api/readings/{readings['l1.name']['reading_id']}").get_json()["reading"]
    assert legend["field_label"] == "Name (capitals) · Nurses on this sheet 1"

    # a clerk types what the paper says: the legend once, the slots' initials
    for name, text in (("m1.s1.held", "1"), ("l1.initials", "AD"), ("l1.name", "Anne DUPONT"),
                       ("m1.s1.initials", "A.D."), (f"{prn}.s1.initials", "XY"), (f"{prn}.s1.reason", "1"),
                       (f"{prn}.s1.time", "03:10"), ("mar_date", "01/12/2026")):
        record_review(kit.db, readings[name]["reading_id"], "transcribe", text, "clerk1")
    if readings["l1.signature"]["value"] is None:
        record_review(kit.db, readings["l1.signature"]["reading_id"], "confirm", True, "clerk1")
    reconcile(kit)
    items = {i.item_id.split(":")[1]: i for i in worklist(kit)}
    slot = items["m1.s1"].values
    assert slot["status"] == "held" and slot["held_reason"] == "1" and slot["held_reason_text"] == "nil by mouth"
    assert slot["performer"]["name"] == "Anne DUPONT" and slot["performer"]["legend_row"] == 1
    dose = items[f"{prn}.s1"].values
    assert dose["effect"] == "better" and dose["prn_reason_text"] == "pain" and dose["performer"] is None
    assert "not in the sheet's legend" in dose["performer_unresolved"]
    # and on to the FHIR export: the held dose is a MedicationAdministration, not done, by the nurse
    import json

    from fallbackkit.export import export_fhir
    export_fhir(kit, tmp_path / "fhir")
    resources = [e["resource"] for p in sorted((tmp_path / "fhir").glob("bundle-*.json"))
                 for e in json.loads(p.read_text())["entry"]]
    admins = {i["value"].rsplit(":", 1)[1]: r for r in resources if r["resourceType"] == "MedicationAdministration"
              for i in r["identifier"] if i["system"].endswith(":item")}
    assert admins["m1.s1"]["status"] == "not-done" and admins["m1.s1"]["statusReason"][0]["text"].startswith("held")
    assert admins["m1.s1"]["performer"][0]["actor"]["display"].startswith("Anne DUPONT")


def test_simulate_fills_the_new_fields_plausibly(kit, tmp_path):
    result = print_patient(kit, "mar", _q4h_patient(kit), tmp_path / "mar.pdf")
    sheets = Sheets(kit, result.out_path, DPI)
    held_ink = held_when_held = reason_ink = effect_marked = legend_ok = 0
    for seed in range(6):
        for sid, img, geo in sheets.pages():
            _, truth = fill_page(img, geo, DPI, np.random.default_rng(seed), writing=0.6)
            for name, t in truth.items():
                prefix, _, part = name.rpartition(".")
                if part == "held" and t["ink"]:
                    held_ink += 1
                    assert truth[f"{prefix}.status"]["value"] == "held", name
                    held_when_held += 1
                if part == "reason" and t["ink"]:
                    reason_ink += 1
                    assert truth[f"{prefix}.given"]["value"] is True, name
                if part == "effect" and t["value"]:
                    effect_marked += 1
                    assert truth[f"{prefix}.given"]["value"] is True, name
            rows = sorted({n.split(".")[0] for n in truth if n.startswith("l") and n[1:2].isdigit()})
            filled = [all(truth[f"{r}.{p}"]["ink"] for p in ("initials", "name", "signature")) for r in rows]
            if rows:
                assert filled == sorted(filled, reverse=True) and filled[0]  # the first rows, whole
                legend_ok += 1
    assert held_ink and reason_ink and effect_marked and legend_ok
