"""Census snapshot import: the patients (and their active medications) that ward packs pre-fill.

Files are read through the kit's census profile (census_profile.py): CSV/text in any common
encoding and delimiter, or .xlsx. A bad file imports nothing: every problem is collected with its
line number and column and reported at once, header problems included, so the coordinator fixes
the export in one go. Re-import adds a new snapshot (unless nothing changed); the old ones stay
(history), and the newest is the one printed from. In a workbook, "line" is the sheet's row.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CensusError, NotFound
from ..store.audit import append_audit
from ..store.coverage import census_digest
from ..store.kit import Kit, now_iso
from .census_profile import (COMBINED, FIELDS, REQUIRED, Profile, SectionProfile, Table, cell_text,
                             kit_profile, normalize_header, parse_date, read_table)

PATIENT_COLUMNS = FIELDS["patients"]
PATIENT_REQUIRED = REQUIRED["patients"]
MED_COLUMNS = FIELDS["medications"]
MED_REQUIRED = REQUIRED["medications"]
IDENTIFIERS = {"mrn", "encounter", "ward", "bed", "drug_code", "order_id"}
_TIME_RE = re.compile(r"^([01]\d|2[0-4]):[0-5]\d$")
_CNK_RE = re.compile(r"^\d{7}$")
_ATC_RE = re.compile(r"^[A-Z](\d{2}([A-Z]([A-Z](\d{2})?)?)?)?$")
PRN_YES = {"1", "yes", "true", "y", "oui", "o", "ja", "j", "x"}
PRN_NO = {"", "0", "no", "false", "n", "non", "nee"}
FIRST_ROWS = 5


@dataclass
class Section:
    """One file read through its profile: records by our field names, and what was wrong."""
    records: list[dict[str, Any]]
    problems: list[str]
    extra_columns: list[str]
    sha256: str
    mapped: set[str] = field(default_factory=set)  # our fields whose column is in the file


def _map_header(table: Table, section: SectionProfile) -> tuple[dict[str, int], list[str], list[str]]:
    """Which cell holds each profile column; problems; and the columns nobody asked for."""
    problems: list[str] = []
    by_norm: dict[str, int] = {}
    for i, name in enumerate(table.header):
        if not name:
            continue
        norm = normalize_header(name)
        if norm in by_norm:
            problems.append(f"{table.name} line {table.header_line}: column {name!r} appears twice (columns {by_norm[norm] + 1} "
                            f"and {i + 1}): rename or remove one")
        else:
            by_norm[norm] = i
    if not table.header:
        problems.append(f"{table.name} line 1: no header row (the first line must name the columns)")
        return {}, problems, []
    index: dict[str, int] = {}
    for key, column in section.columns.items():
        i = by_norm.get(normalize_header(column))
        if i is not None:
            index[key] = i
            continue
        if section.optional_may_be_absent and key not in REQUIRED[section.what]:
            continue
        setting = "" if section.optional_may_be_absent else " (census profile: columns." + key + ")"
        problems.append(f"{table.name} line {table.header_line}: no column {column!r} for {key}{setting}; "
                        f"the header is {', '.join(h for h in table.header if h)[:300]}")
    used = set(index.values())
    extras = [h for i, h in enumerate(table.header) if h and i not in used]
    return index, problems, extras


def _read_section(path: Path, section: SectionProfile, sheet: str | None) -> tuple[Section, Table]:
    table = read_table(path, section, sheet)
    index, header_problems, extras = _map_header(table, section)
    problems = table.problems + header_problems
    records = []
    width = len(table.header)
    for line, cells in table.rows:
        if not any(cell_text(c) for c in cells):
            continue
        rec: dict[str, Any] = {"__line__": line}
        if len(cells) > width and any(cell_text(c) for c in cells[width:]):
            problems.append(f"{table.name} line {line}: more values than columns")
        for key, i in index.items():
            rec[key] = cells[i] if i < len(cells) else None
        records.append(rec)
    mapped = set(index) | {p for c in index if c in COMBINED for p in COMBINED[c]}
    return Section(records, problems, extras, table.sha256, mapped), table


def _where(name: str, line: int, column: str | None = None) -> str:
    return f"{name} line {line}" + (f" column {column}" if column else "")


def _text_field(rec: dict, key: str, section: SectionProfile, problems: list[str], name: str) -> str:
    value = cell_text(rec.get(key))
    if not value:
        return ""
    if key not in IDENTIFIERS:
        # A line break typed in a spreadsheet cell (Alt+Enter) prints as a space on the sheet.
        value = re.sub(r"[\t\r\n\v\f]+", " ", value).strip()
    bad = [ch for ch in value if unicodedata.category(ch) in (("Cc", "Cf", "Co") if key in IDENTIFIERS
                                                                else ("Cc", "Co"))]
    if bad:
        where = _where(name, rec["__line__"], section.columns.get(key, key))
        codes = ", ".join(dict.fromkeys(f"U+{ord(ch):04X}" for ch in bad))
        problems.append(f"{where}: {key} holds an invisible character ({codes}): retype the value")
    return value


def _date_field(rec: dict, key: str, section: SectionProfile, problems: list[str], name: str,
                today: _dt.date) -> str | None:
    value = rec.get(key)
    if cell_text(value) == "":
        return None
    where = _where(name, rec["__line__"], section.columns.get(key, key))
    try:
        parsed = parse_date(value, section.date_format)
    except (ValueError, OverflowError):
        problems.append(f"{where}: {key} {cell_text(value)!r} is not a date in the format {section.date_format} "
                        f"(census profile: date_format)")
        return None
    if key == "birth_date":
        if parsed.year < 1900:
            problems.append(f"{where}: birth_date {parsed.isoformat()} is before 1900")
            return None
        if parsed > today:
            problems.append(f"{where}: birth_date {parsed.isoformat()} is in the future")
            return None
    return parsed.isoformat()


def _split(rec: dict, combined: str, separator: str, section: SectionProfile, problems: list[str],
           name: str) -> None:
    value = cell_text(rec.pop(combined, None))
    first_key, second_key = COMBINED[combined]
    if not value:
        return
    if combined == "name":
        head, sep, tail = value.partition(separator)
    else:
        head, sep, tail = value.rpartition(separator)
    if not sep or not head.strip() or not tail.strip():
        problems.append(f"{_where(name, rec['__line__'], section.columns[combined])}: {value!r} does not split into "
                        f"{first_key} and {second_key} at {separator!r} (census profile: {combined}_separator)")
        return
    rec[first_key], rec[second_key] = head.strip(), tail.strip()


def _patient_records(sec: Section, profile: SectionProfile, name: str, today: _dt.date) -> list[dict]:
    problems = sec.problems
    seen: dict[str, int] = {}
    patients = []
    for rec in sec.records:
        line = rec["__line__"]
        for combined in COMBINED:
            if combined in profile.columns:
                _split(rec, combined, getattr(profile, f"{combined}_separator"), profile, problems, name)
        p: dict[str, Any] = {}
        for key in PATIENT_COLUMNS:
            if key == "birth_date":
                p[key] = _date_field(rec, key, profile, problems, name, today)
                if p[key] is None and cell_text(rec.get(key)) == "" and key in sec.mapped:
                    problems.append(f"{_where(name, line, profile.columns.get(key))}: birth_date is empty")
                continue
            p[key] = _text_field(rec, key, profile, problems, name) or None
        for key in PATIENT_REQUIRED:
            if key != "birth_date" and not p.get(key) and key in sec.mapped:
                problems.append(f"{_where(name, line, profile.columns.get(key))}: {key} is empty")
        if p.get("sex"):
            code = p["sex"].upper()
            if code not in profile.sex_codes:
                problems.append(f"{_where(name, line, profile.columns.get('sex'))}: sex {p['sex']!r} is not one of "
                                f"{', '.join(profile.sex_codes)} (census profile: sex_codes)")
            p["sex"] = profile.sex_codes.get(code)
        mrn = p.get("mrn")
        if mrn:
            if mrn in seen:
                problems.append(f"{_where(name, line)}: duplicate mrn {mrn} (first on line {seen[mrn]})")
            else:
                seen[mrn] = line
        patients.append(p)
    if not sec.records and not problems:
        problems.append(f"{name}: no patients")
    return patients


def _med_records(sec: Section, profile: SectionProfile, name: str, mrns: set[str], today: _dt.date) -> list[dict]:
    problems = sec.problems
    meds = []
    counters: dict[str, int] = {}
    orders: dict[str, int] = {}
    for rec in sec.records:
        line = rec["__line__"]
        m = {key: _text_field(rec, key, profile, problems, name) for key in
             ("mrn", "medication", "dose", "route", "frequency", "drug_code", "order_id")}
        for key in MED_REQUIRED:
            if not m.get(key) and key in sec.mapped:
                problems.append(f"{_where(name, line, profile.columns.get(key))}: {key} is empty")
        mrn = m["mrn"]
        if mrn and mrn not in mrns:
            problems.append(f"{_where(name, line)}: unknown mrn {mrn} (not in the patients file)")
        prn_text = cell_text(rec.get("prn")).lower()
        if prn_text not in PRN_YES | PRN_NO:
            problems.append(f"{_where(name, line, profile.columns.get('prn'))}: prn {cell_text(rec.get('prn'))!r} "
                            f"must be yes/no (or 1/0)")
        prn = prn_text in PRN_YES
        times = [t.strip() for t in re.split(r"[;,/ ]+", cell_text(rec.get("scheduled_times"))) if t.strip()]
        times = [f"0{t}" if re.fullmatch(r"\d:\d\d", t) else t for t in times]
        bad = [t for t in times if not _TIME_RE.match(t)]
        if bad:
            problems.append(f"{_where(name, line, profile.columns.get('scheduled_times'))}: scheduled_times "
                            f"{';'.join(bad)} must be HH:MM separated by ';'")
        if not prn and not times and m.get("medication"):
            problems.append(f"{_where(name, line)}: a scheduled medication needs scheduled_times (or prn=yes)")
        code = (m.get("drug_code") or "").upper().replace(" ", "")
        system = None
        if code:
            system = "CNK" if _CNK_RE.match(code) else "ATC" if _ATC_RE.match(code) else None
            if system is None:
                problems.append(f"{_where(name, line, profile.columns.get('drug_code'))}: drug_code {code!r} is "
                                f"neither a CNK (7 digits) nor an ATC code (like N02BE01)")
        order = m.get("order_id")
        if order:
            if order in orders:
                problems.append(f"{_where(name, line)}: duplicate order_id {order} (first on line {orders[order]})")
            else:
                orders[order] = line
        start = _date_field(rec, "start_date", profile, problems, name, today)
        stop = _date_field(rec, "stop_date", profile, problems, name, today)
        if start and stop and stop < start:
            problems.append(f"{_where(name, line)}: stop_date {stop} is before start_date {start}")
        counters[mrn or ""] = counters.get(mrn or "", 0) + 1
        meds.append({"mrn": mrn or None, "line": counters[mrn or ""], "medication": m["medication"] or None,
                     "dose": m["dose"] or None, "route": m["route"] or None, "frequency": m["frequency"] or None,
                     "scheduled_times": ";".join(sorted(times)) or None, "prn": int(prn),
                     "drug_code": code or None, "drug_code_system": system, "order_id": order or None,
                     "start_date": start, "stop_date": stop})
    return meds


def _display(p: dict) -> str:
    return f"{(p.get('last_name') or '').upper()}, {p.get('first_name') or ''}"


def differences(before: list[dict], after: list[dict]) -> dict[str, list[dict]]:
    """What changed on the wards between two snapshots: the cover sheet and the import say it."""
    old = {p["mrn"]: p for p in before}
    new = {p["mrn"]: p for p in after}
    brief = lambda p: {"mrn": p["mrn"], "name": _display(p), "ward": p["ward"], "bed": p["bed"]}  # noqa: E731
    changes: dict[str, list[dict]] = {"admitted": [], "discharged": [], "moved": [], "allergies": []}
    for mrn, p in new.items():
        q = old.get(mrn)
        if q is None:
            changes["admitted"].append(brief(p))
            continue
        if (q["ward"], q["bed"]) != (p["ward"], p["bed"]):
            changes["moved"].append({**brief(p), "from_ward": q["ward"], "from_bed": q["bed"]})
        if (q.get("allergies") or "") != (p.get("allergies") or ""):
            changes["allergies"].append({**brief(p), "before": q.get("allergies"), "after": p.get("allergies")})
    changes["discharged"] = [brief(q) for mrn, q in old.items() if mrn not in new]
    for rows in changes.values():
        rows.sort(key=lambda r: (_natural(r["ward"]), _natural(r["bed"]), r["mrn"]))
    return changes


def describe_changes(changes: dict[str, list[dict]] | None) -> list[str]:
    if changes is None:
        return ["first census snapshot: nothing to compare with"]
    lines = []
    for p in changes["admitted"]:
        lines.append(f"admitted    {p['ward']} bed {p['bed']}: {p['name']} (MRN {p['mrn']})")
    for p in changes["discharged"]:
        lines.append(f"discharged  {p['ward']} bed {p['bed']}: {p['name']} (MRN {p['mrn']})")
    for p in changes["moved"]:
        lines.append(f"moved bed   {p['name']} (MRN {p['mrn']}): {p['from_ward']} bed {p['from_bed']} -> "
                     f"{p['ward']} bed {p['bed']}")
    for p in changes["allergies"]:
        lines.append(f"allergies   {p['ward']} bed {p['bed']}: {p['name']} (MRN {p['mrn']}): "
                     f"{p['before'] or 'none'} -> {p['after'] or 'none'}")
    return lines or ["no differences from the current snapshot"]


@dataclass
class CensusPlan:
    """What an import would do: `census import --check` shows it, the import carries it out."""
    patients_file: Path
    meds_file: Path | None
    profile: str
    patients: list[dict]
    medications: list[dict]
    problems: list[str]
    extra_columns: dict[str, list[str]]
    previous: dict[str, Any] | None
    changes: dict[str, list[dict]] | None
    content_sha256: str
    file_sha256: str

    @property
    def unchanged(self) -> bool:
        return self.previous is not None and self.previous.get("content_sha256") == self.content_sha256

    def per_ward(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.patients:
            counts[p["ward"] or ""] = counts.get(p["ward"] or "", 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: _natural(kv[0])))

    def as_dict(self) -> dict[str, Any]:
        return {"patients_file": str(self.patients_file), "profile": self.profile,
                "patients": len(self.patients), "medications": len(self.medications),
                "first_rows": self.patients[:FIRST_ROWS], "per_ward": self.per_ward(),
                "problems": self.problems, "extra_columns": self.extra_columns,
                "changes": self.changes, "unchanged": self.unchanged}


def _content_sha(patients: list[dict], meds: list[dict]) -> str:
    data = json.dumps([sorted(patients, key=lambda p: p["mrn"] or ""),
                       sorted(meds, key=lambda m: (m["mrn"] or "", m["line"]))], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8", "surrogateescape")).hexdigest()


def plan_census(kit: Kit, patients_file: Path | str, meds_file: Path | str | None = None, *,
                profile: Profile | Path | str | None = None, sheet: str | None = None,
                meds_sheet: str | None = None, today: _dt.date | None = None) -> CensusPlan:
    """Read and check the files through the kit's profile; writes nothing."""
    today = today or _dt.date.today()
    if not isinstance(profile, Profile):
        profile = kit_profile(kit.path, Path(profile) if profile else None)
    patients_file = Path(patients_file)
    sec, _ = _read_section(patients_file, profile.patients, sheet)
    patients = _patient_records(sec, profile.patients, patients_file.name, today)
    problems = list(sec.problems)
    extras = {patients_file.name: sec.extra_columns} if sec.extra_columns else {}
    meds: list[dict] = []
    if meds_file is not None:
        meds_file = Path(meds_file)
        msec, _ = _read_section(meds_file, profile.medications, meds_sheet)
        meds = _med_records(msec, profile.medications, meds_file.name, {p["mrn"] for p in patients if p["mrn"]},
                            today)
        problems += msec.problems
        if msec.extra_columns:
            extras[meds_file.name] = msec.extra_columns
    previous = latest_snapshot(kit)
    changes = None
    if previous is not None:
        before = list(kit.db.query("SELECT mrn, last_name, first_name, ward, bed, allergies FROM patients"
                                   " WHERE snapshot_id = ?", [previous["id"]]))
        changes = differences(before, [p for p in patients if p.get("mrn")])
    return CensusPlan(patients_file, Path(meds_file) if meds_file else None, profile.source, patients, meds,
                      problems, extras, previous, changes, _content_sha(patients, meds), sec.sha256)


