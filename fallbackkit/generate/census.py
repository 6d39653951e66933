"""Census snapshot import: the patients (and their active medications) that ward packs pre-fill.

A bad file imports nothing: every problem is collected with its line number and reported at once,
so the coordinator fixes the export in one go. Re-import adds a new snapshot; the old ones stay
(history), and the newest is the one printed from.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import re
from pathlib import Path
from typing import Any

from ..errors import BadInput, CensusError, NotFound
from ..store.audit import append_audit
from ..store.coverage import census_digest
from ..store.kit import Kit, now_iso

PATIENT_COLUMNS = ["mrn", "encounter", "last_name", "first_name", "birth_date", "sex", "ward", "bed",
                   "allergies"]
PATIENT_REQUIRED = ["mrn", "last_name", "first_name", "birth_date", "ward", "bed"]
MED_COLUMNS = ["mrn", "medication", "dose", "route", "frequency", "scheduled_times", "prn"]
MED_REQUIRED = ["mrn", "medication"]
_TIME_RE = re.compile(r"^([01]\d|2[0-4]):[0-5]\d$")
MAX_CSV_BYTES = 50 * 1024 * 1024


def _read_csv(path: Path, columns: list[str], what: str) -> tuple[list[tuple[int, dict]], bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {what} file {path}: {exc.strerror}") from exc
    if len(raw) > MAX_CSV_BYTES:
        raise BadInput(f"{path}: {len(raw)} bytes is too large for a census file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CensusError(f"{path}: not UTF-8 text", [f"byte {exc.start}: {exc.reason}"],
                          hint="export the census as UTF-8 CSV") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in columns if c not in header]
    if missing:
        raise CensusError(f"{path}: missing column(s) {', '.join(missing)}",
                          [f"line 1: header is {','.join(header) or '(empty)'}"],
                          hint=f"the header must be {','.join(columns)}")
    reader.fieldnames = header
    rows = []
    for row in reader:
        cleaned = {k: (v or "").strip() for k, v in row.items() if k is not None}
        if not any(cleaned.values()):
            continue
        if None in row:
            cleaned["__extra__"] = "1"
        rows.append((reader.line_num, cleaned))
    return rows, raw


def _valid_date(text: str) -> bool:
    try:
        _dt.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def parse_patients(path: Path) -> tuple[list[dict], list[str], bytes]:
    rows, raw = _read_csv(path, PATIENT_COLUMNS, "patients")
    problems: list[str] = []
    seen: dict[str, int] = {}
    patients = []
    for line, row in rows:
        where = f"{path.name} line {line}"
        if row.get("__extra__"):
            problems.append(f"{where}: more values than columns")
        for col in PATIENT_REQUIRED:
            if not row.get(col):
                problems.append(f"{where}: {col} is empty")
        if row.get("birth_date") and not _valid_date(row["birth_date"]):
            problems.append(f"{where}: birth_date {row['birth_date']!r} is not a date (YYYY-MM-DD)")
        elif row.get("birth_date") and row["birth_date"] > _dt.date.today().isoformat():
            problems.append(f"{where}: birth_date {row['birth_date']} is in the future")
        if row.get("sex") and row["sex"].upper() not in ("F", "M", "X", "U"):
            problems.append(f"{where}: sex {row['sex']!r} must be F, M, X or U")
        mrn = row.get("mrn")
        if mrn:
            if mrn in seen:
                problems.append(f"{where}: duplicate mrn {mrn} (first on line {seen[mrn]})")
            else:
                seen[mrn] = line
        patients.append({c: row.get(c) or None for c in PATIENT_COLUMNS})
    if not rows:
        problems.append(f"{path.name}: no patients")
    return patients, problems, raw


def parse_medications(path: Path, mrns: set[str]) -> tuple[list[dict], list[str]]:
    rows, _ = _read_csv(path, MED_COLUMNS, "medications")
    problems: list[str] = []
    meds = []
    counters: dict[str, int] = {}
    for line, row in rows:
        where = f"{path.name} line {line}"
        if row.get("__extra__"):
            problems.append(f"{where}: more values than columns")
        for col in MED_REQUIRED:
            if not row.get(col):
                problems.append(f"{where}: {col} is empty")
        mrn = row.get("mrn")
        if mrn and mrn not in mrns:
            problems.append(f"{where}: unknown mrn {mrn} (not in the patients file)")
        prn_text = (row.get("prn") or "").lower()
        if prn_text not in ("", "0", "1", "yes", "no", "true", "false", "y", "n"):
            problems.append(f"{where}: prn {row.get('prn')!r} must be yes/no (or 1/0)")
        prn = prn_text in ("1", "yes", "true", "y")
        times = [t.strip() for t in (row.get("scheduled_times") or "").split(";") if t.strip()]
        bad = [t for t in times if not _TIME_RE.match(t)]
        if bad:
            problems.append(f"{where}: scheduled_times {';'.join(bad)} must be HH:MM separated by ';'")
        if not prn and not times and row.get("medication"):
            problems.append(f"{where}: a scheduled medication needs scheduled_times (or prn=yes)")
        counters[mrn or ""] = counters.get(mrn or "", 0) + 1
        meds.append({"mrn": mrn, "line": counters[mrn or ""], "medication": row.get("medication"),
                     "dose": row.get("dose") or None, "route": row.get("route") or None,
                     "frequency": row.get("frequency") or None,
                     "scheduled_times": ";".join(sorted(times)) or None, "prn": int(prn)})
    return meds, problems


def import_census(kit: Kit, patients_csv: Path | str, meds_csv: Path | str | None = None,
                  actor: str = "system", as_of: str | None = None) -> dict[str, Any]:
    patients_csv = Path(patients_csv)
    patients, problems, raw = parse_patients(patients_csv)
    meds: list[dict] = []
    if meds_csv is not None:
        meds, med_problems = parse_medications(Path(meds_csv), {p["mrn"] for p in patients if p["mrn"]})
        problems += med_problems
    if problems:
        raise CensusError(f"census not imported: {len(problems)} problem(s)", problems,
                          hint="fix the file(s) and import again; nothing was changed")
    imported_at = as_of or now_iso()
    db = kit.db
    with db.conn:
        snapshot_id = db["census_snapshots"].insert({
            "imported_at": imported_at, "source_file": str(patients_csv),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "meds_file": str(meds_csv) if meds_csv else None,
            "patients": len(patients), "medications": len(meds)}).last_pk
        db["patients"].insert_all({**p, "snapshot_id": snapshot_id} for p in patients)
        db["medications"].insert_all({**m, "snapshot_id": snapshot_id} for m in meds)
        summary = {"snapshot_id": snapshot_id, "imported_at": imported_at, "patients": len(patients),
                   "medications": len(meds), "wards": sorted({p["ward"] for p in patients})}
        append_audit(db, actor, "census.import", f"snapshot:{snapshot_id}", None,
                     {**summary, "source_file": str(patients_csv),
                      "census_sha256": census_digest(db.conn, snapshot_id)})
    return summary


def current_snapshot(kit: Kit) -> dict[str, Any]:
    row = kit.db.execute(
        "SELECT id, imported_at, patients FROM census_snapshots ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        raise NotFound("no census snapshot imported yet",
                       hint="run `fallbackkit census import PATIENTS.csv [--meds MEDS.csv]` first")
    return {"id": row[0], "imported_at": row[1], "patients": row[2]}


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


def medications_of(kit: Kit, snapshot_id: int, mrn: str) -> list[dict]:
    return list(kit.db.query(
        "SELECT line, medication, dose, route, frequency, scheduled_times, prn FROM medications"
        " WHERE snapshot_id = ? AND mrn = ? ORDER BY prn, line", [snapshot_id, mrn]))
