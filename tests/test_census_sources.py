"""Census from what hospital systems really export (issue 13): every shape is a real file written
here, its profile is made by `census profile init`'s sniffing, and each imports exactly the patients
and medications of the canonical CSV that fallbackkit/generate/sample.py writes."""
import csv
import datetime as dt
import json

import openpyxl
import pytest
from click.testing import CliRunner

from fallbackkit.cli import cli
from fallbackkit.errors import BadInput, CensusError
from fallbackkit.generate import import_census
from fallbackkit.generate.census import plan_census
from fallbackkit.generate.census_profile import PROFILE_FILE, init_profile, load_profile
from fallbackkit.generate.sample import write_census
from fallbackkit.store import init_kit

FR_SEX = {"M": "H", "F": "F"}
NL_SEX = {"M": "M", "F": "V"}


@pytest.fixture
def canonical(tmp_path):
    """The sample census, kept to the patients whose names Windows-1252 can hold (so every shape,
    cp1252 included, carries the same people)."""
    patients_csv, meds_csv = write_census(tmp_path / "canonical", {"3B": 8, "ICU": 4, "5A": 6}, seed=11)
    with patients_csv.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))

    def fits(r):
        try:
            "".join(r.values()).encode("cp1252")
            return True
        except UnicodeEncodeError:
            return False
    rows = [r for r in rows if fits(r)]
    assert len(rows) >= 8
    mrns = {r["mrn"] for r in rows}
    with meds_csv.open(encoding="utf-8") as fh:
        meds = [m for m in csv.DictReader(fh) if m["mrn"] in mrns]
    for path, data in ((patients_csv, rows), (meds_csv, meds)):
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(data[0]))
            w.writeheader()
            w.writerows(data)
    return {"patients": patients_csv, "meds": meds_csv, "rows": rows, "med_rows": meds}


@pytest.fixture
def kit(tmp_path):
    k = init_kit(tmp_path / "kit", actor="tester")
    yield k
    k.close()


def dmy(iso: str, sep: str = "/") -> str:
    y, m, d = iso.split("-")
    return f"{d}{sep}{m}{sep}{y}"


def sniffed_profile(tmp_path, name, sample, meds_sample=None):
    folder = tmp_path / f"profile-{name}"
    folder.mkdir()
    init_profile(folder, sample, meds_sample)
    return folder / PROFILE_FILE


def canonical_plan(kit, canonical):
    return plan_census(kit, canonical["patients"], canonical["meds"])


def assert_same_census(kit, canonical, path, profile, meds=None):
    expected = canonical_plan(kit, canonical)
    assert expected.problems == []
    got = plan_census(kit, path, meds, profile=profile)
    assert got.problems == []
    key = lambda p: p["mrn"]  # noqa: E731
    assert sorted(got.patients, key=key) == sorted(expected.patients, key=key)
    if meds is not None:
        assert got.medications == expected.medications
    return got


def test_excel_csv_cp1252_semicolon_crlf_ddmmyyyy(kit, canonical, tmp_path):
    path, meds_path = tmp_path / "export.csv", tmp_path / "medicaments.csv"
    with path.open("w", newline="", encoding="cp1252") as fh:
        w = csv.writer(fh, delimiter=";", lineterminator="\r\n")
        w.writerow(["NISS", "Séjour", "Nom", "Prénom", "Date de naissance", "Sexe", "Service", "Lit", "Allergies"])
        for r in canonical["rows"]:
            w.writerow([r["mrn"], r["encounter"], r["last_name"], r["first_name"], dmy(r["birth_date"]),
                        FR_SEX[r["sex"]], r["ward"], r["bed"], r["allergies"]])
    with meds_path.open("w", newline="", encoding="cp1252") as fh:
        w = csv.writer(fh, delimiter=";", lineterminator="\r\n")
        w.writerow(["NISS", "Médicament", "Dose", "Voie", "Fréquence", "Heures", "Si besoin"])
        for m in canonical["med_rows"]:
            w.writerow([m["mrn"], m["medication"], m["dose"], m["route"], m["frequency"], m["scheduled_times"],
                        "oui" if m["prn"] == "yes" else "non"])
    assert b"\r\n" in path.read_bytes() and "é".encode("cp1252") in path.read_bytes()
    profile = sniffed_profile(tmp_path, "cp1252", path, meds_path)
    loaded = load_profile(profile)
    assert (loaded.patients.encoding, loaded.patients.delimiter, loaded.patients.date_format) == \
        ("cp1252", ";", "DD/MM/YYYY")
    assert loaded.patients.columns["mrn"] == "NISS" and loaded.patients.columns["birth_date"] == "Date de naissance"
    assert_same_census(kit, canonical, path, profile, meds_path)


