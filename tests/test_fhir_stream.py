"""The FHIR export at hospital scale (issue 16): forms are read a batch at a time, grouped by
patient (a patient's forms in print order, patients in the order of their files), each bundle
written as it is made and pending.json in the order a whole-kit export listed it. Batches of a few
forms give the same bytes as one batch (every option that shapes the files), and a failure
half-way leaves the older export as it was. Real SQLite, a real printed and scanned kit."""
from __future__ import annotations

import json
import os

import pytest

from fallbackkit.export import collect, fhir

import export_helpers
from kit_helpers import census_kit

TZ = "Europe/Brussels"


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """Scanned wards with a linked downtime patient, entered items, reviews and conflicts."""
    tmp = tmp_path_factory.mktemp("scenario")
    kit = census_kit(tmp, wards={"3B": 4, "ICU": 2})
    export_helpers.scan_scenario(kit, tmp)
    yield kit
    kit.close()


def _export(kit, out, monkeypatch, batch, **options):
    monkeypatch.setattr(fhir, "FORMS_PER_BATCH", batch)
    result = fhir.export_fhir(kit, out, tz=TZ, **options)
    return result, {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize("options", [{}, {"max_entries": 8}, {"bundle_type": "batch"},
                                     {"skip_entered": True, "page_images": "none"}],
                         ids=["plain", "parts", "batch", "skip-entered"])
def test_batches_of_a_few_forms_write_the_bytes_of_one_batch(scenario, tmp_path, monkeypatch, options):
    stamp = fhir.now_iso()
    monkeypatch.setattr(fhir, "now_iso", lambda: stamp)
    loaded: list[int] = []
    real = collect.FormLoader.store

    def counting(self, part):
        loaded.append(len(part))
        return real(self, part)
    monkeypatch.setattr(collect.FormLoader, "store", counting)
    whole, want = _export(scenario, tmp_path / "one", monkeypatch, 100_000, **options)
    forms = scenario.db.conn.execute("SELECT COUNT(*) FROM forms").fetchone()[0]
    assert loaded[0] == forms >= 8
    assert sum(name.startswith("bundle-") for name in want) >= (0 if options.get("skip_entered") else 2)
    loaded.clear()
    parts, got = _export(scenario, tmp_path / "twos", monkeypatch, 2, **options)
    assert got == want
    assert max(loaded) <= 2 and len(loaded) >= forms / 2  # never more than a batch of forms at once
    for key in ("pending", "items_exported", "resources", "patients", "bundles", "skipped_entered"):
        assert parts[key] == whole[key], key
    assert not [p for p in (tmp_path / "twos").iterdir() if p.name.startswith(".")]  # no spool or temp left
    # the in-memory run (tests, small kits) says the same as the files
    monkeypatch.setattr(fhir, "FORMS_PER_BATCH", 2)
    job = fhir.FhirExport(scenario, tz=TZ, skip_entered=options.get("skip_entered", False),
                          page_images=options.get("page_images", "binary"))
    result = job.run()
    pending = json.loads(want["pending.json"])
    assert result["pending"] == pending["items"] and job.skipped == pending["skipped_entered"]
    if not options:
        assert {f"bundle-{k}.json" for k in result["bundles"]} <= set(want)


def test_a_patients_bundle_is_written_as_it_is_made_not_held(scenario, tmp_path, monkeypatch):
    held: list[int] = []
    real = fhir.Entries.append

    def append(self, entry):
        real(self, entry)
        held.append(len(self.held) if self.held is not None else 0)
    monkeypatch.setattr(fhir.Entries, "append", append)
    monkeypatch.setattr(fhir, "FORMS_PER_BATCH", 4)
    done = fhir.export_fhir(scenario, tmp_path / "out", tz=TZ)
    assert done["resources"] == len(held) > 50 and max(held) == 0
    for path in (tmp_path / "out").glob("bundle-*.json"):
        bundle = json.loads(path.read_bytes())
        assert bundle["entry"] and bundle["type"] == "transaction"


def test_an_export_that_fails_half_way_leaves_the_older_export_and_nothing_of_its_own(scenario, tmp_path,
                                                                                       monkeypatch):
    out = tmp_path / "out"
    fhir.export_fhir(scenario, out, tz=TZ)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    done: list[str] = []
    real = fhir._Files.bundle_done

    def failing(self, key, entries):
        real(self, key, entries)
        done.append(key)
        if len(done) == 2:
            raise OSError("disk full")
    monkeypatch.setattr(fhir._Files, "bundle_done", failing)
    monkeypatch.setattr(fhir, "FORMS_PER_BATCH", 4)
    with pytest.raises(OSError):
        fhir.export_fhir(scenario, out, tz=TZ)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp file, no spool, older files kept
    assert not scenario.db.conn.in_transaction


def test_the_spool_beside_the_export_is_private(scenario, tmp_path, monkeypatch):
    modes: list[int] = []
    real = fhir._Files.close

    def close(self):
        modes.append(os.stat(self.spool_dir).st_mode & 0o777)  # what it holds is patient data
        real(self)
    monkeypatch.setattr(fhir._Files, "close", close)
    old_umask = os.umask(0)
    try:
        fhir.export_fhir(scenario, tmp_path / "out", tz=TZ)
    finally:
        os.umask(old_umask)
    assert modes[0] == 0o700
