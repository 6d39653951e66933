"""Re-entry after the first send (issue 11): the export record, `--since LAST`, withdrawals as
entered-in-error, identity links after an export. Against the real FHIR engine where it matters."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from export_helpers import VITALS_C1, add_capture, readings_of, transcribe_all
from fallbackkit.export import export_fhir
from fallbackkit.export.bundles import split_transaction
from fallbackkit.store.decisions import record_review, undo_review
from fallbackkit.store.exports import exports, last_sent
from fhir_engine_helpers import fhir_engine, r4_errors
from kit_helpers import census_kit


def _bundles(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("bundle-*.json"))]


def _send(engine, out: Path) -> None:
    for bundle in _bundles(out):
        assert r4_errors(bundle) == []
        for part in split_transaction(bundle, 8):
            statuses = [e["response"]["status"] for e in engine.transaction(part)]
            assert all(s.startswith("2") for s in statuses), statuses


def _vitals_kit(tmp_path: Path):
    """Ward 3B, one patient's vitals column 1 scanned and transcribed by a clerk."""
    from fallbackkit.generate import print_ward
    kit = census_kit(tmp_path, wards={"3B": 1})
    pack = print_ward(kit, "3B", tmp_path / "w.pdf", actor="t")
    sheet = next(s for s in pack.sheets if s["template"] == "vitals")
    cap = add_capture(kit, sheet["sheet_id"], dict(VITALS_C1))
    transcribe_all(kit, cap, VITALS_C1)
    return kit, sheet, cap


def _observation(engine, out: Path, item: str) -> list[dict]:
    system = next(i["system"] for b in _bundles(out) for e in b["entry"]
                  for i in e["resource"].get("identifier", []) if i["system"].endswith(":item"))
    return engine.search("Observation", f"identifier={quote(f'{system}|{item}', safe='')}")


def test_an_export_is_recorded_and_the_worklist_and_report_show_what_was_sent(tmp_path):
    from fallbackkit.export import report_data
    from fallbackkit.reconcile import worklist
    kit, sheet, cap = _vitals_kit(tmp_path)
    result = export_fhir(kit, tmp_path / "one", actor="it-anna")
    [record] = exports(kit.db.conn)
    assert record["actor"] == "it-anna" and record["format"] == "fhir"
    assert {f["name"] for f in record["files"]} == {Path(f).name for f in result["files"]} | {"pending.json"}
    assert all("/" not in f["name"] and len(f["sha256"]) == 64 for f in record["files"])
    assert record["resources"]["Observation"] >= 7 and sum(record["resources"].values()) == result["resources"]
    sent = last_sent(kit.db.conn)
    item = f"{sheet['form_id']}:c1"
    assert sent[item]["status"] == "sent"
    assert {r["resource"]["resourceType"] for r in sent[item]["resources"]} == {"Observation"}
    assert any(r["request"]["url"].startswith("Observation?identifier=") for r in sent[item]["resources"])
    [c1] = [i for i in worklist(kit) if i.item_id == item]
    assert c1.exported_at == record["at"]
    assert report_data(kit)["totals"]["reentry_exported"] == 1
    audit = kit.db.conn.execute("SELECT actor FROM audit WHERE action = 'export.fhir'").fetchall()
    assert audit == [("it-anna",)]

    # --since LAST: nothing changed, nothing sent
    again = export_fhir(kit, tmp_path / "two", since="LAST")
    assert again["bundles"] == 0 and again["unchanged_since_last"] == 1 and again["items_exported"] == 0
    # a correction: only that item goes again
    record_review(kit.db.conn, readings_of(kit, cap)["c1.pulse"], "correct", "91", "clerk2")
    third = export_fhir(kit, tmp_path / "three", since="LAST")
    assert third["items_exported"] == 1 and third["bundles"] == 1
    pulses = [e["resource"] for b in _bundles(tmp_path / "three") for e in b["entry"]
              if e["resource"]["resourceType"] == "Observation" and e["resource"]["code"]["text"] == "Heart rate"]
    assert [p["valueQuantity"]["value"] for p in pulses] == [91]
    assert len(exports(kit.db.conn)) == 3
    kit.close()


