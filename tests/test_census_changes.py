"""A dry run writes nothing; a changed census says who was admitted, discharged, moved bed or has
changed allergies — in the dry run, the real import, and on the ward cover sheet (issue 13 item 4)."""
import csv
import hashlib

import pypdfium2 as pdfium
from click.testing import CliRunner

from fallbackkit.cli import cli
from fallbackkit.generate import import_census, print_ward
from fallbackkit.generate.sample import write_census
from fallbackkit.store import init_kit


def rewrite(src, dst, change):
    with src.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows = change(rows)
    with dst.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def store_digest(kit_path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in kit_path.iterdir() if p.is_file() and not p.name.endswith("-shm")}


def test_dry_run_writes_nothing_and_shows_differences(tmp_path):
    kit = init_kit(tmp_path / "kit", actor="tester")
    patients, meds = write_census(tmp_path / "census", {"3B": 6, "ICU": 3})
    import_census(kit, patients, meds, as_of="2026-11-28T06:00:00+01:00")
    changed = tmp_path / "census2.csv"
    picked = {}

    def change(rows):
        threeb = [r for r in rows if r["ward"] == "3B"]
        picked["gone"], picked["moved"], picked["allergy"] = threeb[0], threeb[1], threeb[2]
        picked["moved_out"] = threeb[3]
        rows = [r for r in rows if r is not threeb[0]]
        threeb[1]["bed"] = "99"
        threeb[2]["allergies"] = "latex"
        threeb[3]["ward"], threeb[3]["bed"] = "ICU", "7"
        rows.append({**threeb[4], "mrn": "777001", "last_name": "Nieuw", "first_name": "Anna", "bed": "42"})
        return rows
    rewrite(patients, changed, change)
    run = lambda *a: CliRunner().invoke(cli, ["--kit", str(kit.path), "--user", "tester", *a])  # noqa: E731
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = store_digest(kit.path)
    dry = run("census", "import", str(changed), "--check")
    assert dry.exit_code == 0, dry.output
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert store_digest(kit.path) == before
    assert kit.db.execute("SELECT COUNT(*) FROM census_snapshots").fetchone()[0] == 1
    out = dry.output
    assert "nothing is written" in out and "patients per ward: 3B 5, ICU 4" in out
    assert "first rows as mapped:" in out and "problems: none" in out
    assert "0 medications" in out
    gone, moved, allergy, out_p = picked["gone"], picked["moved"], picked["allergy"], picked["moved_out"]
    expected = [
        "admitted    3B bed 42: NIEUW, Anna (MRN 777001)",
        f"discharged  3B bed {gone['bed']}: {gone['last_name'].upper()}, {gone['first_name']} (MRN {gone['mrn']})",
    ]
    assert expected[0] in out and expected[1] in out
    assert f"(MRN {moved['mrn']}): 3B bed " in out and "-> 3B bed 99" in out
    assert f"(MRN {out_p['mrn']}): 3B bed " in out and "-> ICU bed 7" in out
    assert f"(MRN {allergy['mrn']}): " in out and "-> latex" in out

    real = run("census", "import", str(changed))
    assert real.exit_code == 0, real.output
    for line in dry.output.split("differences from the current snapshot:\n")[1].strip().splitlines():
        assert line.strip() in real.output
    pack = print_ward(kit, "3B", tmp_path / "ward-3B.pdf")
    pdf = pdfium.PdfDocument(str(pack.out_path))
    cover = pdf[0].get_textpage().get_text_range()
    pdf.close()
    assert "Changes since the previous census" in cover
    assert "New: bed 42: NIEUW, Anna (MRN 777001)" in cover and "MRN 777001" in cover and "(NEW)" in cover
    assert f"Left: bed {gone['bed']}: {gone['last_name'].upper()}" in cover
    assert "Moved out: bed" in cover and f"-> ICU bed 7: {out_p['last_name'].upper()}" in cover
    assert f"Allergies changed: bed {allergy['bed']}" in cover and "-> latex" in cover
    assert f"-> bed 99: {moved['last_name'].upper()}" in cover
    kit.close()


def test_dry_run_lists_every_problem_and_exits_4(tmp_path):
    kit = init_kit(tmp_path / "kit", actor="tester")
    bad = tmp_path / "bad.csv"
    bad.write_text("mrn,last_name,first_name,birth_date,ward,bed,mrn\n1,A,B,31/12/1950,3B,1,2\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--kit", str(kit.path), "census", "import", str(bad), "--check"])
    assert result.exit_code == 4
    assert "bad.csv line 1: column 'mrn' appears twice" in result.output
    assert "bad.csv line 2 column birth_date: birth_date '31/12/1950' is not a date in the format YYYY-MM-DD" \
        in result.output
    assert kit.db.execute("SELECT COUNT(*) FROM census_snapshots").fetchone()[0] == 0
    kit.close()
