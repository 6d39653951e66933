"""How to read the census the hospital system really exports: a column mapping profile.

The coordinator makes the profile once, in advance, from a sample of the nightly export
(`census profile init SAMPLE`), checks it, and keeps it in the kit as `census-profile.yaml`. Every
later `census import` reads the export through it: encoding, delimiter, date format, which source
column holds which of our fields, how to split "Nom, Prénom" and "3B-12", and the sex codes.

Reading never stops at the first problem: every problem of a file is collected with its line and
column, so one round trip fixes them all. Problems name what to change (a profile setting, or the
file), never a byte offset alone.
"""
from __future__ import annotations

import codecs
import csv
import datetime as _dt
import hashlib
import io
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import BadInput

PROFILE_FILE = "census-profile.yaml"
MAX_FILE_BYTES = 50 * 1024 * 1024

FIELDS = {
    "patients": ["mrn", "encounter", "last_name", "first_name", "birth_date", "sex", "ward", "bed",
                 "allergies", "national_number"],
    "medications": ["mrn", "medication", "dose", "route", "frequency", "scheduled_times", "prn",
                    "drug_code", "order_id", "start_date", "stop_date"],
}
REQUIRED = {
    "patients": ["mrn", "last_name", "first_name", "birth_date", "ward", "bed"],
    "medications": ["mrn", "medication"],
}
# One source column that holds two of our fields.
COMBINED = {"name": ("last_name", "first_name"), "room": ("ward", "bed")}
DATE_FIELDS = {"birth_date", "start_date", "stop_date"}
DATE_FORMATS = {"YYYY-MM-DD": "%Y-%m-%d", "DD/MM/YYYY": "%d/%m/%Y", "DD.MM.YYYY": "%d.%m.%Y",
                "DD-MM-YYYY": "%d-%m-%Y", "MM/DD/YYYY": "%m/%d/%Y", "excel": None}
ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "utf8": "utf-8", "cp1252": "cp1252",
             "windows-1252": "cp1252", "latin-1": "latin-1", "iso-8859-1": "latin-1", "latin1": "latin-1",
             "utf-16": "utf-16"}
ENCODING_NAMES = {"utf-8": "UTF-8", "cp1252": "Windows-1252", "latin-1": "ISO-8859-1",
                  "utf-16": "UTF-16 (Excel's \"Unicode text\")"}
DEFAULT_SEX_CODES = {"M": "M", "F": "F", "X": "X", "U": "U", "H": "M", "V": "F", "1": "M", "2": "F"}
EXCEL_EPOCH = _dt.date(1899, 12, 30)
SECTION_KEYS = {"encoding", "delimiter", "date_format", "sheet", "header_row", "columns", "name_separator",
                "room_separator", "sex_codes"}