def test_xlsx_with_real_date_cells_room_code_and_combined_name(kit, canonical, tmp_path):
    path = tmp_path / "census.xlsx"
    book = openpyxl.Workbook()
    first = book.active
    first.title = "Info"
    first.append(["exported by the HIS"])
    ws = book.create_sheet("Patients")
    ws.append(["Patient ID", "Nom, Prénom", "Date of birth", "Gender", "Chambre", "Allergies", "Encounter"])
    for r in canonical["rows"]:
        ws.append([int(r["mrn"]), f"{r['last_name']}, {r['first_name']}", dt.date.fromisoformat(r["birth_date"]),
                   r["sex"], f"{r['ward']}-{r['bed']}", r["allergies"] or None, r["encounter"]])
    book.save(path)
    assert isinstance(openpyxl.load_workbook(path)["Patients"]["C2"].value, dt.datetime)  # a real date cell
    folder = tmp_path / "profile-xlsx"
    folder.mkdir()
    init_profile(folder, path, sheet="Patients")
    profile = load_profile(folder / PROFILE_FILE)
    assert profile.patients.columns["name"] == "Nom, Prénom" and profile.patients.columns["room"] == "Chambre"
    assert profile.patients.sheet == "Patients"
    assert_same_census(kit, canonical, path, folder / PROFILE_FILE)
    with pytest.raises(BadInput, match="census.xlsx has no sheet 'Nope'.*sheets: Info, Patients"):
        plan_census(kit, path, profile=folder / PROFILE_FILE, sheet="Nope")


def test_utf16_tab_separated_unicode_text(kit, canonical, tmp_path):
    path = tmp_path / "census.txt"
    lines = ["\t".join(["mrn", "encounter", "last_name", "first_name", "birth_date", "sex", "ward", "bed",
                        "allergies"])]
    lines += ["\t".join(r[c] for c in ("mrn", "encounter", "last_name", "first_name", "birth_date", "sex", "ward",
                                        "bed", "allergies")) for r in canonical["rows"]]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-16"))  # BOM + UTF-16LE, as Excel writes it
    assert path.read_bytes()[:2] == b"\xff\xfe"
    profile = sniffed_profile(tmp_path, "utf16", path)
    loaded = load_profile(profile)
    assert (loaded.patients.encoding, loaded.patients.delimiter) == ("utf-16", "\t")
    assert_same_census(kit, canonical, path, profile)
    # The built-in profile (UTF-8, comma) says what to set instead of failing on a byte.
    with pytest.raises(BadInput, match="census.txt is UTF-16 text.*set `encoding: utf-16`"):
        plan_census(kit, path)


def test_extra_and_reordered_columns_with_dutch_headers(kit, canonical, tmp_path):
    path = tmp_path / "opnames.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh)
        w.writerow(["Afdeling", "Behandelend arts", "Geboortedatum", "Naam", "Voornaam", "Rijksregisternummer",
                    "Bed", "Geslacht", "Opmerking", "ALLERGIEËN", "Opname"])
        for r in canonical["rows"]:
            w.writerow([r["ward"], "Dr. Peeters", dmy(r["birth_date"], "."), r["last_name"], r["first_name"], r["mrn"],
                        r["bed"], NL_SEX[r["sex"]], "", r["allergies"], r["encounter"]])
    profile = sniffed_profile(tmp_path, "nl", path)
    got = assert_same_census(kit, canonical, path, profile)
    assert load_profile(profile).patients.date_format == "DD.MM.YYYY"
    assert got.extra_columns == {"opnames.csv": ["Behandelend arts", "Opmerking"]}
    summary = import_census(kit, path, profile=profile)
    assert summary["extra_columns"] == {"opnames.csv": ["Behandelend arts", "Opmerking"]}


