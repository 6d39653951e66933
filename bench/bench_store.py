"""Cost of the store's safety checks (issue 9): opening a kit (header check, kit id, pending
migrations, private modes, stale temp files), appending HMAC audit rows, and `check` (integrity,
HMAC chain, head, audit coverage of every review) on a kit with many reviewed readings.

    .venv/bin/python bench/bench_store.py [--quick] [--reviews N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fallbackkit.export import check  # noqa: E402
from fallbackkit.generate import import_census, print_ward  # noqa: E402
from fallbackkit.generate.sample import write_census  # noqa: E402
from fallbackkit.store import init_kit, open_kit  # noqa: E402
from fallbackkit.store.decisions import record_review  # noqa: E402
from fallbackkit.store.kit import now_iso  # noqa: E402


def build(tmp: Path, reviews: int):
    kit = init_kit(tmp / "kit", actor="bench")
    patients, meds = write_census(tmp / "census")
    import_census(kit, patients, meds, actor="bench")
    sheet = print_ward(kit, "3B", tmp / "w.pdf", actor="bench").sheets[1]
    conn = kit.db.conn
    with conn:
        conn.execute("INSERT INTO input_files (sha256, size, kind, pages, status, first_path, started_at, finished_at)"
                     " VALUES ('ab', 1, 'png', 1, 'done', 'x.png', ?, ?)", [now_iso(), now_iso()])
        cid = conn.execute(
            "INSERT INTO captures (file_sha256, page_index, source, status, sheet_id, form_id, template, version,"
            " page, pages, orientation, captured_at) VALUES ('ab', 1, 'scan', 'read', ?, ?, ?, ?, ?, ?, 0, ?)",
            [sheet["sheet_id"], sheet["form_id"], sheet["template"], 1, sheet["page"], sheet["pages"], now_iso()]).lastrowid
        conn.executemany("INSERT INTO readings (capture_id, sheet_id, field, type, raw, value, confidence, status)"
                         " VALUES (?, ?, ?, 'text', '{}', 'null', 0.5, 'review')",
                         [(cid, sheet["sheet_id"], f"f{i}") for i in range(reviews)])
    ids = [r[0] for r in conn.execute("SELECT reading_id FROM readings WHERE capture_id = ?", [cid])]
    start = time.perf_counter()
    for i, rid in enumerate(ids):
        record_review(conn, rid, "transcribe", f"value {i}", "clerk")
    append_ms = (time.perf_counter() - start) / len(ids) * 1000
    kit.close()
    return append_ms


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reviews", type=int, default=None)
    args = ap.parse_args()
    reviews = args.reviews or (2000 if args.quick else 20000)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        append_ms = build(tmp, reviews)
        opens = []
        for _ in range(20):
            start = time.perf_counter()
            open_kit(tmp / "kit").close()
            opens.append((time.perf_counter() - start) * 1000)
        kit = open_kit(tmp / "kit")
        checks = []
        for _ in range(3):
            start = time.perf_counter()
            result = check(kit)
            checks.append((time.perf_counter() - start) * 1000)
        kit.close()
    print(json.dumps({"reviews": reviews, "audit_rows": result["audit_rows"],
                      "record_review_ms": round(append_ms, 3),
                      "open_kit_ms_median": round(statistics.median(opens), 2),
                      "check_ms_median": round(statistics.median(checks), 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
