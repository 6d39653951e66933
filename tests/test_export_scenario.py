"""Exports from a real scenario: print -> simulate -> scan -> decisions -> link -> entered -> export.

One kit is built for the module (the real scan path takes a few seconds); the tests only read it,
except where they work on a copy.
"""
from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from urllib.parse import unquote

import pypdfium2 as pdfium
import pytest
from fhir.resources.R4B.bundle import Bundle

from export_helpers import HAND_VALUES, scan_scenario
from fallbackkit.export import export_fhir, export_table, report_data, write_report
from kit_helpers import census_kit

LOINC = {"8310-5", "8867-4", "8480-6", "8462-4", "9279-1", "59408-5", "72514-3"}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export-scenario")
    kit = census_kit(tmp, wards={"3B": 3, "ICU": 2})
    info = scan_scenario(kit, tmp)
    info["tmp"] = tmp
    yield kit, info
    kit.close()


@pytest.fixture(scope="module")
def fhir_out(scenario):
    kit, info = scenario
    out = info["tmp"] / "fhir-1"
    result = export_fhir(kit, out)
    return out, result


def _bundles(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(out.glob("bundle-*.json"))}


def test_every_bundle_validates_as_fhir_r4_transaction(fhir_out):
    out, result = fhir_out
    bundles = _bundles(out)
    assert result["bundles"] == len(bundles) >= 2
    for name, data in bundles.items():
        bundle = Bundle.model_validate(data)
        assert bundle.type == "transaction", name
        types = {e["resource"]["resourceType"] for e in data["entry"]}
        assert {"Patient", "Encounter", "Observation", "Provenance", "DocumentReference"} <= types, (name, types)


def _condition(request: dict) -> str:
    """The search a conditional entry is matched by, decoded: 'identifier=system|value'."""
    return unquote(request["ifNoneExist"] if request["method"] == "POST" else request["url"].partition("?")[2])


def test_every_entry_is_conditional_and_references_resolve(fhir_out):
    out, _ = fhir_out
    for name, data in _bundles(out).items():
        urls = [e["fullUrl"] for e in data["entry"]]
        assert len(urls) == len(set(urls)), name
        for e in data["entry"]:
            req, rtype = e["request"], e["resource"]["resourceType"]
            if req["method"] == "POST":  # a real patient: conditional create, never overwritten
                assert rtype == "Patient" and req["url"] == "Patient"
            elif rtype == "Binary":  # a page image: no identifier in R4, PUT under an id derived from the page
                assert req["url"] == f"Binary/{e['resource']['id']}" and e["fullUrl"].endswith(e["resource"]["id"])
                continue
            else:  # everything from the paper: conditional update, so a correction lands
                assert req["method"] == "PUT" and req["url"].startswith(f"{rtype}?")
                assert "|" not in req["url"] and " " not in req["url"], "the search value is URL-encoded"
            key, _, ident = _condition(req).partition("=")
            system, _, value = ident.partition("|")
            assert key in ("identifier", "_tag") and system.startswith("urn:") and value, req
            if key == "identifier":
                assert {"system": system, "value": value} in [
                    {"system": i["system"], "value": i["value"]} for i in e["resource"]["identifier"]]
        refs = re.findall(r'"reference": "([^"]+)"', json.dumps(data))
        assert refs and all(r in urls for r in refs), name


def test_resubmitting_is_idempotent_ids_are_deterministic(scenario, fhir_out):
    kit, info = scenario
    out, _ = fhir_out
    again = info["tmp"] / "fhir-2"
    export_fhir(kit, again)
    first, second = _bundles(out), _bundles(again)
    assert first.keys() == second.keys()
    for name in first:
        a = [(e["fullUrl"], e["request"]) for e in first[name]["entry"]]
        b = [(e["fullUrl"], e["request"]) for e in second[name]["entry"]]
        assert a == b
        strip = lambda d: [e["resource"] for e in d["entry"]]  # noqa: E731
        assert strip(first[name]) == strip(second[name]), "only the bundle timestamp may change"