# Header names seen in Belgian (fr/nl) and English exports, compared without accents, case,
# spaces or punctuation.
SYNONYMS = {
    "mrn": ["mrn", "patientid", "patientnumber", "patientno", "ipp", "nip", "numeropatient", "patientnummer",
            "dossier", "numerodossier", "dossiernummer", "niss", "insz", "rijksregisternummer",
            "nationalnumber", "registrenational"],
    "encounter": ["encounter", "encounterid", "visit", "visitid", "admission", "episode", "sejour",
                  "numerosejour", "opname", "opnamenummer", "verblijf"],
    "last_name": ["lastname", "surname", "familyname", "nom", "nomdefamille", "naam", "achternaam",
                  "familienaam"],
    "first_name": ["firstname", "givenname", "prenom", "voornaam"],
    "birth_date": ["birthdate", "dateofbirth", "dob", "datedenaissance", "naissance", "geboortedatum", "ddn"],
    "sex": ["sex", "gender", "sexe", "geslacht"],
    "ward": ["ward", "unit", "service", "unite", "afdeling", "dienst", "eenheid"],
    "bed": ["bed", "lit", "bednummer", "litbed", "bedlit"],
    "room": ["room", "roomcode", "chambre", "kamer", "chambrekamer", "kamerchambre", "location", "locatie"],
    "allergies": ["allergies", "allergy", "allergie", "allergieen", "allergien"],
    "medication": ["medication", "drug", "medicament", "geneesmiddel", "medicatie", "product", "produit"],
    "dose": ["dose", "dosis", "dosage"],
    "route": ["route", "voie", "toedieningsweg", "weg"],
    "frequency": ["frequency", "frequence", "frequentie"],
    "scheduled_times": ["scheduledtimes", "times", "heures", "uren", "tijdstippen", "horaire", "schedule"],
    "prn": ["prn", "sibesoin", "zonodig", "asneeded"],
    "drug_code": ["drugcode", "cnk", "atc", "codecnk", "cnkcode", "atccode", "code"],
    "order_id": ["orderid", "order", "orderno", "ordernumber", "prescription", "prescriptionid", "voorschrift",
                 "ordonnance", "prescriptionnumber"],
    "start_date": ["startdate", "start", "debut", "datedebut", "startdatum", "begin", "begindatum"],
    "stop_date": ["stopdate", "stop", "enddate", "end", "fin", "datefin", "einddatum", "stopdatum"],
}


def normalize_header(text: str) -> str:
    """Accent-, case-, space- and punctuation-insensitive form of a column name."""
    decomposed = unicodedata.normalize("NFKD", str(text or ""))
    return "".join(ch for ch in decomposed if ch.isalnum()).casefold()


@dataclass
class SectionProfile:
    """How one file (patients or medications) is read."""
    what: str
    columns: dict[str, str]
    encoding: str = "utf-8"
    delimiter: str = ","
    date_format: str = "YYYY-MM-DD"
    sheet: str | None = None
    header_row: int | None = None  # the line (row) naming the columns; default: the first non-empty one
    name_separator: str = ","
    room_separator: str = "-"
    sex_codes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SEX_CODES))
    # The built-in profile maps every field by our own name; optional ones may be absent.
    optional_may_be_absent: bool = False

    def as_yaml_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"encoding": self.encoding, "delimiter": self.delimiter,
                                "date_format": self.date_format}
        if self.sheet:
            data["sheet"] = self.sheet
        if self.header_row:
            data["header_row"] = self.header_row
        data["columns"] = dict(self.columns)
        if "name" in self.columns:
            data["name_separator"] = self.name_separator
        if "room" in self.columns:
            data["room_separator"] = self.room_separator
        if self.what == "patients":
            data["sex_codes"] = dict(self.sex_codes)
        return data


@dataclass
class Profile:
    patients: SectionProfile
    medications: SectionProfile
    source: str = "built-in (our column names, UTF-8, comma, YYYY-MM-DD)"

    def section(self, what: str) -> SectionProfile:
        return self.patients if what == "patients" else self.medications


def default_profile() -> Profile:
    return Profile(*(SectionProfile(what, {f: f for f in FIELDS[what]}, optional_may_be_absent=True)
                     for what in ("patients", "medications")))


