"""`make demo`: the whole job end to end on generated data, in a temporary kit.

Runs the same commands a coordinator, a clerk and IT would type, prints each one, and says where
the outputs are. Nothing here is special-cased: it is the CLI, run as a subprocess.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from .generate.sample import write_census


def run(args: list[str], kit: Path, ok_codes: tuple[int, ...] = (0,)) -> None:
    shown = " ".join(shlex.quote(a) for a in ["fallbackkit", *args])
    print(f"\n$ {shown}", flush=True)
    env = {**os.environ, "FALLBACKKIT_KIT": str(kit), "FALLBACKKIT_USER": "demo"}
    done = subprocess.run([sys.executable, "-m", "fallbackkit", *args], env=env)
    if done.returncode not in ok_codes:
        print(f"demo: step failed with exit code {done.returncode}: {shown}", file=sys.stderr)
        sys.exit(done.returncode)


def main() -> None:
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
         "--tier", "mixed"], kit)
    run(["simulate", str(out / "blank-registration.pdf"), "--out", str(out / "scans" / "blank"), "--seed", "2"], kit)

    print("\n## After recovery: the records clerk scans everything back")
    run(["scan", str(out / "scans")], kit, ok_codes=(0, 1))
    run(["scan", str(out / "scans")], kit, ok_codes=(0, 1))  # again: a no-op, nothing doubled
    run(["quarantine", "list"], kit)
    run(["reconcile"], kit)
    run(["identities", "list"], kit)
    run(["identities", "suggest"], kit)
    run(["worklist", "--status", "pending"], kit)

    print("\n## IT: exports, report, backup")
    run(["export", "--format", "csv", "--out", str(out / "export" / "csv")], kit)
    run(["export", "--format", "fhir", "--out", str(out / "export" / "fhir")], kit)
    run(["report", "--out", str(out / "report.html")], kit)
    run(["report", "--out", str(out / "report.pdf")], kit)
    run(["backup", "--out", str(out / "backup" / "store.sqlite")], kit)
    run(["check"], kit)
    run(["audit", "verify"], kit)

    print(f"""
Done. Outputs are in {out}:
  packs/                ward packs as printed (PDF, French/Dutch)
  blank-*.pdf           blank stock with downtime identifiers
  scans/                the filled, scanned sheets (images) and truth.json
  kit/                  the kit: store.sqlite, archive/ of every scanned file, crops, page images
  export/csv, export/fhir   re-entry files
  report.html, report.pdf   reconciliation report
  backup/store.sqlite   verified backup of the store
Clerks review with:  fallbackkit --kit {kit} users add clerk --role clerk
                     fallbackkit --kit {kit} review   (then open http://127.0.0.1:8765)""")


if __name__ == "__main__":
    main()