def test_every_shape_is_unchanged_after_the_canonical_import(kit, canonical, tmp_path):
    """Importing the same census in another shape adds no snapshot: the content is what counts."""
    first = import_census(kit, canonical["patients"], canonical["meds"])
    path = tmp_path / "export.csv"
    with path.open("w", newline="", encoding="cp1252") as fh:
        w = csv.writer(fh, delimiter=";", lineterminator="\r\n")
        w.writerow(["NISS", "Séjour", "Nom", "Prénom", "Date de naissance", "Sexe", "Service", "Lit", "Allergies"])
        for r in canonical["rows"]:
            w.writerow([r["mrn"], r["encounter"], r["last_name"], r["first_name"], dmy(r["birth_date"]),
                        FR_SEX[r["sex"]], r["ward"], r["bed"], r["allergies"]])
    profile = sniffed_profile(tmp_path, "again", path)
    again = import_census(kit, path, canonical["meds"], profile=profile)
    assert again["unchanged"] and again["snapshot_id"] == first["snapshot_id"]
    assert kit.db.execute("SELECT COUNT(*) FROM census_snapshots").fetchone()[0] == 1


def test_errors_name_the_setting_with_line_and_column(kit, canonical, tmp_path):
    path = tmp_path / "export.csv"
    rows = canonical["rows"]
    with path.open("w", newline="", encoding="cp1252") as fh:
        w = csv.writer(fh, delimiter=";", lineterminator="\r\n")
        w.writerow(["mrn", "last_name", "first_name", "birth_date", "ward", "bed"])
        for r in rows:
            w.writerow([r["mrn"], r["last_name"] + "é", r["first_name"], dmy(r["birth_date"]), r["ward"], r["bed"]])
    with pytest.raises(CensusError) as err:  # the built-in profile: comma, UTF-8
        plan_census_and_import(kit, path)
    text = str(err.value)
    assert "line 1: the header is one column" in text and 'set `delimiter: ";"` in the census profile' in text
    assert "looks like Windows-1252: set `encoding: cp1252` in the census profile" in text
    assert "byte" not in text and "Traceback" not in text
    profile = tmp_path / "p.yaml"
    profile.write_text("patients:\n  encoding: cp1252\n  delimiter: ';'\n  date_format: YYYY-MM-DD\n  columns:\n"
                       + "".join(f"    {c}: {c}\n" for c in ("mrn", "last_name", "first_name", "birth_date",
                                                             "ward", "bed")))
    with pytest.raises(CensusError) as err:
        plan_census_and_import(kit, path, profile)
    assert (f"export.csv line 2 column birth_date: birth_date {dmy(rows[0]['birth_date'])!r} is not a date in the "
            f"format YYYY-MM-DD (census profile: date_format)") in str(err.value)
    assert kit.db.execute("SELECT COUNT(*) FROM census_snapshots").fetchone()[0] == 0


def plan_census_and_import(kit, path, profile=None):
    return import_census(kit, path, profile=profile)


@pytest.mark.parametrize("setting, message", [
    ("date_format: DD/MM/YY", "p.yaml: patients.date_format 'DD/MM/YY' is not a date format we read"),
    ("encoding: ebcdic", "p.yaml: patients.encoding 'ebcdic' is not an encoding we read"),
    ("columns: {mrn: mrn, last_name: last_name, first_name: first_name, birth_date: birth_date, ward: ward,"
     " bed: bed, weight: Gewicht}", "p.yaml: patients.columns: unknown field 'weight'"),
])
def test_bad_profile_is_one_line_naming_it(kit, canonical, tmp_path, setting, message):
    profile = tmp_path / "p.yaml"
    base = {"encoding": "encoding: utf-8", "date_format": "date_format: YYYY-MM-DD",
            "columns": "columns: {mrn: mrn, last_name: last_name, first_name: first_name, birth_date: birth_date,"
                       " ward: ward, bed: bed}"}
    base[setting.split(":")[0]] = setting
    profile.write_text("patients:\n" + "".join(f"  {v}\n" for v in base.values()))
    result = CliRunner().invoke(cli, ["--kit", str(kit.path), "census", "import", str(canonical["patients"]),
                                      "--profile", str(profile)])
    assert result.exit_code == 4
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output