def _section_from_yaml(name: str, what: str, data: Any) -> SectionProfile:
    where = f"{name}: {what}"
    if not isinstance(data, dict):
        raise BadInput(f"{where} must be a mapping (encoding, delimiter, date_format, columns)")
    unknown = sorted(set(map(str, data)) - SECTION_KEYS)
    if unknown:
        raise BadInput(f"{where}: unknown setting {unknown[0]!r}",
                       hint=f"settings are {', '.join(sorted(SECTION_KEYS))}")
    encoding = str(data.get("encoding", "utf-8")).strip().lower()
    if encoding not in ENCODINGS:
        raise BadInput(f"{where}.encoding {data.get('encoding')!r} is not an encoding we read",
                       hint="use utf-8, cp1252, latin-1 or utf-16")
    delimiter = str(data.get("delimiter", ","))
    if delimiter in ("\\t", "tab", "TAB"):
        delimiter = "\t"
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise BadInput(f"{where}.delimiter {delimiter!r} must be one character such as ';' ',' or tab ('\\t')")
    date_format = str(data.get("date_format", "YYYY-MM-DD")).strip()
    if date_format not in DATE_FORMATS:
        raise BadInput(f"{where}.date_format {date_format!r} is not a date format we read",
                       hint=f"use one of {', '.join(DATE_FORMATS)}")
    columns = data.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise BadInput(f"{where}.columns must map our fields to the file's column names")
    known = FIELDS[what] + ([k for k in COMBINED] if what == "patients" else [])
    for key, value in columns.items():
        if key not in known:
            raise BadInput(f"{where}.columns: unknown field {key!r}", hint=f"fields are {', '.join(known)}")
        if not isinstance(value, (str, int)) or not str(value).strip():
            raise BadInput(f"{where}.columns.{key} must be the name of a column in the file")
    for combined, parts in COMBINED.items():
        clash = [p for p in parts if p in columns]
        if combined in columns and clash:
            raise BadInput(f"{where}.columns: {combined} and {clash[0]} both set",
                           hint=f"{combined} is split into {' and '.join(parts)}: map one or the other")
    mapped = set(columns) | {p for c in columns if c in COMBINED for p in COMBINED[c]}
    missing = [f for f in REQUIRED[what] if f not in mapped]
    if missing:
        raise BadInput(f"{where}.columns: required field {missing[0]} is not mapped",
                       hint=f"required: {', '.join(REQUIRED[what])}")
    for key in ("name_separator", "room_separator"):
        if key in data and (not isinstance(data[key], str) or not data[key]):
            raise BadInput(f"{where}.{key} must be a non-empty text such as ',' or '-'")
    header_row = data.get("header_row")
    if header_row is not None and (not isinstance(header_row, int) or isinstance(header_row, bool)
                                   or header_row < 1):
        raise BadInput(f"{where}.header_row {header_row!r} must be the number of the line naming the columns (1, 2...)")
    sex_codes = data.get("sex_codes", DEFAULT_SEX_CODES)
    if not isinstance(sex_codes, dict):
        raise BadInput(f"{where}.sex_codes must map codes in the file to F, M, X or U")
    for code, sex in sex_codes.items():
        if str(sex).upper() not in ("F", "M", "X", "U"):
            raise BadInput(f"{where}.sex_codes: {code!r} maps to {sex!r}; use F, M, X or U")
    return SectionProfile(
        what, {k: str(v).strip() for k, v in columns.items()}, ENCODINGS[encoding], delimiter, date_format,
        str(data["sheet"]) if data.get("sheet") not in (None, "") else None, header_row,
        str(data.get("name_separator", ",")), str(data.get("room_separator", "-")),
        {str(k).strip().upper(): str(v).upper() for k, v in sex_codes.items()})


def load_profile(path: Path) -> Profile:
    name = path.name
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"cannot read the census profile {path}: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        reason = str(getattr(exc, "problem", None) or exc).strip().splitlines()[0]
        raise BadInput(f"{name}{where}: not a valid YAML profile ({reason})",
                       hint="fix the file, or make a new one with `fallbackkit census profile init SAMPLE`") from None
    if not isinstance(data, dict) or "patients" not in data:
        raise BadInput(f"{name}: a census profile needs a 'patients:' section",
                       hint="make one with `fallbackkit census profile init SAMPLE`")
    unknown = sorted(set(map(str, data)) - {"patients", "medications"})
    if unknown:
        raise BadInput(f"{name}: unknown section {unknown[0]!r}", hint="sections are patients and medications")
    patients = _section_from_yaml(name, "patients", data["patients"])
    meds = (_section_from_yaml(name, "medications", data["medications"]) if data.get("medications")
            else default_profile().medications)
    return Profile(patients, meds, str(path))