def test_an_undone_decision_and_a_value_withdrawn_on_paper_become_entered_in_error(tmp_path):
    """A supervisor undoes the transcription of the pulse after a first send; a later decision
    empties the temperature: on the re-send the server holds both as entered-in-error, the rest final."""
    kit, sheet, cap = _vitals_kit(tmp_path)
    item = f"{sheet['form_id']}:c1"
    export_fhir(kit, tmp_path / "one")
    with fhir_engine() as engine:
        _send(engine, tmp_path / "one")
        assert [o["status"] for o in _observation(engine, tmp_path / "one", f"{item}:pulse")] == ["final"]
        count = len(engine.search("Observation"))
        pulse_review = kit.db.conn.execute(
            "SELECT review_id FROM reviews WHERE reading_id = ? ORDER BY review_id DESC",
            [readings_of(kit, cap)["c1.pulse"]]).fetchone()[0]
        undo_review(kit.db.conn, pulse_review, "supervisor1", "wrong patient's value")
        record_review(kit.db.conn, readings_of(kit, cap)["c1.temperature"], "correct", None, "clerk2")
        result = export_fhir(kit, tmp_path / "two")
        assert result["withdrawn"] == 2
        _send(engine, tmp_path / "two")
        assert len(engine.search("Observation")) == count, "a withdrawal creates nothing"
        for name in ("pulse", "temperature"):
            [obs] = _observation(engine, tmp_path / "two", f"{item}:{name}")
            assert obs["status"] == "entered-in-error", name
            assert "entered in error" in obs["note"][-1]["text"]
        [resp] = _observation(engine, tmp_path / "two", f"{item}:resp_rate")
        assert resp["status"] == "final"
        # the withdrawal is recorded: a third export does not send it again
        third = export_fhir(kit, tmp_path / "three", since="LAST")
        assert third["withdrawn"] == 0 and third["bundles"] == 0
        # the pulse transcribed again: sent again, final
        record_review(kit.db.conn, readings_of(kit, cap)["c1.pulse"], "transcribe", "84", "clerk2")
        export_fhir(kit, tmp_path / "four", since="LAST")
        _send(engine, tmp_path / "four")
        [obs] = _observation(engine, tmp_path / "four", f"{item}:pulse")
        assert obs["status"] == "final" and obs["valueQuantity"]["value"] == 84
    pending = json.loads((tmp_path / "two" / "pending.json").read_text())
    assert sorted(w["item"] for w in pending["withdrawn"]) == [item, item]
    assert all("not settled" in w["reason"] or "no longer" in w["reason"] for w in pending["withdrawn"])
    kit.close()


def test_since_last_is_documented_and_refused_for_tables(tmp_path):
    """`--since LAST` needs the export record: the CSV export takes a date, not LAST."""
    from fallbackkit.errors import BadInput
    from fallbackkit.export import export_table
    kit, _, _ = _vitals_kit(tmp_path)
    with pytest.raises(BadInput):
        export_table(kit, "csv", tmp_path / "csv", since="LAST")
    kit.close()


def test_a_link_after_an_export_moves_the_data_to_the_hospitals_patient_without_overwriting_it(tmp_path):
    """`identities link DTM.. REAL` after a first send: the re-send adds the downtime identifier to
    the hospital's Patient by a conditional PATCH (its name and phone stay), retires the downtime
    Patient with a replaced-by link, and every resource of the later export references the real patient."""
    from fallbackkit.generate import print_blank
    from fallbackkit.reconcile import link_identity
    from fallbackkit.store.settings import set_setting
    kit = census_kit(tmp_path, wards={"3B": 1})
    mrn_system = "https://hospital.example/fhir/mrn"
    set_setting(kit, "mrn_system", mrn_system, "it")
    pack = print_blank(kit, "vitals", 1, tmp_path / "b.pdf", actor="t")
    sheet = pack.sheets[0]
    downtime = kit.db.conn.execute("SELECT downtime_mrn FROM forms WHERE form_id = ?",
                                   [sheet["form_id"]]).fetchone()[0]
    values = {**VITALS_C1, "patient_name": "Unknown male", "__accept_handwriting__": True}
    add_capture(kit, sheet["sheet_id"], values)
    real = kit.db.conn.execute("SELECT mrn FROM patients ORDER BY mrn LIMIT 1").fetchone()[0]
    export_fhir(kit, tmp_path / "one")
    with fhir_engine() as engine:
        status, hospital = engine.request("POST", "/Patient", {
            "resourceType": "Patient", "identifier": [{"system": mrn_system, "value": real}],
            "name": [{"family": "HOSPITAL-RECORD", "given": ["Kept"]}],
            "telecom": [{"system": "phone", "value": "+32 2 555 01 01"}]})
        assert status == 201
        _send(engine, tmp_path / "one")
        [temp] = [p for p in engine.search("Patient") if p["id"] != hospital["id"]]
        assert all(o["subject"]["reference"] == f"Patient/{temp['id']}" for o in engine.search("Observation"))

        link_identity(kit, downtime, real, "clerk1", "wristband")
        result = export_fhir(kit, tmp_path / "two")
        assert result["link_files"] == [f"link-{real}.json"]
        link = json.loads((tmp_path / "two" / f"link-{real}.json").read_text())
        assert link["type"] == "batch" and r4_errors(link) == []
        for _ in range(2):  # a re-send of everything changes nothing the second time
            _send(engine, tmp_path / "two")
            answers = engine.transaction(link)
        assert [a["response"]["status"][0] for a in answers] == ["4"], "the identifier is there already"
        patients = {p["id"]: p for p in engine.search("Patient")}
        assert len(patients) == 2
        kept = patients[hospital["id"]]
        assert kept["name"] == hospital["name"] and kept["telecom"] == hospital["telecom"]
        assert [i["value"] for i in kept["identifier"] if i["value"] == downtime] == [downtime]
        retired = patients[temp["id"]]
        assert retired["active"] is False
        assert retired["link"] == [{"other": {"reference": f"Patient/{hospital['id']}"}, "type": "replaced-by"}]
        for rtype in ("Observation", "DocumentReference", "Encounter"):
            found = engine.search(rtype)
            sent = [e for b in _bundles(tmp_path / "two") for e in b["entry"] if e["resource"]["resourceType"] == rtype]
            assert found and sent
            fresh = [r for r in found if any(i in {json.dumps(x) for e in sent for x in e["resource"]["identifier"]}
                                             for i in map(json.dumps, r.get("identifier", [])))]
            assert fresh and all(r["subject"]["reference"] == f"Patient/{hospital['id']}" for r in fresh), rtype
    kit.close()


