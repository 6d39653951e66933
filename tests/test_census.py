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
    for expected in ["p.csv line 2 column birth_date: birth_date '1950-02-30'",
                     "p.csv line 3 column last_name: last_name is empty", "p.csv line 4: duplicate mrn 1 (first on line 2)",
                     "p.csv line 5 column sex: sex 'Q'", "m.csv line 2: unknown mrn 99",
                     "m.csv line 3 column scheduled_times: scheduled_times 8h"]:
        assert expected in text
    assert "nothing was changed" in text
    assert empty_kit.db.execute("SELECT COUNT(*) FROM patients").fetchone()[0] == 0
    assert empty_kit.db.execute("SELECT COUNT(*) FROM census_snapshots").fetchone()[0] == 0


def test_missing_column_is_named(empty_kit, tmp_path):
    """Only required fields must exist: encounter, sex and allergies are optional."""
    patients = write(tmp_path, "p.csv", "mrn,last_name,first_name,ward,bed\n1,A,B,3B,1\n")
    with pytest.raises(CensusError, match="p.csv line 1: no column 'birth_date' for birth_date") as err:
        import_census(empty_kit, patients)
    assert "encounter" not in str(err.value).split("the header is")[0]
    optional_absent = write(tmp_path, "p2.csv", "mrn,last_name,first_name,birth_date,ward,bed\n1,A,B,1950-01-01,3B,1\n")
    assert import_census(empty_kit, optional_absent)["patients"] == 1


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
    with pytest.raises(CensusError) as err:
        import_census(empty_kit, path)
    text = str(err.value)
    assert "latin1.csv line 2 column last_name (and 1 more): not valid UTF-8 text" in text
    assert "set `encoding: cp1252` in the census profile" in text and "byte" not in text


def test_header_naming_a_column_twice_is_refused(empty_kit, tmp_path):
    """Issue 9 item 3: `...,allergies,mrn` used to give the patient the second MRN."""
    patients = write(tmp_path, "p.csv", HEADER.rstrip("\n") + ",MRN\n" + "1,E1,Dubois,Marie,1950-02-03,F,3B,1,,999\n")
    with pytest.raises(CensusError) as err:
        import_census(empty_kit, patients)
    assert "p.csv line 1: column 'MRN' appears twice (columns 1 and 10)" in str(err.value)
    assert empty_kit.db.execute("SELECT COUNT(*) FROM patients").fetchone()[0] == 0


def test_oversized_field_is_one_line_with_its_line_number(empty_kit, tmp_path):
    import csv
    patients = write(tmp_path, "p.csv", HEADER + "1,E1,Dubois,Marie,1950-02-03,F,3B,1,\n"
                     + '2,E2,"' + "x" * (csv.field_size_limit() + 10) + ",Jan,1960-01-01,M,3B,2,\n")
    with pytest.raises(CensusError) as err:
        import_census(empty_kit, patients)
    text = str(err.value)
    assert "\n" not in text and "p.csv line 3: a field is longer than 131072 characters" in text


@pytest.mark.parametrize("hidden", ["\x00", "\u200b", "\u202e", "\u2066", "\ufeff"])
def test_invisible_characters_in_identifiers_are_refused(empty_kit, tmp_path, hidden):
    patients = write(tmp_path, "p.csv", HEADER + f"1{hidden}2,E1,Dubois,Marie,1950-02-03,F,3B,1,\n")
    with pytest.raises(CensusError) as err:
        import_census(empty_kit, patients)
    assert f"p.csv line 2 column mrn: mrn holds an invisible character (U+{ord(hidden):04X})" in str(err.value)


def test_birth_dates_before_1900_or_in_the_future_are_refused(empty_kit, tmp_path):
    patients = write(tmp_path, "p.csv", HEADER + "1,E1,Dubois,Marie,1899-12-31,F,3B,1,\n"
                     "2,E2,Maes,Luc,2999-01-01,M,3B,2,\n")
    with pytest.raises(CensusError) as err:
        import_census(empty_kit, patients)
    text = str(err.value)
    assert "p.csv line 2 column birth_date: birth_date 1899-12-31 is before 1900" in text
    assert "p.csv line 3 column birth_date: birth_date 2999-01-01 is in the future" in text


def test_every_problem_in_one_pass_header_included(empty_kit, tmp_path):
    """Issue 15 item 16: the import no longer stops at the header."""
    patients = write(tmp_path, "p.csv", "mrn,encounter,last_name,first_name,ward,bed,sex,sex\n"
                     "1,E1,Dubois,Marie,3B,1,F,F\n,E2,Maes,Luc,3B,,M,M\n")
    with pytest.raises(CensusError) as err:
        import_census(empty_kit, patients)
    text = str(err.value)
    for expected in ["line 1: column 'sex' appears twice", "line 1: no column 'birth_date'",
                     "line 3 column mrn: mrn is empty", "line 3 column bed: bed is empty"]:
        assert expected in text
