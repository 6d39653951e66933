"""The scheduled refresh of docs/ward.md (issue 13 item 7): census import + print --ward all into a
dated folder, idempotent when the census has not changed, old pack folders pruned with --keep."""
import csv
import os
import stat

from click.testing import CliRunner

from fallbackkit.cli import cli
from fallbackkit.generate.sample import write_census
from fallbackkit.store import init_kit, open_kit


def test_refresh_recipe_is_idempotent_and_prunes(tmp_path):
    kit = init_kit(tmp_path / "kit", actor="tester")
    kit.close()
    patients, meds = write_census(tmp_path / "export", {"3B": 3, "ICU": 2})
    packs = tmp_path / "packs"
    packs.mkdir()
    (packs / "notes-by-hand").mkdir()  # not ours: never touched
    run = lambda *a: CliRunner().invoke(cli, ["--kit", str(tmp_path / "kit"), "--user", "cron", *a])  # noqa: E731

    def refresh(day):
        imported = run("census", "import", str(patients), "--meds", str(meds))
        assert imported.exit_code == 0, imported.output
        printed = run("print", "--ward", "all", "--out", str(packs / day), "--keep", "2", "--if-changed")
        assert printed.exit_code == 0, printed.output
        return imported.output, printed.output

    def sheet_count():
        k = open_kit(tmp_path / "kit")
        try:
            return k.db.execute("SELECT COUNT(*) FROM sheets").fetchone()[0]
        finally:
            k.close()

    _, printed = refresh("2026-11-28")
    assert "ward-3B.pdf" in printed and "ward-ICU.pdf" in printed
    sheets = sheet_count()
    assert sheets > 0
    imported, printed = refresh("2026-11-29")
    assert imported.startswith("unchanged:") and printed.startswith("unchanged:")
    assert "2026-11-28" in printed and not (packs / "2026-11-29").exists()
    assert sheet_count() == sheets  # no new sheet ids
    # The census changes: a new pack folder; the oldest beyond --keep 2 goes.
    with patients.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows[0]["bed"] = "55"
    with patients.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    imported, printed = refresh("2026-11-30")
    assert "moved bed" in imported and "ward-3B.pdf" in printed
    assert sheet_count() > sheets
    rows[1]["allergies"] = "latex"
    with patients.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _, printed = refresh("2026-12-01")
    assert sorted(p.name for p in packs.iterdir()) == ["2026-11-30", "2026-12-01", "notes-by-hand"]
    (packs / "2026-12-01" / "ward-ICU.pdf").unlink()  # a pack deleted by hand is printed again
    _, printed = refresh("2026-12-02")
    assert "ward-ICU.pdf" in printed and not printed.startswith("unchanged")
    assert sorted(p.name for p in packs.iterdir()) == ["2026-12-01", "2026-12-02", "notes-by-hand"]
    marker = packs / "2026-12-01" / ".fallbackkit-packs.json"
    assert stat.S_IMODE(os.stat(marker).st_mode) == 0o600
    bad = run("print", "--ward", "3B", "--out", str(tmp_path / "x.pdf"), "--keep", "2")
    assert bad.exit_code == 4 and "--ward all" in bad.output