def kit_profile(kit_path: Path, override: Path | None = None) -> Profile:
    path = Path(override) if override else Path(kit_path) / PROFILE_FILE
    if override and not path.exists():
        raise BadInput(f"no census profile at {path}")
    return load_profile(path) if path.exists() else default_profile()


# --- reading a file into rows of cells -------------------------------------------------------
@dataclass
class Table:
    """A file's header and rows as cells, with the problems met while reading it."""
    name: str
    header: list[str]
    rows: list[tuple[int, list[Any]]]
    sha256: str
    problems: list[str] = field(default_factory=list)
    header_line: int = 1


def guess_encoding(raw: bytes) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    controls = {b for b in raw if 0x80 <= b <= 0x9F}
    return "latin-1" if controls & {0x81, 0x8D, 0x8F, 0x90, 0x9D} else "cp1252"


def guess_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (";", "\t", ",", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _delimiter_setting(delimiter: str) -> str:
    return '"\\t"' if delimiter == "\t" else f'"{delimiter}"'


def _read_xlsx(path: Path, raw: bytes, sheet: str | None, header_row: int | None) -> Table:
    try:
        import openpyxl
    except ImportError:  # pragma: no cover - installed with the package
        from ..errors import MissingDependency
        raise MissingDependency("reading .xlsx needs openpyxl", hint="pip install openpyxl") from None
    unreadable = dict(hint="save it again from Excel as 'Excel Workbook (.xlsx)' or as CSV")
    try:
        book = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception as exc:  # a damaged workbook may fail anywhere in zip or XML parsing
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"{path.name} is not a readable .xlsx workbook ({reason})", **unreadable) from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise BadInput(f"{path.name} has no sheet {sheet!r}", hint=f"sheets: {', '.join(book.sheetnames)}")
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        if not hasattr(ws, "iter_rows"):
            raise BadInput(f"{path.name}: sheet {ws.title!r} holds no cells (a chart?)", hint="give --sheet NAME")
        header: list[str] | None = None
        header_line = 1
        rows: list[tuple[int, list[Any]]] = []
        try:
            for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
                cells = list(values)
                if header is None:
                    if any(v not in (None, "") for v in cells) and number >= (header_row or 1):
                        header, header_line = ["" if v is None else str(v).strip() for v in cells], number
                        while header and header[-1] == "":
                            header.pop()
                    continue
                rows.append((number, cells))
        except Exception as exc:  # damaged sheet XML
            raise BadInput(f"{path.name}: sheet {ws.title!r} is damaged after row {len(rows) + 1} "
                           f"({type(exc).__name__})", **unreadable) from None
    finally:
        book.close()
    return Table(path.name, header or [], rows, hashlib.sha256(raw).hexdigest(), header_line=header_line)


def _bad_bytes(cell: str) -> bytes:
    return bytes(ord(ch) - 0xDC00 for ch in cell if 0xDC80 <= ord(ch) <= 0xDCFF)


