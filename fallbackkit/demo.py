"""`make demo`: the whole job end to end on generated data, in a temporary kit.

Runs the same commands a coordinator, a clerk and IT would type, prints each one, and says where
the outputs are. Nothing here is special-cased: it is the CLI, run as a subprocess.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .generate.sample import write_census

# What the scripted clerk types for handwriting (the simulator draws scribbles, not letters).
TYPED = {
    "time": "08:15", "temperature": "37.4", "pulse": "84", "bp_systolic": "118", "bp_diastolic": "76",
    "resp_rate": "18", "spo2": "96", "pain": "3", "obs_date": "28/11/2026", "mar_date": "28/11/2026",
    "collected_at": "28/11/2026 07:40", "received_at": "08:10", "arrival_time": "28/11/2026 03:20",
    "recorded_at": "28/11/2026 03:35", "weight": "71.5", "height": "168", "bed": "12",
    "birth_date": "03/02/1961", "patient_birth_date": "03/02/1961", "last_name": "Doe", "first_name": "Alex",
    "patient_name": "DOE, Alex",
}
IDENTITY_FIELDS = ("last_name", "first_name", "birth_date")


def run(args: list[str], kit: Path, ok_codes: tuple[int, ...] = (0,), quiet: bool = False) -> None:
    """Run one command as a user would; `quiet` shows only the first lines of a long listing."""
    shown = " ".join(shlex.quote(a) for a in ["fallbackkit", *args])
    print(f"\n$ {shown}", flush=True)
    env = {**os.environ, "FALLBACKKIT_KIT": str(kit), "FALLBACKKIT_USER": "demo"}
    done = subprocess.run([sys.executable, "-m", "fallbackkit", *args], env=env,
                          stdout=subprocess.PIPE if quiet else None, text=True)
    if quiet:
        lines = done.stdout.splitlines()
        print("\n".join(lines[:14]) + (f"\n... ({len(lines) - 14} more lines)" if len(lines) > 14 else ""))
    if done.returncode not in ok_codes:
        print(f"demo: step failed with exit code {done.returncode}: {shown}", file=sys.stderr)
        sys.exit(done.returncode)


def _typed(field: str, ftype: str) -> str:
    base = field.rsplit(".", 1)[-1]
    if base in TYPED:
        return TYPED[base]
    return {"initials": "MV", "number": "42", "datetime": "09:30", "signature": "(signed)"}.get(ftype, "as written")


def scripted_clerk(kit_dir: Path, truth_files: list[Path]) -> None:
    """Stand-in for the clerks' days in the review station, so that the demo's exports hold data.

    It decides through the same library calls the review station makes: marks from the simulator's
    truth file, handwriting typed as plausible values, one blank registration written with a census
    patient's name (so `identities suggest` finds them). One reading in eight is left for a person.
    """
    from .reconcile import link_identity, mark_item, suggest_identities, worklist
    from .store import open_kit
    from .store.decisions import record_review

    truth: dict[tuple[str, str], Any] = {}
    written: set[str] = set()  # sheets where the simulator wrote a name and a birth date
    for path in truth_files:
        for f in json.loads(path.read_text())["files"]:
            for page in f["pages"]:
                for name, t in page["fields"].items():
                    truth[(page["sheet_id"], name)] = t.get("value")
                if all(page["fields"].get(n, {}).get("ink") for n in IDENTITY_FIELDS):
                    written.add(page["sheet_id"])
    kit = open_kit(kit_dir)
    conn = kit.db.conn
    patient = conn.execute("SELECT last_name, first_name, birth_date FROM patients ORDER BY mrn DESC LIMIT 1").fetchone()
    identity = {"last_name": patient[0], "first_name": patient[1],
                "birth_date": "/".join(reversed(patient[2].split("-")))}
    first_blank = conn.execute(
        "SELECT s.sheet_id FROM sheets s JOIN forms f ON f.form_id = s.form_id WHERE f.downtime_mrn IS NOT NULL"
        f" AND s.sheet_id IN ({','.join('?' * len(written))}) ORDER BY s.rowid LIMIT 1", sorted(written)).fetchone()
    rows = conn.execute("SELECT r.reading_id, r.sheet_id, r.field, r.type FROM readings r"
                        " JOIN captures c ON c.capture_id = r.capture_id"
                        " WHERE r.status = 'review' AND c.status = 'read' ORDER BY r.reading_id").fetchall()
    decided = 0
    for n, (reading_id, sheet_id, field, ftype) in enumerate(rows):
        is_identity = first_blank and sheet_id == first_blank[0] and field in identity
        if n % 8 == 7 and not is_identity:
            continue
        if is_identity:
            record_review(conn, reading_id, "transcribe", identity[field], "demo-clerk")
        elif ftype in ("checkbox", "choice", "multichoice"):
            record_review(conn, reading_id, "correct", truth.get((sheet_id, field)), "demo-clerk")
        else:
            record_review(conn, reading_id, "transcribe", _typed(field, ftype), "demo-clerk")
        decided += 1
    linked = 0
    for suggestion in suggest_identities(kit):
        if suggestion["score"] >= 0.9:
            link_identity(kit, suggestion["downtime_mrn"], suggestion["real_mrn"], "demo-clerk",
                          "demo: name and birth date match the census")
            linked += 1
            break
    entered = 0
    for item in worklist(kit):
        if item.resolved and item.status == "pending" and entered < 40:
            mark_item(kit, item.item_id, "entered", "demo-clerk")
            entered += 1
    kit.close()
    print(f"scripted clerk: {decided} readings decided ({len(rows) - decided} left for the review station), "
          f"{linked} downtime MRN linked, {entered} re-entry items marked entered")


def handwriting_assist(kit_dir: Path) -> None:
    """Say what the digit recogniser made of the comb fields left for the review station."""
    from .scan.pipeline import list_readings
    from .store import open_kit
    kit = open_kit(kit_dir)
    try:
        rows = [r for r in list_readings(kit, status="review") if r.get("cells")]
    finally:
        kit.close()
    suggested = [r for r in rows if r.get("suggestion")]
    prefilled = [r for r in suggested if r.get("prefill")]
    partly = [r for r in rows if r.get("partial")]  # also around a box that holds something else (no suggestion)
    print(f"handwriting assist: {len(rows)} comb fields left for the review station, {len(suggested)} with a "
          f"digit suggestion, {len(prefilled)} pre-filled (Enter accepts, typing replaces), {len(partly)} with "
          f"only the sure digits pre-filled (the clerk types the others)"
          + (f", e.g. {prefilled[0]['field']} = {prefilled[0]['suggestion']}" if prefilled else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fallbackkit.demo",
        description="Run the whole job end to end on generated data: print ward packs and blank stock, fill and damage "
                    "them, scan, let a scripted clerk decide, reconcile, export, report, back up; then say where the "
                    "outputs are.")
    parser.add_argument("--out", type=Path, help="an empty or new folder for the outputs (default: a new folder in "
                                                  "the system's temporary folder)")
    args = parser.parse_args(argv)
    if args.out is not None:
        if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
            parser.error(f"--out {args.out}: choose an empty or new folder (the demo makes a kit there)")
        args.out.mkdir(parents=True, exist_ok=True)
        out = args.out.resolve()
    else:
        out = Path(tempfile.mkdtemp(prefix="fallbackkit-demo-"))
    kit = out / "kit"
    print(f"fallbackkit demo in {out}")
    patients, meds = write_census(out / "census", {"3B": 8, "ICU": 4}, seed=7)

    print("\n## Before / during the outage: the downtime coordinator prints")
    run(["init"], kit)
    run(["census", "import", str(patients), "--meds", str(meds)], kit)
    run(["templates", "list"], kit)
    run(["print", "--ward", "all", "--out", str(out / "packs"), "--lang", "fr,nl"], kit)
    run(["print", "registration", "--blank", "3", "--out", str(out / "blank-registration.pdf")], kit)
    run(["print", "lab-request", "--blank", "3", "--out", str(out / "blank-lab-request.pdf")], kit)

    print("\n## On the ward: staff fill the sheets (simulated pen marks, scanner and phone damage)")
    run(["simulate", str(out / "packs" / "ward-3B.pdf"), "--out", str(out / "scans" / "3B"), "--seed", "1",
         "--tier", "mixed", "--digits"], kit)
    run(["simulate", str(out / "blank-registration.pdf"), "--out", str(out / "scans" / "blank"), "--seed", "8"], kit)
    truth_files = []
    for name in ("3B", "blank"):  # the truth files are the simulator's, not scans: keep them out of the drop folder
        target = out / "truth" / f"{name}.json"
        target.parent.mkdir(exist_ok=True)
        shutil.move(out / "scans" / name / "truth.json", target)
        truth_files.append(target)
    print(f"(truth files moved to {out / 'truth'})")

    print("\n## After recovery: the records clerk scans everything back")
    run(["scan", str(out / "scans")], kit)
    run(["scan", str(out / "scans")], kit)  # again: a no-op, nothing doubled
    run(["quarantine", "list"], kit)
    run(["readings", "--status", "review", "--json"], kit, quiet=True)
    run(["identities", "suggest"], kit)

    print("\n## The records office reviews (scripted here; people use `fallbackkit review`)")
    scripted_clerk(kit, truth_files)
    handwriting_assist(kit)
    run(["reconcile"], kit, quiet=True)
    run(["identities", "list"], kit)
    run(["worklist", "--status", "pending"], kit, quiet=True)

    print("\n## IT: exports, report, backup")
    run(["export", "--format", "csv", "--out", str(out / "export" / "csv")], kit)
    run(["export", "--format", "fhir", "--out", str(out / "export" / "fhir")], kit)
    run(["report", "--out", str(out / "report.html")], kit)
    run(["report", "--out", str(out / "report.pdf")], kit)
    run(["backup", "--out", str(out / "backup" / "store.sqlite")], kit)
    run(["check"], kit)
    run(["audit", "verify"], kit)

    cmd = Path(sys.executable).parent / "fallbackkit"
    print(f"""
Done. Outputs are in {out}:
  packs/                ward packs as printed (PDF, French/Dutch)
  blank-*.pdf           blank stock with downtime identifiers
  scans/                the filled, scanned sheets (images); truth/ what the simulator marked
  kit/                  the kit: store.sqlite, archive/ of every scanned file, pages/ (page images, made when first looked at)
  export/csv, export/fhir   re-entry files
  report.html, report.pdf   reconciliation report
  backup/store.sqlite   verified backup of the store
Clerks review with:  {cmd} --kit {kit} users add clerk --role clerk
                     {cmd} --kit {kit} review   (then open http://127.0.0.1:8765)""")


if __name__ == "__main__":
    main()
