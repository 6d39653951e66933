"""Census import speed: a hospital-sized nightly export (1,000 patients in 40 wards, ~4,000
orders) read through a profile, as CSV (cp1252, ';') and as .xlsx (openpyxl, read-only mode).
Median of several runs, in seconds per import; the dry run (`--check`) is timed apart.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import openpyxl

from fallbackkit.generate import import_census
from fallbackkit.generate.census import plan_census
from fallbackkit.generate.census_profile import PROFILE_FILE, init_profile
from fallbackkit.generate.sample import write_census
from fallbackkit.store import init_kit


def shapes(tmp: Path) -> tuple[Path, Path, Path]:
    patients, meds = write_census(tmp / "census", {f"W{i}": 25 for i in range(40)}, seed=3)
    with patients.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    excel_csv = tmp / "export.csv"
    with excel_csv.open("w", newline="", encoding="cp1252", errors="replace") as fh:
        w = csv.writer(fh, delimiter=";", lineterminator="\r\n")
        w.writerow(["NISS", "Nom", "Prénom", "Date de naissance", "Sexe", "Service", "Lit", "Allergies"])
        for r in rows:
            y, m, d = r["birth_date"].split("-")
            w.writerow([r["mrn"], r["last_name"], r["first_name"], f"{d}/{m}/{y}", r["sex"], r["ward"], r["bed"],
                        r["allergies"]])
    xlsx = tmp / "export.xlsx"
    book = openpyxl.Workbook(write_only=True)
    ws = book.create_sheet("Patients")
    ws.append(["Patient ID", "Last name", "First name", "Date of birth", "Gender", "Ward", "Bed", "Allergies"])
    for r in rows:
        ws.append([int(r["mrn"]), r["last_name"], r["first_name"], dt.date.fromisoformat(r["birth_date"]), r["sex"],
                   r["ward"], r["bed"], r["allergies"]])
    book.save(xlsx)
    return excel_csv, xlsx, meds


def measure(runs: int) -> dict[str, float]:
    figures: dict[str, list[float]] = {"csv": [], "xlsx": [], "check": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        excel_csv, xlsx, meds = shapes(tmp)
        for label, path in (("csv", excel_csv), ("xlsx", xlsx)):
            folder = tmp / f"profile-{label}"
            folder.mkdir()
            init_profile(folder, path)
            for i in range(runs):
                kit = init_kit(tmp / f"kit-{label}-{i}", actor="bench")
                start = time.perf_counter()
                if label == "csv":
                    plan_census(kit, path, meds, profile=folder / PROFILE_FILE)
                    figures["check"].append(time.perf_counter() - start)
                    start = time.perf_counter()
                import_census(kit, path, meds, actor="bench", profile=folder / PROFILE_FILE)
                figures[label].append(time.perf_counter() - start)
                patients = kit.db.execute("SELECT COUNT(*) FROM patients").fetchone()[0]
                kit.close()
    return {"patients": patients, **{k: statistics.median(v) for k, v in figures.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    f = measure(1 if args.quick else 3)
    print("== census import (median of runs) ==")
    print(f"{f['patients']} patients + orders, cp1252 ';' CSV: import {f['csv']:.2f} s, dry run {f['check']:.2f} s")
    print(f"{f['patients']} patients + orders, .xlsx (read-only openpyxl): import {f['xlsx']:.2f} s")


if __name__ == "__main__":
    main()