def import_census(kit: Kit, patients_csv: Path | str, meds_csv: Path | str | None = None,
                  actor: str = "system", as_of: str | None = None, *, profile: Profile | Path | str | None = None,
                  sheet: str | None = None, meds_sheet: str | None = None) -> dict[str, Any]:
    """Import the files as the new snapshot, all or nothing. A census identical to the current
    snapshot adds nothing (the summary says unchanged), so a scheduled refresh is idempotent."""
    plan = plan_census(kit, patients_csv, meds_csv, profile=profile, sheet=sheet, meds_sheet=meds_sheet)
    if plan.problems:
        hint = "fix the file(s) or the census profile and import again; nothing was changed"
        if plan.profile.startswith("built-in"):
            hint += (f" (for an export in another shape, make a profile once: "
                     f"`fallbackkit census profile init {plan.patients_file.name}`)")
        raise CensusError(f"census not imported: {len(plan.problems)} problem(s)", plan.problems, hint=hint)
    summary_base = {"patients": len(plan.patients), "medications": len(plan.medications),
                    "wards": list(plan.per_ward()), "extra_columns": plan.extra_columns,
                    "changes": plan.changes}
    if plan.unchanged:
        return {**summary_base, "snapshot_id": plan.previous["id"], "imported_at": plan.previous["imported_at"],
                "unchanged": True}
    imported_at = as_of or now_iso()
    db = kit.db
    with db.conn:
        snapshot_id = db["census_snapshots"].insert({
            "imported_at": imported_at, "source_file": str(plan.patients_file),
            "sha256": plan.file_sha256, "meds_file": str(plan.meds_file) if plan.meds_file else None,
            "patients": len(plan.patients), "medications": len(plan.medications),
            "content_sha256": plan.content_sha256,
            "changes": json.dumps(plan.changes, ensure_ascii=False) if plan.changes is not None else None,
            "previous_id": plan.previous["id"] if plan.previous else None}).last_pk
        db["patients"].insert_all({**p, "snapshot_id": snapshot_id} for p in plan.patients)
        db["medications"].insert_all({**m, "snapshot_id": snapshot_id} for m in plan.medications)
        summary = {"snapshot_id": snapshot_id, "imported_at": imported_at, **summary_base, "unchanged": False}
        append_audit(db, actor, "census.import", f"snapshot:{snapshot_id}", None,
                     {k: summary[k] for k in ("snapshot_id", "imported_at", "patients", "medications", "wards")}
                     | {"source_file": str(plan.patients_file), "profile": plan.profile,
                        "census_sha256": census_digest(db.conn, snapshot_id)})
    return summary