def read_table(path: Path, section: SectionProfile, sheet: str | None = None) -> Table:
    """The header and rows of a CSV/text file or an .xlsx sheet, read as the profile says."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {section.what} file {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise BadInput(f"{path}: {len(raw)} bytes is too large for a census file")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm") or raw.startswith(b"PK\x03\x04"):
        return _read_xlsx(path, raw, sheet if sheet is not None else section.sheet, section.header_row)
    if suffix == ".xls" or raw.startswith(b"\xd0\xcf\x11\xe0"):
        raise BadInput(f"{path.name} is an old Excel .xls file or a password-protected workbook",
                       hint="save it as .xlsx without a password, or as CSV, then import that")
    if sheet is not None:
        raise BadInput(f"--sheet applies to .xlsx workbooks; {path.name} is a text file")
    name = path.name
    problems: list[str] = []
    encoding = section.encoding
    if encoding == "utf-8" and raw.startswith(codecs.BOM_UTF8):
        raw_text = raw[len(codecs.BOM_UTF8):]
    else:
        raw_text = raw
    if encoding != "utf-16" and raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise BadInput(f"{name} is UTF-16 text (Excel's \"Unicode text\"), not {ENCODING_NAMES[encoding]}",
                       hint="set `encoding: utf-16` in the census profile")
    text = raw_text.decode(encoding, errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=section.delimiter)
    header: list[str] = []
    header_line = 1
    rows: list[tuple[int, list[Any]]] = []
    undecodable: list[str] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not header:
                if any(c.strip() for c in cells) and line >= (section.header_row or 1):
                    header, header_line = [c.strip() for c in cells], line
                    for i, c in enumerate(header):
                        if _bad_bytes(c):
                            undecodable.append(f"line {line} column {i + 1}")
                continue
            for i, c in enumerate(cells):
                if _bad_bytes(c):
                    col = header[i] if i < len(header) and header[i] else str(i + 1)
                    undecodable.append(f"line {line} column {col}")
            rows.append((line, cells))
    except csv.Error as exc:
        limit = csv.field_size_limit()
        if "field larger than field limit" in str(exc):
            problems.append(f"{name} line {reader.line_num}: a field is longer than {limit} characters "
                            f"(an unclosed quote?); reading stopped there")
        else:
            problems.append(f"{name} line {reader.line_num}: {exc}; reading stopped there")
    if undecodable:
        guess = guess_encoding(raw)
        hint = (f"looks like {ENCODING_NAMES[guess]}: set `encoding: {guess}` in the census profile"
                if guess != encoding else "save the file again as UTF-8")
        more = f" (and {len(undecodable) - 1} more)" if len(undecodable) > 1 else ""
        problems.insert(0, f"{name} {undecodable[0]}{more}: not valid {ENCODING_NAMES[encoding]} text — {hint}")
    if len(header) == 1 and section.delimiter not in header[0]:
        found = guess_delimiter(header[0])
        if found != section.delimiter and found in header[0]:
            problems.insert(0, f"{name} line {header_line}: the header is one column {header[0][:60]!r} but holds {found!r}: "
                               f"set `delimiter: {_delimiter_setting(found)}` in the census profile")
    return Table(name, header, rows, hashlib.sha256(raw).hexdigest(), problems, header_line)


# --- cells to values --------------------------------------------------------------------------
def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, _dt.datetime):
        return value.date().isoformat() if value.time() == _dt.time() else value.isoformat(sep=" ")
    if isinstance(value, _dt.date):
        return value.isoformat()
    return str(value).strip()


def parse_date(value: Any, date_format: str) -> _dt.date:
    """A date from a cell: a real date cell, an Excel serial number, or text in the profile's format."""
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    text = cell_text(value)
    if date_format == "excel" or isinstance(value, (int, float)):
        if not re.fullmatch(r"\d{1,6}(\.0+)?", text):
            raise ValueError(text)
        serial = int(float(text))
        if serial < 1 or serial == 60:  # Excel's day 60 is its 29 February 1900, which never was
            raise ValueError(text)
        return EXCEL_EPOCH + _dt.timedelta(days=serial if serial > 60 else serial + 1)
    return _dt.datetime.strptime(text, DATE_FORMATS[date_format]).date()


# --- sniffing a sample into a profile ---------------------------------------------------------
def _match_field(header: str, what: str, taken: set[str]) -> str | None:
    norm = normalize_header(header)
    if what == "patients":
        parts = [normalize_header(p) for p in re.split(r"[,/;]", header) if p.strip()]
        if len(parts) == 2 and parts[0] in SYNONYMS["last_name"] and parts[1] in SYNONYMS["first_name"]:
            return "name"
        if len(parts) == 2 and all(p in SYNONYMS["room"] for p in parts):
            return "room"
        if len(parts) == 2 and all(p in SYNONYMS["bed"] for p in parts):
            return "bed"
    candidates = FIELDS[what] + (["room"] if what == "patients" else [])
    for f in candidates:
        if f not in taken and norm in SYNONYMS.get(f, [f]):
            return f
    return None


