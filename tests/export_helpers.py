"""Scenario builder for the export tests: a printed kit plus captures and readings written as the
scan stage writes them (status 'read', JSON raw/value), so exports can be tested end to end
before the scan pipeline lands. Every value is chosen here, so the tests know the truth.
"""
from __future__ import annotations

import hashlib
import re
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fallbackkit.store.kit import Kit, now_iso

HANDWRITTEN = {"number", "datetime", "text", "initials", "signature"}


def _file_row(kit: Kit, name: str, pages: int) -> str:
    data = f"{kit.kit_id}:{name}".encode()
    sha = hashlib.sha256(data).hexdigest()
    archive = f"archive/{sha[:2]}/{sha}.pdf"
    (kit.path / archive).parent.mkdir(parents=True, exist_ok=True)
    (kit.path / archive).write_bytes(data)
    with kit.db.conn:
        kit.db.conn.execute(
            "INSERT OR IGNORE INTO input_files (sha256, size, kind, pages, status, archive_path, first_path,"
            " started_at, finished_at) VALUES (?, ?, 'pdf', ?, 'done', ?, ?, ?, ?)",
            [sha, len(data), pages, archive, f"scans/{name}", now_iso(), now_iso()])
    return sha


def add_capture(kit: Kit, sheet_id: str, values: dict[str, Any], *, file_name: str | None = None,
                page_index: int = 1, review: dict[str, str] | None = None, fit_error: float = 0.4,
                duplicate_of: int | None = None) -> int:
    """One read capture of a printed sheet with a reading for every field of its layout.

    values: field -> decided value (missing = blank: False for checkboxes, None otherwise).
    review: field -> reason, for readings the machine was unsure of (status 'review').
    Handwritten fields with ink and no review entry are stored as needing review too, as the scan
    stage does (a machine never auto-accepts handwriting), unless listed in values with accepted=True
    via the special key '__accept_handwriting__'.
    """
    review = dict(review or {})
    accept_hand = values.pop("__accept_handwriting__", False)
    conn = kit.db.conn
    row = conn.execute("SELECT s.form_id, s.template, s.version, s.page, s.pages, l.geometry FROM sheets s"
                       " JOIN layouts l ON l.hash = s.layout_hash WHERE s.sheet_id = ?", [sheet_id]).fetchone()
    assert row, sheet_id
    form_id, template, version, page, pages, geometry = row
    geometry = json.loads(geometry)
    sha = _file_row(kit, file_name or f"{sheet_id}-{page_index}.pdf", page_index)
    img_rel = f"pages/{sheet_id}-{sha[:8]}-{page_index}.png"
    img = np.full((60, 40), 255, np.uint8)
    img[10:20, 5:30] = int(sha[:2], 16) % 200
    (kit.path / img_rel).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(kit.path / img_rel)
    with conn:
        cur = conn.execute(
            "INSERT INTO captures (file_sha256, page_index, source, status, sheet_id, form_id, template, version,"
            " page, pages, orientation, fit_error_mm, dpi, quality, image_path, width_px, height_px, duplicate_of,"
            " captured_at) VALUES (?, ?, 'scan', 'read', ?, ?, ?, ?, ?, ?, 0, ?, 200, '{}', ?, 40, 60, ?, ?)",
            [sha, page_index, sheet_id, form_id, template, version, page, pages, fit_error, img_rel,
             duplicate_of, now_iso()])
        capture_id = cur.lastrowid
        for f in geometry["fields"]:
            name, ftype = f["name"], f["type"]
            default = False if ftype == "checkbox" else ([] if ftype == "multichoice" else None)
            value = values.get(name, default)
            reason = review.get(name)
            if reason is None and ftype in HANDWRITTEN and value is not None and not accept_hand:
                reason = "handwriting: needs transcription"
            status = "review" if reason else "accepted"
            machine = None if (ftype in HANDWRITTEN and status == "review") else value
            conn.execute(
                "INSERT INTO readings (capture_id, sheet_id, field, type, raw, value, confidence, status, reason,"
                " ink) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [capture_id, sheet_id, name, ftype, json.dumps({"ink": 0.3 if value else 0.01}),
                 json.dumps(machine), 0.6 if status == "review" else 0.97, status, reason,
                 1 if (ftype in HANDWRITTEN and value is not None) else 0])
    return capture_id


