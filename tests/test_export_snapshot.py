"""A streamed export or report reads the store a batch of forms at a time, inside one read
transaction (issue 16): a station's write that commits between two batches is not in the output
(the output is one state of the store), and the station is not blocked meanwhile (WAL). Real
SQLite, two connections, a real printed kit."""
from __future__ import annotations

import json
import time

import pytest

from fallbackkit.export import collect, fhir, report, tabular
from fallbackkit.store import open_kit
from fallbackkit.store.decisions import record_review
from fallbackkit.store.kit import now_iso

from reconcile_helpers import fake_scan
from test_batch_stream import _scanned


def _last_waiting(kit):
    """A reading still waiting for a person, of the last form printed (read in the last batch)."""
    return kit.db.conn.execute(
        "SELECT r.reading_id, r.type FROM readings r JOIN captures c ON c.capture_id = r.capture_id"
        " JOIN forms f ON f.form_id = c.form_id WHERE r.status = 'review'"
        " AND NOT EXISTS (SELECT 1 FROM reviews v WHERE v.reading_id = r.reading_id)"
        " ORDER BY f.printed_at DESC, f.form_id DESC, r.reading_id LIMIT 1").fetchone()


def _decide_from_the_station(kit, reading):
    """Through another connection: a clerk's decision, as the review station makes it, and a
    rescan of the last printed sheet; returns how long they took (they must not wait for the export)."""
    rid, ftype = reading
    station = open_kit(kit.path)
    try:
        station.db.conn.execute("PRAGMA busy_timeout = 5000")
        last_sheet = station.db.conn.execute("SELECT s.sheet_id FROM sheets s JOIN forms f ON f.form_id = s.form_id"
                                             " ORDER BY f.printed_at DESC, f.form_id DESC LIMIT 1").fetchone()[0]
        started = time.perf_counter()
        record_review(station.db, rid, "correct" if ftype == "checkbox" else "transcribe",
                      True if ftype == "checkbox" else "7", "clerk")
        fake_scan(station, last_sheet, {})
        return time.perf_counter() - started
    finally:
        station.close()


def _with_a_write_between_batches(monkeypatch, module, kit, reading, waited):
    """iter_stores in batches of 4 forms, the station's decision committed after the first batch."""
    real = collect.iter_stores

    def batches(kit_, ward=None, batch=collect.FORMS_PER_BATCH):
        for n, store in enumerate(real(kit_, ward, batch=4)):
            yield store
            if n == 0:
                waited.append(_decide_from_the_station(kit, reading))
    monkeypatch.setattr(module, "iter_stores", batches)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_table_export_is_one_state_of_the_store(kit, ward_pack, tmp_path, monkeypatch, fmt):
    _scanned(kit)
    stamp = now_iso()
    monkeypatch.setattr(tabular, "now_iso", lambda: stamp)
    out = tmp_path / ("before" if fmt == "csv" else "before.json")
    tabular.export_table(kit, fmt, out, actor="tester")
    reading = _last_waiting(kit)
    assert reading is not None
    waited: list[float] = []
    _with_a_write_between_batches(monkeypatch, tabular, kit, reading, waited)
    during = tmp_path / ("during" if fmt == "csv" else "during.json")
    tabular.export_table(kit, fmt, during, actor="tester")
    assert waited and waited[0] < 2.0  # the station was not blocked by the export's read
    names = ["readings.csv", "worklist.csv"] if fmt == "csv" else [""]
    for name in names:
        assert (during / name if name else during).read_bytes() == (out / name if name else out).read_bytes()
    assert not kit.db.conn.in_transaction
    monkeypatch.setattr(tabular, "iter_stores", collect.iter_stores)
    after = tmp_path / ("after" if fmt == "csv" else "after.json")
    tabular.export_table(kit, fmt, after, actor="tester")  # the decision did land: the next export has it
    first = names[0]
    assert (after / first if first else after).read_bytes() != (out / first if first else out).read_bytes()


def test_the_report_is_one_state_of_the_store(kit, ward_pack, tmp_path, monkeypatch):
    _scanned(kit)
    stamp = now_iso()
    monkeypatch.setattr(report, "now_iso", lambda: stamp)
    monkeypatch.setattr(report, "local_text", lambda moment, zone: "now")
    report.write_report(kit, tmp_path / "before.html")
    reading = _last_waiting(kit)
    waited: list[float] = []
    _with_a_write_between_batches(monkeypatch, report, kit, reading, waited)
    done = report.write_report(kit, tmp_path / "during.html")
    assert waited and waited[0] < 2.0
    assert (tmp_path / "during.html").read_bytes() == (tmp_path / "before.html").read_bytes()
    assert not kit.db.conn.in_transaction
    monkeypatch.setattr(report, "iter_stores", collect.iter_stores)
    again = report.write_report(kit, tmp_path / "after.html")
    assert again["totals"]["captures"] == done["totals"]["captures"] + 1


def test_the_snapshot_refreshes_the_summaries_first_and_writes_nothing_inside(kit, ward_pack):
    _scanned(kit)
    conn = kit.db.conn
    conn.execute("INSERT OR IGNORE INTO summary_dirty (form_id) SELECT form_id FROM forms LIMIT 1")
    conn.commit()
    with collect.snapshot(kit):
        assert conn.in_transaction
        assert conn.execute("SELECT COUNT(*) FROM summary_dirty").fetchone()[0] == 0
        changes = conn.total_changes
        assert json.loads(json.dumps(report.report_data(kit)["totals"]))
        assert conn.in_transaction and conn.total_changes == changes  # still one read, nothing written
    assert not conn.in_transaction


def test_the_fhir_export_is_one_state_of_the_store(kit, ward_pack, tmp_path, monkeypatch):
    _scanned(kit)
    stamp = now_iso()
    monkeypatch.setattr(fhir, "now_iso", lambda: stamp)
    monkeypatch.setattr(fhir, "FORMS_PER_BATCH", 4)
    fhir.export_fhir(kit, tmp_path / "before", page_images="none")
    reading = _last_waiting(kit)
    waited: list[float] = []
    real = collect.FormLoader.store
    calls: list[int] = []

    def store(self, part):  # the station writes between the first batch and the second
        calls.append(len(part))
        if len(calls) == 2:
            waited.append(_decide_from_the_station(kit, reading))
        return real(self, part)
    monkeypatch.setattr(collect.FormLoader, "store", store)
    fhir.export_fhir(kit, tmp_path / "during", page_images="none")
    assert waited and waited[0] < 2.0 and len(calls) > 3
    before = sorted(p.name for p in (tmp_path / "before").iterdir())
    assert before == sorted(p.name for p in (tmp_path / "during").iterdir())
    for name in before:
        assert (tmp_path / "during" / name).read_bytes() == (tmp_path / "before" / name).read_bytes(), name
    assert not kit.db.conn.in_transaction
    monkeypatch.setattr(collect.FormLoader, "store", real)
    fhir.export_fhir(kit, tmp_path / "after", page_images="none")
    assert json.loads((tmp_path / "after" / "pending.json").read_bytes()) != json.loads(
        (tmp_path / "before" / "pending.json").read_bytes())  # the decision and the rescan did land