def _sniff_date_format(values: list[Any]) -> str | None:
    texts = [cell_text(v) for v in values if v not in (None, "") and not isinstance(v, _dt.date)]
    if not texts:
        return None
    if all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", t) for t in texts):
        return "YYYY-MM-DD"
    if all(re.fullmatch(r"\d{1,6}(\.0+)?", t) for t in texts):
        return "excel"
    for sep, fmt in ((".", "DD.MM.YYYY"), ("-", "DD-MM-YYYY"), ("/", "DD/MM/YYYY")):
        pattern = rf"\d{{1,2}}{re.escape(sep)}\d{{1,2}}{re.escape(sep)}\d{{4}}"
        if all(re.fullmatch(pattern, t) for t in texts):
            if sep == "/" and any(int(t.split("/")[1]) > 12 for t in texts) \
                    and all(int(t.split("/")[0]) <= 12 for t in texts):
                return "MM/DD/YYYY"
            return fmt
    return None


@dataclass
class SniffResult:
    section: SectionProfile
    unmatched_columns: list[str]
    unmapped_fields: list[str]
    notes: list[str]


def sniff(path: Path, what: str, sheet: str | None = None) -> SniffResult:
    """Guess how to read a sample export: what `census profile init` writes for a person to check."""
    path = Path(path)
    notes: list[str] = []
    raw = path.read_bytes() if path.exists() else None
    if raw is None:
        raise BadInput(f"no sample file at {path}")
    is_xlsx = path.suffix.lower() in (".xlsx", ".xlsm") or raw.startswith(b"PK\x03\x04")
    section = SectionProfile(what, {}, sheet=sheet)
    if not is_xlsx:
        section.encoding = guess_encoding(raw)
        text = raw.decode(section.encoding if section.encoding != "utf-8" else "utf-8-sig", errors="replace")
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        section.delimiter = guess_delimiter(first)
        notes.append(f"encoding {section.encoding}, delimiter {_delimiter_setting(section.delimiter)}")
    table = read_table(path, section, sheet if is_xlsx else None)
    # A report's title or export date may sit above the header: take the line naming most fields.
    candidates = [(table.header_line, table.header)] + [(n, [cell_text(c) for c in cells]) for n, cells in table.rows[:10]]
    best_line, best = max(candidates, key=lambda c: (sum(1 for h in c[1] if h and _match_field(h, what, set())),
                                                     -c[0]))
    if best_line != table.header_line:
        section.header_row = best_line
        notes.append(f"header on line {best_line}")
        table = read_table(path, section, sheet if is_xlsx else None)
    taken: set[str] = set()
    unmatched: list[str] = []
    for h in table.header:
        f = _match_field(h, what, taken) if h else None
        if f is None or (f in COMBINED and any(p in taken for p in COMBINED[f])) \
                or any(f in COMBINED.get(t, ()) for t in taken):
            if h:
                unmatched.append(h)
            continue
        section.columns[f] = h
        taken.add(f)
    if "room" in section.columns and "ward" in section.columns and "bed" not in section.columns:
        section.columns["bed"] = section.columns.pop("room")
    elif "room" in section.columns and ("ward" in section.columns or "bed" in section.columns):
        unmatched.append(section.columns.pop("room"))
    taken = set(section.columns)
    index = {h: i for i, h in enumerate(table.header)}

    def values_of(f: str) -> list[Any]:
        i = index.get(section.columns.get(f, ""), None)
        return [] if i is None else [cells[i] for _, cells in table.rows if i < len(cells)]

    date_values = [v for f in DATE_FIELDS for v in values_of(f)]
    fmt = _sniff_date_format(date_values)
    if fmt:
        section.date_format = fmt
        notes.append(f"dates {fmt}")
    elif date_values and all(isinstance(v, _dt.date) for v in date_values if v not in (None, "")):
        notes.append("dates from date cells")
    elif date_values:
        notes.append("date format not recognised: set date_format by hand")
    if what == "patients":
        seen = {cell_text(v).upper() for v in values_of("sex") if cell_text(v)}
        unknown = sorted(seen - set(DEFAULT_SEX_CODES))
        if unknown:
            notes.append(f"sex codes {', '.join(unknown)} not known: add them under sex_codes")
        if "name" in section.columns:
            names = [cell_text(v) for v in values_of("name")]
            if names and not any("," in n for n in names) and any(" " in n for n in names):
                section.name_separator = " "
        if "room" in section.columns:
            rooms = [cell_text(v) for v in values_of("room")]
            for sep in ("-", "/", ".", " "):
                if rooms and all(sep in r for r in rooms if r):
                    section.room_separator = sep
                    break
    mapped = set(section.columns) | {p for c in section.columns if c in COMBINED for p in COMBINED[c]}
    unmapped = [f for f in FIELDS[what] if f not in mapped]
    return SniffResult(section, unmatched, unmapped, notes)