def latest_snapshot(kit: Kit) -> dict[str, Any] | None:
    row = kit.db.execute(
        "SELECT id, imported_at, patients, content_sha256, changes FROM census_snapshots"
        " ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    return {"id": row[0], "imported_at": row[1], "patients": row[2], "content_sha256": row[3],
            "changes": json.loads(row[4]) if row[4] else None}


def current_snapshot(kit: Kit) -> dict[str, Any]:
    snapshot = latest_snapshot(kit)
    if snapshot is None:
        raise NotFound("no census snapshot imported yet",
                       hint="run `fallbackkit census import PATIENTS.csv [--meds MEDS.csv]` first")
    return snapshot


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text or "")]


def ward_patients(kit: Kit, snapshot_id: int, ward: str) -> list[dict]:
    rows = list(kit.db.query("SELECT * FROM patients WHERE snapshot_id = ? AND ward = ?",
                             [snapshot_id, ward]))
    return sorted(rows, key=lambda p: (_natural(p["bed"]), p["mrn"]))


def wards(kit: Kit, snapshot_id: int) -> list[str]:
    return sorted((r[0] for r in kit.db.execute(
        "SELECT DISTINCT ward FROM patients WHERE snapshot_id = ?", [snapshot_id])), key=_natural)


def patient(kit: Kit, snapshot_id: int, mrn: str) -> dict:
    rows = list(kit.db.query("SELECT * FROM patients WHERE snapshot_id = ? AND mrn = ?", [snapshot_id, mrn]))
    if not rows:
        raise NotFound(f"no patient with MRN {mrn} in the current census snapshot",
                       hint="check the MRN, or import a newer census")
    return rows[0]


def medications_of(kit: Kit, snapshot_id: int, mrn: str, on: _dt.date | None = None) -> list[dict]:
    """The orders to print for a patient on the printing day: those stopped before it are left out."""
    day = (on or _dt.date.today()).isoformat()
    return list(kit.db.query(
        "SELECT line, medication, dose, route, frequency, scheduled_times, prn, drug_code, drug_code_system,"
        " order_id, start_date, stop_date FROM medications"
        " WHERE snapshot_id = ? AND mrn = ? AND (stop_date IS NULL OR stop_date >= ?) ORDER BY prn, line",
        [snapshot_id, mrn, day]))