def readings_of(kit: Kit, capture_id: int, status: str | None = None) -> dict[str, int]:
    sql = "SELECT field, reading_id FROM readings WHERE capture_id = ?"
    params: list[Any] = [capture_id]
    if status:
        sql += " AND status = ?"
        params.append(status)
    return dict(kit.db.conn.execute(sql, params).fetchall())


def sheets_of(kit: Kit, form_id: str) -> list[str]:
    return [r[0] for r in kit.db.conn.execute("SELECT sheet_id FROM sheets WHERE form_id = ? ORDER BY page",
                                              [form_id])]


def forms_of(kit: Kit, template: str, ward: str | None = None, blank: bool = False) -> list[dict[str, Any]]:
    sql = "SELECT * FROM forms WHERE template = ?"
    params: list[Any] = [template]
    if ward:
        sql += " AND ward = ?"
        params.append(ward)
    sql += " AND downtime_mrn IS " + ("NOT NULL" if blank else "NULL")
    # Not by printed_at: a print that crosses a second boundary would change which form comes first,
    # and scenarios pick "the first vitals form" (the semantics snapshot flaked on that).
    return list(kit.db.query(sql + " ORDER BY form_id", params))


def table_dump(db_path: Path) -> dict[str, list[tuple]]:
    """Every user table's full content, for comparing two stores."""
    import sqlite3
    conn = sqlite3.connect(db_path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                            " AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {n: conn.execute(f'SELECT * FROM "{n}" ORDER BY rowid').fetchall() for n in names}
    finally:
        conn.close()


def transcribe_all(kit: Kit, capture_id: int, truth: dict[str, Any], actor: str = "clerk1",
                   leave: tuple[str, ...] = ()) -> int:
    """A clerk transcribes every reading waiting for review (with the truth), except `leave`."""
    from fallbackkit.store.decisions import record_review
    done = 0
    for name, rid in readings_of(kit, capture_id, "review").items():
        if name in leave:
            continue
        record_review(kit.db.conn, rid, "transcribe", truth.get(name), actor)
        done += 1
    return done


VITALS_C1 = {"obs_date": "2026-11-28", "c1.time": "08:15", "c1.temperature": "37.2", "c1.pulse": "88",
             "c1.bp_systolic": "121", "c1.bp_diastolic": "79", "c1.resp_rate": "16", "c1.spo2": "97",
             "c1.pain": "2", "c1.avpu": "alert", "c1.initials": "JD"}


def build_scenario(kit: Kit, tmp_path: Path) -> dict[str, Any]:
    """Ward 3B printed plus blank stock; some sheets returned and reviewed, some not.

    Returns what the tests need to know: form ids, the expected pending items, counts.
    """
    from fallbackkit.generate import print_blank, print_ward
    from fallbackkit.store.audit import append_audit
    from fallbackkit.store.decisions import record_review
    print_ward(kit, "3B", tmp_path / "ward-3B.pdf", actor="tester")
    print_blank(kit, "vitals", 2, tmp_path / "blank-vitals.pdf", actor="tester")
    vitals = forms_of(kit, "vitals", "3B")
    mars = forms_of(kit, "mar", "3B")
    labs = forms_of(kit, "lab-request", "3B")
    blank_vitals = forms_of(kit, "vitals", blank=True)
    p1 = vitals[0]["patient_mrn"]
    mar1 = next(m for m in mars if m["patient_mrn"] == p1)
    lab1 = next(m for m in labs if m["patient_mrn"] == p1)
    out: dict[str, Any] = {"patient": p1, "vitals_form": vitals[0]["form_id"], "mar_form": mar1["form_id"],
                           "lab_form": lab1["form_id"], "blank_form": blank_vitals[0]["form_id"],
                           "blank_mrn": blank_vitals[0]["downtime_mrn"], "captures": []}

    # vitals of patient 1: column 1 complete, column 2 left under review, column 3 in conflict
    v_sheet = sheets_of(kit, vitals[0]["form_id"])[0]
    truth = {**VITALS_C1, "c2.time": "12:00", "c2.pulse": "92", "c3.time": "16:00", "c3.pulse": "80"}
    cap = add_capture(kit, v_sheet, dict(truth), file_name="batch1.pdf", page_index=1)
    transcribe_all(kit, cap, truth, leave=("c2.pulse",))
    dup = add_capture(kit, v_sheet, dict(truth), file_name="batch2.pdf", page_index=1, duplicate_of=cap)
    transcribe_all(kit, dup, {**truth, "c3.pulse": "86"}, actor="clerk2", leave=("c2.pulse",))
    out["captures"] += [cap, dup]

    # MAR of patient 1: scheduled slot given, one held, a PRN given
    m_sheet = sheets_of(kit, mar1["form_id"])[0]
    mar_fields = json.loads(kit.db.conn.execute("SELECT geometry FROM layouts l JOIN sheets s ON"
                                                " s.layout_hash = l.hash WHERE s.sheet_id = ?",
                                                [m_sheet]).fetchone()[0])["fields"]
    slots = [f["name"].rsplit(".", 1)[0] for f in mar_fields if re.fullmatch(r"m\d+\.s\d+\.status", f["name"])]
    given, held = slots[0], slots[1]
    out["given_slot"], out["held_slot"] = given, held
    mtruth = {"mar_date": "28/11/2026", "allergies_checked": "yes", f"{given}.status": "given",
              f"{given}.time": "08:05", f"{given}.initials": "AB", f"{held}.status": "held", f"{held}.initials": "AB"}
    prn = [f for f in mar_fields if f["name"].startswith("p1.s1.") or f["name"] == "p1.order"]
    if prn:
        mtruth.update({"p1.s1.given": True, "p1.s1.time": "10:30", "p1.s1.initials": "AB"})
        if any(f["name"] == "p1.order" for f in prn):
            mtruth["p1.order"] = "Paracetamol 1 g PO q6h PRN"
    cap = add_capture(kit, m_sheet, dict(mtruth), file_name="batch1.pdf", page_index=2)
    transcribe_all(kit, cap, mtruth)
    out["captures"].append(cap)
    out["mar_items"] = 3 if prn else 2

    # lab request of patient 1, with a machine-unsure tick confirmed by a clerk
    l_sheet = sheets_of(kit, lab1["form_id"])[0]
    ltruth = {"ordering_clinician": "Dr Peeters", "priority": "urgent", "specimen": "blood",
              "tests": ["cbc", "crp"], "collected_at": "2026-11-28 07:30", "collector_initials": "CD"}
    cap = add_capture(kit, l_sheet, dict(ltruth), file_name="batch1.pdf", page_index=3,
                      review={"priority": "two boxes look marked"})
    transcribe_all(kit, cap, ltruth, leave=("priority",))
    record_review(kit.db.conn, readings_of(kit, cap)["priority"], "correct", "urgent", "clerk1")
    out["captures"].append(cap)

    # blank vitals with a downtime MRN, linked to a real patient of ward ICU
    b_sheet = sheets_of(kit, blank_vitals[0]["form_id"])[0]
    btruth = {**VITALS_C1, "c1.initials": "ÉL", "patient_name": "Unknown male", "patient_birth_date": None}
    cap = add_capture(kit, b_sheet, dict(btruth), file_name="batch3.pdf", page_index=1)
    transcribe_all(kit, cap, btruth)
    out["captures"].append(cap)
    icu = kit.db.conn.execute("SELECT mrn FROM patients WHERE ward = 'ICU' ORDER BY mrn LIMIT 1").fetchone()[0]
    out["linked_to"] = icu
    try:
        from fallbackkit.reconcile import link_identity
        link_identity(kit, out["blank_mrn"], icu, "clerk1", "wristband photo")
    except ImportError:
        with kit.db.conn:
            kit.db.conn.execute("INSERT INTO identity_links (downtime_mrn, real_mrn, actor, reason, at)"
                                " VALUES (?, ?, 'clerk1', 'wristband photo', ?)", [out["blank_mrn"], icu, now_iso()])
            append_audit(kit.db.conn, "clerk1", "identity.link", out["blank_mrn"], None, {"real_mrn": icu})

    # a page nobody could identify
    sha = _file_row(kit, "batch3.pdf", 2)
    with kit.db.conn:
        qcap = kit.db.conn.execute(
            "INSERT INTO captures (file_sha256, page_index, source, status, captured_at)"
            " VALUES (?, 2, 'scan', 'quarantined', ?)", [sha, now_iso()]).lastrowid
        kit.db.conn.execute("INSERT INTO quarantine (capture_id, reason, detail, created_at)"
                            " VALUES (?, 'no_code', 'no QR code found', ?)", [qcap, now_iso()])
    out["quarantined"] = 1
    return out


# --- the real path: print -> simulate -> scan, then people's decisions through the library -------
HAND_VALUES = {
    "time": "08:15", "temperature": "37.4", "pulse": "84", "bp_systolic": "118", "bp_diastolic": "76",
    "resp_rate": "18", "spo2": "96", "pain": "3", "initials": "MV", "obs_date": "2026-11-28",
    "mar_date": "2026-11-28", "collected_at": "2026-11-28 07:40", "received_at": "08:10",
    "arrival_time": "2026-11-28 03:20", "recorded_at": "2026-11-28 03:35", "birth_date": "1961-02-03",
    "last_name": "Dupont", "first_name": "Léa", "weight": "71.5", "height": "168",
    "gcs_total": "42",  # not a plausible GCS total: the neuro chart's test expects it flagged
}


def hand_value(name: str, ftype: str) -> Any:
    """What a clerk types for a handwritten field (the simulator draws scribbles, not digits)."""
    base = name.rsplit(".", 1)[-1]
    if base in HAND_VALUES:
        return HAND_VALUES[base]
    if ftype == "initials":
        return "MV"
    if ftype == "number":
        return "42"
    if ftype == "datetime":
        return "09:30"
    if ftype == "signature":
        return "signed"
    return f"text of {name}"


def scan_scenario(kit: Kit, tmp_path: Path, *, leave_pending: int = 1) -> dict[str, Any]:
    """Ward ICU (2 patients) and one blank vitals form printed, filled by the simulator, scanned.

    Then through the library: every reading waiting for review is decided (handwriting transcribed
    with HAND_VALUES, marks set to the simulator's truth), except the time of `leave_pending` vitals
    columns; the blank form's downtime MRN is linked to the first ICU patient; every resolved
    worklist item is marked entered.
    """
    from fallbackkit.generate import print_blank, print_ward
    from fallbackkit.reconcile import link_identity, mark_item, worklist
    from fallbackkit.scan.pipeline import scan_paths
    from fallbackkit.scan.simulate import simulate
    from fallbackkit.store.decisions import record_review

    print_ward(kit, "ICU", tmp_path / "icu.pdf", actor="tester")
    print_blank(kit, "vitals", 1, tmp_path / "blank-vitals.pdf", actor="tester")
    simulate(kit, tmp_path / "icu.pdf", tmp_path / "sim-icu", seed=11, tier="clean", blank_every=0)
    simulate(kit, tmp_path / "blank-vitals.pdf", tmp_path / "sim-blank", seed=12, tier="clean", blank_every=0)
    truth: dict[tuple[str, str], Any] = {}
    files = []
    for folder in ("sim-icu", "sim-blank"):
        doc = json.loads((tmp_path / folder / "truth.json").read_text())
        for f in doc["files"]:
            files.append(tmp_path / folder / f["file"])
            for page in f["pages"]:
                for name, t in page["fields"].items():
                    truth[(page["sheet_id"], name)] = t.get("value")
    summary = scan_paths(kit, files, workers=0, progress=False)
    assert summary.files_failed == 0 and summary.pages_read > 0, summary

    conn = kit.db.conn
    pending_times = []
    rows = conn.execute("SELECT r.reading_id, r.sheet_id, r.field, r.type FROM readings r JOIN captures c"
                        " ON c.capture_id = r.capture_id WHERE r.status = 'review' AND c.status = 'read'"
                        " ORDER BY r.reading_id").fetchall()
    for reading_id, sheet_id, name, ftype in rows:
        if (len(pending_times) < leave_pending and re.fullmatch(r"c\d+\.time", name)):
            pending_times.append((sheet_id, name))
            continue
        if ftype in HANDWRITTEN:
            record_review(conn, reading_id, "transcribe", hand_value(name, ftype), "clerk1")
        else:
            record_review(conn, reading_id, "correct", truth.get((sheet_id, name)), "clerk1")

    # The simulator leaves boxes blank at random. A clerk completes what re-entry needs from the
    # context (the day of the sheet, the first observation round), so the scenario always holds
    # vitals, medications and a lab order whatever the random fill was.
    from fallbackkit.export.collect import iter_stores
    must = {"obs_date", "mar_date", "collected_at", "c1.time", "c1.temperature", "c1.pulse", "m1.s1.time",
            "c1.gcs_total"}  # (the neuro chart of test_new_template: a GCS total to export, whatever the fill)
    for form in [f for store in iter_stores(kit) for f in store.forms]:
        for name in sorted(must & set(form.fields)):
            fv = form.fields[name]
            if fv.settled and fv.value in (None, "") and (form.form_id, name) not in pending_forms(kit, pending_times):
                for r in fv.readings:
                    record_review(conn, r.reading_id, "transcribe", HAND_VALUES[name.rsplit(".", 1)[-1]], "clerk1")
        if form.template == "mar" and "m1.s1.status" in form.fields and form.fields["m1.s1.status"].settled \
                and form.fields["m1.s1.status"].value is None:
            for r in form.fields["m1.s1.status"].readings:
                record_review(conn, r.reading_id, "correct", "given", "clerk1")
        if form.template == "lab-request" and "tests" in form.fields and not form.fields["tests"].value:
            for r in form.fields["tests"].readings:
                record_review(conn, r.reading_id, "correct", ["cbc"], "clerk1")

    blank = conn.execute("SELECT form_id, downtime_mrn FROM forms WHERE downtime_mrn IS NOT NULL").fetchone()
    icu = conn.execute("SELECT patient_mrn FROM forms WHERE ward = 'ICU' ORDER BY form_id").fetchone()[0]
    link_identity(kit, blank[1], icu, "clerk1", "wristband checked")
    entered = []
    for item in worklist(kit):
        if item.resolved and item.status == "pending":
            mark_item(kit, item.item_id, "entered", "clerk2")
            entered.append(item.item_id)
    return {"pending_times": pending_times, "blank_form": blank[0], "blank_mrn": blank[1], "linked_to": icu,
            "entered": entered, "truth": truth, "scan": summary}


def pending_forms(kit: Kit, pending_times: list[tuple[str, str]]) -> set[tuple[str, str]]:
    out = set()
    for sheet_id, name in pending_times:
        form_id = kit.db.conn.execute("SELECT form_id FROM sheets WHERE sheet_id = ?", [sheet_id]).fetchone()[0]
        out.add((form_id, name))
    return out
