"""CSV and JSON exports at hospital scale (issue 16): they load a batch of forms at a time and
write rows as they come into a private temporary file that replaces the final one at the end.
The files are byte for byte what the whole-kit export wrote. Real SQLite, a real printed kit,
captures stored as the scan stage stores them."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import stat

import pytest

from fallbackkit.errors import FallbackkitError
from fallbackkit.export import collect, tabular
from fallbackkit.files import private_writer
from fallbackkit.store.kit import now_iso

from test_batch_stream import _scanned


def _whole_kit(kit, stamp):
    """What the export wrote when it held the whole kit: every form in one batch, every row, then one write."""
    store = next(collect.iter_stores(kit, batch=10 ** 9))
    readings = tabular.reading_rows(store)
    worklist = tabular.worklist_rows(kit)

    def as_csv(rows, columns):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\r\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: tabular._cell(row.get(c)) for c in columns})
        return buf.getvalue().encode("utf-8")
    doc = {"kit_id": kit.kit_id, "exported_at": stamp, "ward": None, "since": None,
           "worklist": worklist, "readings": readings}
    return (as_csv(readings, tabular.READING_COLUMNS), as_csv(worklist, tabular.WORKLIST_COLUMNS),
            json.dumps(doc, indent=1, ensure_ascii=False, default=str).encode("utf-8"), len(readings))


def test_the_exports_hold_one_batch_of_forms_at_a_time_and_write_the_same_bytes(kit, ward_pack, tmp_path,
                                                                                monkeypatch):
    _scanned(kit)
    stamp = now_iso()
    monkeypatch.setattr(tabular, "now_iso", lambda: stamp)
    want_readings, want_worklist, want_json, n = _whole_kit(kit, stamp)
    assert n > 100

    held: list[tuple[int, int]] = []
    real = collect.iter_stores

    def counting(kit_, ward=None, batch=collect.FORMS_PER_BATCH):
        for store in real(kit_, ward, batch=4):
            held.append((len(store.forms), len(store.readings)))
            yield store
    monkeypatch.setattr(tabular, "iter_stores", counting)

    done = tabular.export_table(kit, "csv", tmp_path / "csv", actor="tester")
    assert (tmp_path / "csv" / "readings.csv").read_bytes() == want_readings
    assert (tmp_path / "csv" / "worklist.csv").read_bytes() == want_worklist
    assert done["readings"] == n and done["worklist"] == want_worklist.count(b"\r\n") - 1
    done = tabular.export_table(kit, "json", tmp_path / "export.json", actor="tester")
    assert (tmp_path / "export.json").read_bytes() == want_json
    assert done["readings"] == n

    batches = len(held) // 2
    assert batches > 3 and max(f for f, _ in held) <= 4  # never the whole kit at once
    assert max(r for _, r in held) < n / 3
    for path in (tmp_path / "csv" / "readings.csv", tmp_path / "export.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_export_that_fails_half_way_leaves_the_older_file_and_no_half_one(kit, ward_pack, tmp_path, monkeypatch):
    _scanned(kit)
    out = tmp_path / "export.json"
    out.write_text("the export of yesterday")
    seen: list[int] = []
    real = tabular.iter_reading_rows

    def failing(store, after=None):
        for i, row in enumerate(real(store, after)):
            if i == 20:
                tmp = [p for p in tmp_path.iterdir() if p.name.startswith(".export.json.")]
                assert len(tmp) == 1 and tmp[0].stat().st_size > 0  # rows already written, not under the name
                seen.append(stat.S_IMODE(tmp[0].stat().st_mode))
                raise FallbackkitError("the disk is full")
            yield row
    monkeypatch.setattr(tabular, "iter_reading_rows", failing)
    with pytest.raises(FallbackkitError):
        tabular.export_table(kit, "json", out, actor="tester")
    assert seen == [0o600]
    assert out.read_text() == "the export of yesterday"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export.json.")]  # the half file is gone


def test_a_csv_export_that_fails_in_the_worklist_writes_neither_file(kit, ward_pack, tmp_path, monkeypatch):
    _scanned(kit)
    out = tmp_path / "csv"
    tabular.export_table(kit, "csv", out, actor="tester")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = tabular.iter_worklist_rows

    def failing(kit_, ward=None):
        rows = real(kit_, ward)

        def gen():
            yield next(rows)
            raise FallbackkitError("the store went away")
        return gen()
    monkeypatch.setattr(tabular, "iter_worklist_rows", failing)
    record_review_of_one(kit)  # the readings.csv of this export would differ from the older one
    with pytest.raises(FallbackkitError):
        tabular.export_table(kit, "csv", out, actor="tester")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the older pair, as it was, nothing else


def record_review_of_one(kit) -> None:
    from fallbackkit.store.decisions import record_review
    rid, ftype = kit.db.conn.execute("SELECT reading_id, type FROM readings WHERE status = 'review'"
                                     " ORDER BY reading_id DESC").fetchone()
    record_review(kit.db, rid, "correct" if ftype == "checkbox" else "transcribe",
                  True if ftype == "checkbox" else "7", "clerk")


def test_the_report_holds_one_batch_of_forms_at_a_time_and_says_the_same(kit, ward_pack, monkeypatch):
    from fallbackkit.export import report

    _scanned(kit)
    stamp = now_iso()
    monkeypatch.setattr(report, "now_iso", lambda: stamp)
    monkeypatch.setattr(report, "local_text", lambda moment, zone: "now")
    whole = next(collect.iter_stores(kit, batch=10 ** 9))
    want = report.report_data(kit)  # one batch here: the kit has fewer forms than FORMS_PER_BATCH
    assert len(whole.forms) < collect.FORMS_PER_BATCH and want["handover"]
    held: list[int] = []
    real = collect.iter_stores

    def counting(kit_, ward=None, batch=collect.FORMS_PER_BATCH):
        for store in real(kit_, ward, batch=4):
            held.append(len(store.forms))
            yield store
    monkeypatch.setattr(report, "iter_stores", counting)
    assert report.report_data(kit) == want
    assert len(held) > 3 and max(held) <= 4
    assert want["totals"]["readings"] == len(whole.readings) > 100
    assert want["totals"]["forms_printed"] == len(whole.forms)
    assert want["totals"]["readings_to_review"] == sum(1 for r in whole.readings if not r.resolved) > 0


def test_private_writer_is_created_private_and_replaces_the_file_at_the_end(tmp_path):
    path = tmp_path / "sub" / "rows.csv"
    old_umask = os.umask(0)
    try:
        with private_writer(path, text=True) as fh:
            fh.write("a,b\r\nç,\n\r\n")
            assert not path.exists()
            tmp = path.with_name(f".rows.csv.{os.getpid()}.tmp")
            assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == "a,b\r\nç,\n\r\n".encode("utf-8")  # no newline translated
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and sorted(os.listdir(path.parent)) == ["rows.csv"]


def test_the_export_record_hashes_a_file_a_chunk_at_a_time(tmp_path, monkeypatch):
    import hashlib
    import pathlib

    from fallbackkit.store.exports import file_entry
    data = os.urandom(3 << 20) + b"end"
    path = tmp_path / "export.json"
    path.write_bytes(data)
    monkeypatch.setattr(pathlib.Path, "read_bytes", lambda self: (_ for _ in ()).throw(AssertionError("whole file")))
    assert file_entry(path) == {"name": "export.json", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_the_html_report_is_written_a_row_at_a_time(kit, ward_pack, tmp_path, monkeypatch):
    """The flags of a big kit are a table of tens of megabytes: never one string with the rest."""
    import fallbackkit.files as files
    from fallbackkit.export import report

    _scanned(kit)
    stamp = now_iso()
    monkeypatch.setattr(report, "now_iso", lambda: stamp)
    monkeypatch.setattr(report, "local_text", lambda moment, zone: "now")
    want = report.write_report(kit, tmp_path / "whole.html")
    d = report.report_data(kit)
    rows = len(d["missing"]) + len(d["conflicts"]) + len(d["flags"])
    assert rows > 20
    writes: list[int] = []
    real = files.private_writer

    @contextlib.contextmanager
    def recording(path, text=False):
        with real(path, text=text) as fh:
            write = fh.write
            fh.write = lambda data: (writes.append(len(data)), write(data))[1]
            yield fh
    monkeypatch.setattr(report, "private_writer", recording)
    got = report.write_report(kit, tmp_path / "rows.html")
    assert (tmp_path / "rows.html").read_bytes() == (tmp_path / "whole.html").read_bytes()
    assert got["totals"] == want["totals"]
    assert len(writes) > rows and max(writes) < sum(writes) / 4


def _dead_pid() -> int:
    import subprocess
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def test_the_next_export_removes_what_a_killed_export_left_and_nothing_else(kit, ward_pack, tmp_path):
    """An export killed outright (power cut, kill -9) leaves its hidden temporary files and the FHIR
    export's spool folder, patient data, in the output folder: the next export into that folder
    removes them once their process is gone, and keeps a running export's files and anyone else's."""
    from fallbackkit.export.fhir import export_fhir
    _scanned(kit)
    dead, alive = _dead_pid(), os.getppid()
    csv_dir, fhir_dir = tmp_path / "csv", tmp_path / "fhir"
    csv_dir.mkdir()
    fhir_dir.mkdir()

    def private(path, mode=0o600):
        path.write_text("patient rows of a killed export")
        path.chmod(mode)
        return path
    left = private(csv_dir / f".readings.csv.{dead}.tmp")
    running = private(csv_dir / f".worklist.csv.{alive}.tmp")  # an export still going on: kept
    not_ours = private(csv_dir / f".notes.{dead}.tmp", 0o644)  # not a private file of ours: kept
    spool = fhir_dir / f".fallbackkit-spool-{dead}-x1y2"
    spool.mkdir(mode=0o700)
    private(spool / "spool.sqlite")
    half_bundle = private(fhir_dir / f".bundle-000123.json.{dead}.tmp")

    tabular.export_table(kit, "csv", csv_dir, actor="tester")
    export_fhir(kit, fhir_dir)

    assert not left.exists() and not spool.exists() and not half_bundle.exists()
    assert running.exists() and not_ours.exists()
    assert (csv_dir / "readings.csv").exists() and (fhir_dir / "pending.json").exists()  # both exports wrote
    assert not list(fhir_dir.glob(".fallbackkit-spool-*"))  # this export's own spool is gone too