def test_linked_patient_carries_both_identifiers_and_blank_form_data(scenario, fhir_out):
    kit, info = scenario
    out, _ = fhir_out
    data = _bundles(out)[f"bundle-{info['linked_to']}.json"]
    patient = data["entry"][0]["resource"]
    systems = {i["system"]: i["value"] for i in patient["identifier"]}
    assert systems[f"urn:fallbackkit:{kit.kit_id}:mrn"] == info["linked_to"]
    assert systems[f"urn:fallbackkit:{kit.kit_id}:downtime-mrn"] == info["blank_mrn"]
    assert _condition(data["entry"][0]["request"]) == f"identifier=urn:fallbackkit:{kit.kit_id}:mrn|{info['linked_to']}"
    items = [i["value"] for e in data["entry"] for i in e["resource"].get("identifier", [])
             if i["system"].endswith(":item")]
    assert any(v.startswith(info["blank_form"] + ":") for v in items), "the blank form's vitals are in the bundle"
    assert not (out / f"bundle-{info['blank_mrn']}.json").exists()


def test_observations_use_loinc_and_care_time(fhir_out):
    out, _ = fhir_out
    seen = set()
    for data in _bundles(out).values():
        for e in data["entry"]:
            r = e["resource"]
            if r["resourceType"] != "Observation":
                continue
            codes = {c["code"] for c in r["code"].get("coding", []) if c["system"] == "http://loinc.org"}
            seen |= codes
            if "valueQuantity" in r and codes & LOINC:
                assert r["effectiveDateTime"].startswith("2026-11-28T"), r
    assert {"8310-5", "8867-4"} <= seen


def test_provenance_names_author_enterer_verifier(scenario, fhir_out):
    kit, _ = scenario
    out, _ = fhir_out
    entries = [e for d in _bundles(out).values() for e in d["entry"]]
    provs = [e["resource"] for e in entries if e["resource"]["resourceType"] == "Provenance"]
    assert provs
    roles = {a["type"]["coding"][0]["code"] for p in provs for a in p["agent"]}
    assert {"author", "enterer", "verifier"} <= roles
    assert any(a["who"]["display"] == "clerk1" for p in provs for a in p["agent"])
    assert all(p["entity"] for p in provs)
    # the time it happened, unless the paper gives none: a form whose date and time boxes were all
    # left blank (the simulated nurse may leave them) has none, nothing is made up
    item_of = {e["fullUrl"]: i["value"] for e in entries for i in e["resource"].get("identifier", [])
               if i["system"].endswith(":item")}
    timed = {form for form, value in kit.db.execute(
        "SELECT s.form_id, r.value FROM readings r JOIN sheets s ON s.sheet_id = r.sheet_id"
        " WHERE r.type = 'datetime'") if value is not None}
    for p in provs:
        if not p.get("occurredDateTime"):
            item = item_of[p["target"][0]["reference"]]
            assert item.split(":")[0] not in timed, item
    assert sum(bool(p.get("occurredDateTime")) for p in provs) > len(provs) / 2


def test_unresolved_items_are_listed_not_exported(scenario, fhir_out):
    kit, info = scenario
    out, result = fhir_out
    pending = json.loads((out / "pending.json").read_text())["items"]
    assert result["pending"] == len(pending) >= len(info["pending_times"]) == 1
    sheet_id, field = info["pending_times"][0]
    form_id = kit.db.conn.execute("SELECT form_id FROM sheets WHERE sheet_id = ?", [sheet_id]).fetchone()[0]
    item = f"{form_id}:{field.split('.')[0]}"
    assert item in {p["item"] for p in pending}
    exported = json.dumps(_bundles(out))
    assert f'"{item}:' not in exported and f'"{item}"' not in exported