def test_the_scanned_page_travels_as_a_binary_and_no_local_path_leaves_the_kit(tmp_path):
    """Defect 6: the page image as a Binary (or attachment.data), content type, size, SHA-1, a LOINC
    document type; not the kit path, not 'archive/' or 'pages/', not the scanner's file name."""
    import base64
    import hashlib
    kit, sheet, cap = _vitals_kit(tmp_path)
    result = export_fhir(kit, tmp_path / "one", max_entries=8)
    texts = [Path(f).read_text() for f in result["files"]] + [(tmp_path / "one" / "pending.json").read_text()]
    for text in texts:
        for leak in (str(kit.path), str(tmp_path), "archive/", "pages/", ".pdf"):
            assert leak not in text, leak
    parts = [json.loads(Path(f).read_text()) for f in result["files"]]
    entries = [e for b in parts for e in b["entry"]]
    docs = [e["resource"] for e in entries if e["resource"]["resourceType"] == "DocumentReference"]
    binaries = {e["fullUrl"]: e["resource"] for e in entries if e["resource"]["resourceType"] == "Binary"}
    assert docs and binaries
    image = (kit.path / kit.db.conn.execute("SELECT image_path FROM captures WHERE capture_id = ?",
                                            [cap]).fetchone()[0]).read_bytes()
    for doc in docs:
        assert doc["type"]["coding"] == [{"system": "http://loinc.org", "code": "8716-3", "display": "Vital signs"}]
        att = doc["content"][0]["attachment"]
        assert att["contentType"] == "image/png" and att["size"] == len(image)
        assert att["hash"] == base64.b64encode(hashlib.sha1(image).digest()).decode()
        assert base64.b64decode(binaries[att["url"]]["data"]) == image
    for part in parts:  # a part that holds a DocumentReference holds its Binary too
        urls = {e["fullUrl"] for e in part["entry"]}
        assert all(e["resource"]["content"][0]["attachment"]["url"] in urls for e in part["entry"]
                   if e["resource"]["resourceType"] == "DocumentReference")
    with fhir_engine() as engine:
        for _ in range(2):
            for part in parts:
                assert r4_errors(part) == []
                engine.transaction(part)
        [binary] = engine.search("Binary")
        [doc] = engine.search("DocumentReference")
        assert doc["content"][0]["attachment"]["url"] == f"Binary/{binary['id']}"
        assert base64.b64decode(binary["data"]) == image
    inline = export_fhir(kit, tmp_path / "two", page_images="inline")
    entries = [e for f in inline["files"] for e in json.loads(Path(f).read_text())["entry"]]
    assert not any(e["resource"]["resourceType"] == "Binary" for e in entries)
    [doc] = [e["resource"] for e in entries if e["resource"]["resourceType"] == "DocumentReference"]
    assert base64.b64decode(doc["content"][0]["attachment"]["data"]) == image
    kit.close()


def test_bundle_type_batch_is_accepted_and_refers_by_identifier(tmp_path):
    """Defect 8: `--bundle-type batch` writes batches the engine takes entry by entry; nothing in a
    batch refers to another entry's urn:uuid (a batch does not resolve them), and a re-send creates nothing."""
    import subprocess
    import sys
    kit, sheet, cap = _vitals_kit(tmp_path)
    run = subprocess.run([sys.executable, "-m", "fallbackkit", "--kit", str(kit.path), "export", "--format", "fhir",
                          "--bundle-type", "batch", "--max-entries", "8", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    bundles = _bundles(tmp_path / "b")
    assert bundles and all(b["type"] == "batch" for b in bundles)
    for b in bundles:
        assert r4_errors(b) == []
        assert '"reference": "urn:uuid:' not in json.dumps(b) and '"url": "urn:uuid:' not in json.dumps(b)
    with fhir_engine() as engine:
        for _ in range(2):
            for b in bundles:
                answers = engine.transaction(b)
                assert all(a["response"]["status"].startswith("2") for a in answers), answers
        [patient] = engine.search("Patient")
        observations = engine.search("Observation")
        assert len(observations) == sum(e["resource"]["resourceType"] == "Observation"
                                        for b in bundles for e in b["entry"])
        mrn = next(i for i in patient["identifier"] if i["system"].endswith(":mrn"))
        assert all(o["subject"]["identifier"] == {"system": mrn["system"], "value": mrn["value"]}
                   for o in observations)
        [doc] = engine.search("DocumentReference")
        [binary] = engine.search("Binary")
        assert doc["content"][0]["attachment"]["url"] == f"Binary/{binary['id']}"
    kit.close()
