"""Census import: a bad file imports nothing and names every bad line; re-import keeps history."""
import pytest

from fallbackkit.errors import CensusError
from fallbackkit.generate import import_census
from fallbackkit.generate.census import current_snapshot
from fallbackkit.store import init_kit

HEADER = "mrn,encounter,last_name,first_name,birth_date,sex,ward,bed,allergies\n"
MEDS_HEADER = "mrn,medication,dose,route,frequency,scheduled_times,prn\n"


@pytest.fixture
def empty_kit(tmp_path):
    k = init_kit(tmp_path / "kit", actor="tester")
    yield k
    k.close()


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_good_census_with_any_script(empty_kit, tmp_path):
    patients = write(tmp_path, "p.csv", HEADER +
                     "1,E1,Łukasiewicz,Zoë,1950-02-03,F,3B,1,penicillin\n"
                     "2,,Nguyễn,Thị Hương,1988-12-30,,3B,2,\n"
                     "3,E3,Иванова,Ольга,2001-07-15,F,ICU,10,\n")
    meds = write(tmp_path, "m.csv", MEDS_HEADER +
                 "1,Paracetamol,1 g,PO,QID,06:00;12:00;18:00;24:00,no\n1,Morphine,2 mg,IV,PRN,,yes\n")
    summary = import_census(empty_kit, patients, meds, actor="tester")
    assert summary["patients"] == 3 and summary["medications"] == 2 and summary["wards"] == ["3B", "ICU"]
    names = {r[0] for r in empty_kit.db.execute("SELECT last_name FROM patients")}
    assert names == {"Łukasiewicz", "Nguyễn", "Иванова"}


def test_bad_file_reports_every_bad_line_and_imports_nothing(empty_kit, tmp_path):
    patients = write(tmp_path, "p.csv", HEADER +
                     "1,E1,Dubois,Marie,1950-02-30,F,3B,1,\n"     # line 2: bad date
                     "2,E2,,Jan,1960-01-01,M,3B,2,\n"              # line 3: no last name
                     "1,E9,Maes,Luc,1970-05-05,M,3B,3,\n"          # line 4: duplicate mrn
                     "4,E4,Peeters,Ann,1980-01-01,Q,3B,4,\n")       # line 5: bad sex
    meds = write(tmp_path, "m.csv", MEDS_HEADER +
                 "99,Paracetamol,1 g,PO,QID,06:00,no\n"            # line 2: unknown mrn
                 "1,Furosemide,40 mg,IV,BID,8h;20:00,no\n")        # line 3: bad time
    with pytest.raises(CensusError) as err:
        import_census(empty_kit, patients, meds)
    text = str(err.value)
    for expected in ["p.csv line 2: birth_date '1950-02-30'", "p.csv line 3: last_name is empty",
                     "p.csv line 4: duplicate mrn 1 (first on line 2)", "p.csv line 5: sex 'Q'",
                     "m.csv line 2: unknown mrn 99", "m.csv line 3: scheduled_times 8h"]:
        assert expected in text
    assert "nothing was changed" in text
    assert empty_kit.db.execute("SELECT COUNT(*) FROM patients").fetchone()[0] == 0
    assert empty_kit.db.execute("SELECT COUNT(*) FROM census_snapshots").fetchone()[0] == 0


def test_missing_column_is_named(empty_kit, tmp_path):
    patients = write(tmp_path, "p.csv", "mrn,last_name,first_name,ward,bed\n1,A,B,3B,1\n")
    with pytest.raises(CensusError, match="missing column\\(s\\) encounter, birth_date, sex, allergies"):
        import_census(empty_kit, patients)


def test_reimport_replaces_snapshot_and_keeps_history(empty_kit, tmp_path):
    first = write(tmp_path, "p1.csv", HEADER + "1,E1,Dubois,Marie,1950-02-03,F,3B,1,\n")
    second = write(tmp_path, "p2.csv", HEADER + "1,E1,Dubois,Marie,1950-02-03,F,3B,4,\n2,E2,Maes,Luc,1960-01-01,M,3B,5,\n")
    import_census(empty_kit, first, as_of="2026-11-27T20:00:00+01:00")
    import_census(empty_kit, second, as_of="2026-11-28T06:00:00+01:00")
    snap = current_snapshot(empty_kit)
    assert snap["imported_at"] == "2026-11-28T06:00:00+01:00" and snap["patients"] == 2
    assert empty_kit.db.execute("SELECT COUNT(*) FROM census_snapshots").fetchone()[0] == 2
    assert empty_kit.db.execute("SELECT bed FROM patients WHERE snapshot_id = 1").fetchone()[0] == "1"
    actions = [r[0] for r in empty_kit.db.execute("SELECT action FROM audit ORDER BY id")]
    assert actions == ["kit.init", "census.import", "census.import"]


def test_not_utf8_is_refused(empty_kit, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "1,E1,Lefèvre,Anaïs,1950-02-03,F,3B,1,\n").encode("latin-1"))
    with pytest.raises(CensusError, match="not UTF-8"):
        import_census(empty_kit, path)