def test_profile_naming_a_column_not_in_the_file_is_one_line(kit, canonical, tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("patients:\n  columns: {mrn: Patient Nr, last_name: last_name, first_name: first_name,"
                       " birth_date: birth_date, ward: ward, bed: bed}\n")
    result = CliRunner().invoke(cli, ["--kit", str(kit.path), "census", "import", str(canonical["patients"]),
                                      "--profile", str(profile)])
    assert result.exit_code == 4
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no column 'Patient Nr' for mrn (census profile: columns.mrn)" in lines[0]


def test_profile_init_cli_writes_the_kit_profile_used_by_import(kit, canonical, tmp_path):
    path = tmp_path / "export.csv"
    with path.open("w", newline="", encoding="cp1252") as fh:
        w = csv.writer(fh, delimiter=";", lineterminator="\r\n")
        w.writerow(["INSZ", "Naam", "Voornaam", "Geboortedatum", "Geslacht", "Afdeling", "Lit/Bed"])
        for r in canonical["rows"]:
            w.writerow([r["mrn"], r["last_name"], r["first_name"], dmy(r["birth_date"]), NL_SEX[r["sex"]],
                        r["ward"], r["bed"]])
    run = lambda *a: CliRunner().invoke(cli, ["--kit", str(kit.path), *a])  # noqa: E731
    made = run("census", "profile", "init", str(path))
    assert made.exit_code == 0, made.output
    assert (kit.path / PROFILE_FILE).exists() and "mrn <- 'INSZ'" in made.output
    again = run("census", "profile", "init", str(path))
    assert again.exit_code == 4 and "--force" in again.output
    done = run("census", "import", str(path))
    assert done.exit_code == 0, done.output
    assert f"{len(canonical['rows'])} patients" in done.output
    shown = run("census", "show-profile")
    assert "encoding: cp1252" in shown.output


def test_medication_profile_codes_orders_and_stop_dates(kit, tmp_path):
    patients = tmp_path / "p.csv"
    patients.write_text("mrn,last_name,first_name,birth_date,ward,bed\n1,Dubois,Marie,1950-02-03,3B,1\n",
                        encoding="utf-8")
    today = dt.date.today()
    meds = tmp_path / "m.csv"
    with meds.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(["Patiëntnummer", "Geneesmiddel", "Dosis", "Weg", "Tijdstippen", "Zo nodig", "CNK", "Voorschrift",
                    "Startdatum", "Einddatum"])
        w.writerow(["1", "Paracetamol", "1 g", "PO", "06:00 12:00 18:00", "nee", "1234567", "RX-1",
                    dmy((today - dt.timedelta(days=5)).isoformat()), ""])
        w.writerow(["1", "Ceftriaxone", "2 g", "IV", "10:00", "nee", "J01DD04", "RX-2",
                    dmy((today - dt.timedelta(days=9)).isoformat()), dmy((today - dt.timedelta(days=1)).isoformat())])
        w.writerow(["1", "Morphine", "2 mg", "IV", "", "ja", "", "RX-3", "", dmy(today.isoformat())])
    folder = tmp_path / "prof"
    folder.mkdir()
    init_profile(folder, patients, meds)
    profile = load_profile(folder / PROFILE_FILE)
    assert profile.medications.columns["drug_code"] == "CNK" and profile.medications.columns["order_id"] == "Voorschrift"
    import_census(kit, patients, meds, profile=folder / PROFILE_FILE)
    stored = list(kit.db.query("SELECT medication, drug_code, drug_code_system, order_id, start_date, stop_date,"
                               " scheduled_times, prn FROM medications ORDER BY line"))
    assert stored[0] == {"medication": "Paracetamol", "drug_code": "1234567", "drug_code_system": "CNK",
                         "order_id": "RX-1", "start_date": (today - dt.timedelta(days=5)).isoformat(),
                         "stop_date": None, "scheduled_times": "06:00;12:00;18:00", "prn": 0}
    assert stored[1]["drug_code_system"] == "ATC"
    from fallbackkit.generate import print_ward
    pack = print_ward(kit, "3B", tmp_path / "ward.pdf")
    mar = [json.loads(r[0]) for r in kit.db.execute(
        "SELECT context FROM forms WHERE batch_id = ? AND template = 'mar'", [pack.batch_id])]
    printed = [m["medication"] for m in mar[0]["medications"]]
    assert printed == ["Paracetamol", "Morphine"]  # Ceftriaxone stopped yesterday; Morphine stops today
    assert mar[0]["medications"][0]["order_id"] == "RX-1"
    bad = tmp_path / "bad.csv"
    bad.write_text("mrn,medication,prn,scheduled_times,drug_code\n1,X,no,08:00,12AB\n", encoding="utf-8")
    with pytest.raises(CensusError, match="drug_code '12AB' is neither a CNK"):
        import_census(kit, patients, bad)


def test_excel_serial_dates_and_cell_line_breaks(kit, canonical, tmp_path):
    """A CSV saved from a sheet whose date column was formatted as a number: Excel day numbers."""
    path = tmp_path / "serials.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["mrn", "encounter", "last_name", "first_name", "birth_date", "sex", "ward", "bed", "allergies"])
        for r in canonical["rows"]:
            serial = (dt.date.fromisoformat(r["birth_date"]) - dt.date(1899, 12, 30)).days
            w.writerow([r["mrn"], r["encounter"], r["last_name"], r["first_name"], serial, r["sex"], r["ward"],
                        r["bed"], r["allergies"].replace("; ", ";\n") if r["allergies"] else ""])
    profile = sniffed_profile(tmp_path, "serial", path)
    assert load_profile(profile).patients.date_format == "excel"
    got = plan_census(kit, path, profile=profile)
    assert got.problems == []
    expected = {p["mrn"]: p for p in canonical_plan(kit, canonical).patients}
    for p in got.patients:
        want = expected[p["mrn"]]
        assert p["birth_date"] == want["birth_date"]
        assert p["allergies"] == want["allergies"]  # "peanut;<line break>shellfish" prints as "peanut; shellfish"
    assert any(r["allergies"] and ";" in r["allergies"] for r in canonical["rows"])


@pytest.mark.parametrize("data, encoding", [
    ("Lefèvre;Zoë\r\n".encode("utf-8"), "utf-8"),
    ("Lefèvre;€ 5\r\n".encode("cp1252"), "cp1252"),
    (b"Lef\xe8vre;\x81\x8d\r\n", "latin-1"),
    ("Lefèvre\tZoë\r\n".encode("utf-16"), "utf-16"),
])
def test_encoding_guess(data, encoding):
    from fallbackkit.generate.census_profile import guess_encoding
    assert guess_encoding(data) == encoding


def test_report_title_above_the_header(kit, canonical, tmp_path):
    """Reports opened in Excel often carry a title and an export time above the header."""
    path = tmp_path / "report.xlsx"
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(["Census report — all wards"])
    ws.append(["exported", dt.datetime(2026, 11, 28, 5, 30)])
    ws.append([])
    ws.append(["MRN", "Encounter", "Last name", "First name", "Birth date", "Sex", "Ward", "Bed", "Allergies"])
    for r in canonical["rows"]:
        ws.append([r["mrn"], r["encounter"], r["last_name"], r["first_name"], dt.date.fromisoformat(r["birth_date"]),
                   r["sex"], r["ward"], r["bed"], r["allergies"] or None])
    ws.append([None, None, "Duboi", "Marie", dt.date(2026, 1, 1), "F", "3B", "1"])  # row without an MRN
    book.save(path)
    profile = sniffed_profile(tmp_path, "title", path)
    assert load_profile(profile).patients.header_row == 4
    got = plan_census(kit, path, profile=profile)
    last_row = 4 + len(canonical["rows"]) + 1
    assert got.problems == [f"report.xlsx line {last_row} column MRN: mrn is empty"]
    result = CliRunner().invoke(cli, ["--kit", str(kit.path), "census", "import", str(path), "--profile", str(profile)])
    assert result.exit_code == 4 and f"line {last_row} column MRN: mrn is empty" in result.output


def test_damaged_workbooks_are_one_line(kit, canonical, tmp_path):
    import zipfile
    good = tmp_path / "good.xlsx"
    book = openpyxl.Workbook()
    book.active.append(["mrn", "last_name", "first_name", "birth_date", "ward", "bed"])
    book.active.append(["1", "Dubois", "Marie", dt.date(1950, 2, 3), "3B", "1"])
    book.save(good)
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, data[: len(data) // 2] if item.filename.startswith("xl/worksheets/") else data)
    truncated = tmp_path / "truncated.xlsx"
    truncated.write_bytes(good.read_bytes()[:300])
    for path in (broken, truncated):
        result = CliRunner().invoke(cli, ["--kit", str(kit.path), "census", "import", str(path)])
        assert result.exit_code == 4, result.output
        assert len(result.output.strip().splitlines()) == 1 and path.name in result.output
        assert "Traceback" not in result.output
    assert import_census(kit, good)["patients"] == 1