def test_export_files_are_private(fhir_out, scenario):
    kit, info = scenario
    out, _ = fhir_out
    csv_dir = info["tmp"] / "csv"
    export_table(kit, "csv", csv_dir)
    export_table(kit, "json", info["tmp"] / "export.json")
    for path in [*out.iterdir(), *csv_dir.iterdir(), info["tmp"] / "export.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_csv_and_json_list_every_reading_with_source_and_reviewer(scenario):
    kit, info = scenario
    doc_path = info["tmp"] / "all.json"
    export_table(kit, "json", doc_path)
    doc = json.loads(doc_path.read_text())
    n_readings = kit.db.conn.execute("SELECT count(*) FROM readings r JOIN captures c ON c.capture_id ="
                                     " r.capture_id WHERE c.status = 'read'").fetchone()[0]
    assert len(doc["readings"]) == n_readings
    reviewed = [r for r in doc["readings"] if r["reviewer"]]
    assert reviewed and all(r["source_file"] and r["source_page"] for r in doc["readings"])
    assert {r["reviewer"] for r in reviewed} == {"clerk1"}
    entered = {w["item_id"] for w in doc["worklist"] if w["status"] == "entered"}
    assert entered == set(info["entered"]) and entered


def test_report_counts_equal_store(scenario):
    kit, _ = scenario
    d = report_data(kit)
    conn = kit.db.conn
    t = d["totals"]
    assert t["sheets_printed"] == conn.execute("SELECT count(*) FROM sheets").fetchone()[0]
    assert t["sheets_returned"] == conn.execute(
        "SELECT count(DISTINCT sheet_id) FROM captures WHERE status = 'read'").fetchone()[0]
    unresolved = conn.execute(
        "SELECT count(*) FROM readings r JOIN captures c ON c.capture_id = r.capture_id WHERE c.status = 'read'"
        " AND r.status = 'review' AND r.reading_id NOT IN (SELECT reading_id FROM reviews)").fetchone()[0]
    assert t["readings_to_review"] == unresolved == 1
    assert t["reentry_entered"] == conn.execute(
        "SELECT count(DISTINCT item_id) FROM worklist_marks WHERE status = 'entered'").fetchone()[0]
    from fallbackkit.reconcile import reconcile
    rt = reconcile(kit)["totals"]
    assert t["sheets_printed"] == rt["sheets_printed"]
    assert t["sheets_returned"] == rt["sheets_returned"]
    assert sum(g["printed"] for g in d["by_group"]) == t["sheets_printed"]
    assert t["consistency_flags"] == rt["consistency_flags"]
    from fallbackkit.export import check
    assert check(kit, archive=True)["ok"], "a store filled by the real scan path passes every check"


def test_pdf_report_renders_and_holds_the_totals(scenario):
    kit, info = scenario
    out = info["tmp"] / "report.pdf"
    result = write_report(kit, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    pdf = pdfium.PdfDocument(str(out))
    try:
        assert len(pdf) >= 2
        text = "\n".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
        first = pdf[0].get_textpage().get_text_range()
        bitmap = pdf[1].render(scale=0.5).to_numpy()
    finally:
        pdf.close()
    t = result["totals"]
    assert "What is left to do" in first
    assert f"Sheets printed {t['sheets_printed']}" in first.replace("\r", "")
    assert f"Sheets returned {t['sheets_returned']}" in first.replace("\r", "")
    assert f"Readings to review {t['readings_to_review']}" in first.replace("\r", "")
    assert "1 reading waits for a clerk's review." in text.replace("\r\n", " ").replace("\n", " ")
    assert bitmap.min() < 100, "the chart page has dark ink"


def test_html_report_has_no_external_url_and_inline_charts(scenario):
    kit, info = scenario
    out = info["tmp"] / "report.html"
    result = write_report(kit, out)
    text = out.read_text()
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)""", text)
    assert text.count("<svg") >= 3
    assert f"<td>Sheets printed</td><td>{result['totals']['sheets_printed']}</td>" in text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_ward_filter_limits_bundles(scenario):
    kit, info = scenario
    out = info["tmp"] / "fhir-ward"
    export_fhir(kit, out, ward="3B")
    assert not list(out.glob("bundle-*.json")), "nothing of ward 3B was scanned"
    out2 = info["tmp"] / "fhir-icu"
    export_fhir(kit, out2, ward="ICU")
    icu = {p.name for p in out2.glob("bundle-*.json")}
    assert icu and icu <= {p.name for p in (info["tmp"] / "fhir-1").glob("bundle-*.json")}


def test_hand_values_reach_the_bundle(fhir_out):
    out, _ = fhir_out
    temps = [e["resource"]["valueQuantity"]["value"] for d in _bundles(out).values() for e in d["entry"]
             if e["resource"]["resourceType"] == "Observation"
             and e["resource"]["code"].get("coding", [{}])[0].get("code") == "8310-5"]
    assert temps and set(temps) == {float(HAND_VALUES["temperature"])}


def test_report_lists_flags_by_clinical_risk_medication_first(scenario):
    kit, _ = scenario
    from fallbackkit.export.report import CODE_RISK, KIND_RISK
    from fallbackkit.generate import kit_templates
    kinds = {n: min(KIND_RISK.get(r.kind, 9) for r in t.reentry) for n, t in kit_templates(kit).items()}
    flags = report_data(kit)["flags"]
    assert flags, "the scenario has flagged forms"
    ranks = [(kinds[f["template"]], CODE_RISK.get(f["code"], 5)) for f in flags]
    assert ranks == sorted(ranks)


def test_report_shows_throughput_per_person(scenario):
    kit, _ = scenario
    conn = kit.db.conn
    decisions = dict(conn.execute("SELECT actor, COUNT(*) FROM reviews WHERE decision != 'undo' GROUP BY actor"))
    marks = dict(conn.execute("SELECT actor, COUNT(*) FROM worklist_marks GROUP BY actor"))
    clerks = {c["actor"]: c for c in report_data(kit)["clerks"]}
    assert set(clerks) == set(decisions) | set(marks)
    for actor, c in clerks.items():
        assert (c["decisions"], c["items_marked"]) == (decisions.get(actor, 0), marks.get(actor, 0))


def test_report_times_are_in_the_kits_time_zone(scenario, monkeypatch):
    """Hours on the progress chart and the clerks' first/last are the wards' clock (the kit's tz
    setting), not UTC or this computer's zone."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from fallbackkit.export import report as rp
    from fallbackkit.store.settings import get_setting
    kit, _ = scenario
    assert rp.local_zone(kit) == ZoneInfo(get_setting(kit, "tz"))
    zone = ZoneInfo("Asia/Kathmandu")  # +05:45: no hour of it is a UTC hour
    monkeypatch.setattr(rp, "local_zone", lambda kit: zone)
    d = report_data(kit)
    assert d["zone"] == "Asia/Kathmandu" and d["generated_local"].endswith("+0545")
    conn = kit.db.conn
    times = sorted(dt.datetime.fromisoformat(r[0]).astimezone(zone) for r in conn.execute(
        "SELECT at FROM worklist_marks WHERE status = 'entered'"))
    assert d["progress"][0][0] == times[0].strftime("%d/%m %H:00")
    for c in d["clerks"]:
        stamps = [dt.datetime.fromisoformat(r[0]).astimezone(zone) for r in conn.execute(
            "SELECT at FROM reviews WHERE actor = ? AND decision != 'undo' UNION ALL"
            " SELECT at FROM worklist_marks WHERE actor = ?", [c["actor"], c["actor"]])]
        assert c["first"] == min(stamps).isoformat(timespec="minutes")
    out = write_report(kit, scenario[1]["tmp"] / "report-local.html")
    html_text = Path(out["file"]).read_text()
    assert "times in Asia/Kathmandu" in html_text and d["generated_local"][:10] in html_text


def test_report_hands_over_per_patient_ranked_by_risk(scenario):
    from fallbackkit.export.report import CODE_RISK, KIND_RISK
    from fallbackkit.generate import kit_templates
    from fallbackkit.reconcile import worklist
    kit, _ = scenario
    d = report_data(kit)
    rows = d["handover"]
    assert rows and [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    # the counts are the worklist's and the flags', per patient
    items = worklist(kit)
    assert sum(r["items_entered"] for r in rows) == sum(1 for i in items if i.status == "entered")
    assert sum(r["items_left"] for r in rows) == sum(1 for i in items if i.status == "pending")
    assert sum(r["flags"] for r in rows) == d["totals"]["consistency_flags"]
    per_patient_missing = sum(r["forms_missing"] + r["forms_partly"] for r in rows)
    assert per_patient_missing == len({m["form_id"] for m in d["missing"]})
    # the worst open flag decides the order: a patient with a medication flag before one with none
    kinds = {n: min(KIND_RISK.get(r.kind, 9) for r in t.reentry) for n, t in kit_templates(kit).items()}
    top = (kinds[d["flags"][0]["template"]], CODE_RISK.get(d["flags"][0]["code"], 5))
    assert rows[0]["flags"] and top == min((kinds[f["template"]], CODE_RISK.get(f["code"], 5)) for f in d["flags"])
    flagged = [r for r in rows if r["flags"]]
    assert flagged and rows[:len(flagged)] == flagged, "every flagged patient comes before the unflagged"
    assert "open flag" in rows[0]["why"]
    # on the report, in both renderings
    out = scenario[1]["tmp"] / "handover.html"
    write_report(kit, out)
    text = out.read_text()
    assert "Handover per patient, highest risk first" in text and rows[0]["why"].split(";")[0] in text