def profile_yaml(patients: SniffResult, meds: SniffResult | None) -> str:
    lines = ["# fallbackkit census profile: how `census import` reads the hospital's export.",
             "# Made by `fallbackkit census profile init`; check it, then keep it in the kit.",
             "# columns: our field -> the column's name in the file (accents and case do not matter).",
             "#   name: one column \"Last, First\" split at name_separator; room: \"3B-12\" split into ward",
             "#   and bed at room_separator.",
             f"# date_format: one of {', '.join(DATE_FORMATS)}.",
             "# encoding: utf-8, cp1252, latin-1, utf-16. header_row: the line naming the columns.",
             "# Optional fields: encounter, sex, allergies (patients); all but mrn and medication",
             "# (medications). Columns not listed are ignored."]
    for label, result in (("patients", patients), ("medications", meds)):
        if result is None:
            continue
        lines.append("")
        if result.unmatched_columns:
            lines.append(f"# {label}: columns not used: {', '.join(result.unmatched_columns)}")
        required_missing = [f for f in result.unmapped_fields if f in REQUIRED[label]]
        if required_missing:
            lines.append(f"# {label}: REQUIRED fields not found, map them by hand: {', '.join(required_missing)}")
        lines.append(yaml.safe_dump({label: result.section.as_yaml_dict()}, allow_unicode=True,
                                    sort_keys=False, default_flow_style=False).rstrip())
    return "\n".join(lines) + "\n"


def init_profile(kit_path: Path, sample: Path, meds_sample: Path | None = None, *, sheet: str | None = None,
                 meds_sheet: str | None = None, force: bool = False) -> dict[str, Any]:
    """Sniff the samples and write KIT/census-profile.yaml for a person to check."""
    target = Path(kit_path) / PROFILE_FILE
    if target.exists() and not force:
        raise BadInput(f"{target} exists", hint="edit it, or give --force to replace it with a new guess")
    patients = sniff(Path(sample), "patients", sheet)
    meds = sniff(Path(meds_sample), "medications", meds_sheet) if meds_sample else None
    text = profile_yaml(patients, meds)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    try:
        load_profile(target)  # what we wrote must be readable as written (required fields mapped)
    except BadInput as exc:
        raise BadInput(f"{target} written, but {exc.message.split(': ', 1)[-1]}",
                       hint=f"edit {target.name} (the comments list the columns found), then "
                            "`fallbackkit census import SAMPLE --check`") from None
    return {"file": str(target), "results": {"patients": patients, **({"medications": meds} if meds else {})}}
