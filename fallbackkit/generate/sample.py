"""A synthetic census (patients and medications) for the demo, tests and benchmarks.

Names deliberately use accents and other scripts (ł, ễ, ë, ç, Cyrillic) so that printing is tested
with what real Brussels wards hold. Deterministic for a given seed.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

LAST = ["Dubois", "Peeters", "Janssens", "Maes", "Łukasiewicz", "Nguyễn", "Van den Broeck", "El Amrani",
        "Müller", "Françoise", "Öztürk", "Dimitrova", "Kowalczyk", "De Smet", "Goossens", "Wouters",
        "Verhoeven", "Lefèvre", "Ñúñez", "Иванова", "Brontë", "Sørensen", "Ferreira", "Claes"]
FIRST = ["Marie", "Jan", "Zoë", "Noël", "Łucja", "Thị Hương", "Mohamed", "Élodie", "Sven", "Anaïs",
         "Lars", "Ayşe", "Grégoire", "Inès", "Pieter", "Olga", "Jürgen", "Chloë", "Luc", "Fatima"]
ALLERGIES = ["", "", "", "penicillin", "latex", "iodine contrast", "NSAIDs", "peanut; shellfish"]
SCHEDULED = [
    ("Paracetamol", "1 g", "PO", "QID", "06:00;12:00;18:00;24:00"),
    ("Enoxaparin", "40 mg", "SC", "daily", "20:00"),
    ("Amoxicillin/clavulanate", "1 g", "IV", "TID", "06:00;14:00;22:00"),
    ("Pantoprazole", "40 mg", "PO", "daily", "08:00"),
    ("Metoprolol", "50 mg", "PO", "BID", "08:00;20:00"),
    ("Furosemide", "40 mg", "IV", "BID", "08:00;16:00"),
    ("Insulin glargine", "18 IU", "SC", "daily", "22:00"),
    ("Vancomycin", "1 g", "IV", "q12h", "09:00;21:00"),
    ("Ceftriaxone", "2 g", "IV", "daily", "10:00"),
]
PRN = [("Morphine", "2 mg", "IV", "q4h PRN pain"), ("Ondansetron", "4 mg", "IV", "q8h PRN nausea"),
       ("Lorazepam", "1 mg", "PO", "PRN anxiety")]


def write_census(directory: Path | str, wards: dict[str, int] | None = None, seed: int = 7) -> tuple[Path, Path]:
    """Write patients.csv and meds.csv; wards maps ward name to number of beds occupied."""
    wards = wards or {"3B": 8, "ICU": 4}
    rng = random.Random(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    patients_path, meds_path = directory / "patients.csv", directory / "meds.csv"
    number = 100200
    with patients_path.open("w", newline="", encoding="utf-8") as pf, \
            meds_path.open("w", newline="", encoding="utf-8") as mf:
        pw, mw = csv.writer(pf), csv.writer(mf)
        pw.writerow(["mrn", "encounter", "last_name", "first_name", "birth_date", "sex", "ward", "bed", "allergies"])
        mw.writerow(["mrn", "medication", "dose", "route", "frequency", "scheduled_times", "prn"])
        for ward, beds in wards.items():
            for bed in rng.sample(range(1, beds * 2 + 1), beds):
                number += rng.randint(1, 40)
                mrn = str(number)
                pw.writerow([mrn, f"E{number * 7 % 1000003:07d}", rng.choice(LAST), rng.choice(FIRST),
                             f"{rng.randint(1930, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                             rng.choice("FM"), ward, str(bed), rng.choice(ALLERGIES)])
                for med in rng.sample(SCHEDULED, rng.randint(2, 6)):
                    mw.writerow([mrn, *med, "no"])
                for med in rng.sample(PRN, rng.randint(0, 2)):
                    mw.writerow([mrn, *med, "", "yes"])
    return patients_path, meds_path
