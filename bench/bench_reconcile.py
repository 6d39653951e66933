"""Benchmark: reconcile (and the worklist) on a store with 100,000 captures.

The store is synthetic: one real ward pack is printed to get real layouts and forms, then its
forms and sheets are cloned row by row (new ids, same layouts) and captures and readings are
generated DIRECTLY as rows (no images are scanned: scanning speed is the scan stage's benchmark).
About 92% of sheets come back once, 4% twice (half of those with a different mark: a conflict),
the rest never; about 6% of readings wait for a person, a third of those already decided.

    .venv/bin/python bench/bench_reconcile.py            # 100,000 captures (target: under 60 s)
    .venv/bin/python bench/bench_reconcile.py --quick    # 10,000 captures

Then a second station (a copy of the kit taken before any capture) merges the first one: every
capture, reading and review is new to it; then it merges again (nothing new).
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fallbackkit.generate import import_census, print_ward  # noqa: E402
from fallbackkit.generate.sample import write_census  # noqa: E402
from fallbackkit.reconcile import merge_store, reconcile, worklist  # noqa: E402
from fallbackkit.store import init_kit, open_kit  # noqa: E402
from fallbackkit.store.kit import now_iso  # noqa: E402

HANDWRITTEN = {"number", "datetime", "text", "initials", "signature"}


def build(root: Path, captures: int, seed: int = 1, copy_before_scans: Path | None = None) -> tuple[Path, dict]:
    rng = random.Random(seed)
    kit = init_kit(root / "kit", actor="bench")
    patients, meds = write_census(root / "census", wards={"3B": 8}, seed=seed)
    import_census(kit, patients, meds, actor="bench")
    print_ward(kit, "3B", root / "pack.pdf", actor="bench")
    conn = kit.db.conn
    forms = conn.execute("SELECT * FROM forms").fetchall()
    form_cols = [d[0] for d in conn.execute("SELECT * FROM forms").description]
    sheets = conn.execute("SELECT form_id, template, version, page, pages, layout_hash, batch_id FROM sheets"
                          " ORDER BY form_id, page").fetchall()
    layouts = {h: [(f["name"], f["type"]) for f in json.loads(g)["fields"]]
               for h, g in conn.execute("SELECT hash, geometry FROM layouts")}
    sheets_of: dict[str, list[tuple]] = {}
    for s in sheets:
        sheets_of.setdefault(s[0], []).append(s)
    # ~1.04 captures per returned sheet, 92% returned
    per_pack = len(sheets)
    clones = max(1, round(captures / (per_pack * 0.92 * 1.04)))
    now = now_iso()
    form_rows, sheet_rows = [], []
    sheet_list: list[tuple[str, str]] = []  # (sheet_id, layout)
    n = 0
    for c in range(clones):
        for f in forms:
            row = dict(zip(form_cols, f))
            parts = sheets_of[row["form_id"]]
            ids = []
            for _ in parts:
                n += 1
                ids.append(f"B{n:08d}")
            row["form_id"] = ids[0]
            form_rows.append(tuple(row[k] for k in form_cols))
            for sid, (fid, template, version, page, pages, lhash, batch) in zip(ids, parts):
                sheet_rows.append((sid, ids[0], template, version, page, pages, lhash, batch, now))
                sheet_list.append((sid, lhash))
    variants: dict[str, list[list[tuple]]] = {}
    for lhash, fields in layouts.items():
        variants[lhash] = []
        for v in range(4):
            rows = []
            for name, ftype in fields:
                if ftype in HANDWRITTEN:
                    ink = 1 if rng.random() < 0.08 else 0
                    rows.append((name, ftype, '{"tiles_inked": 1}', None, 0.9, "review" if ink else "accepted",
                                 "to transcribe" if ink else None, ink))
                elif ftype == "checkbox":
                    rows.append((name, ftype, '{"boxes": []}', json.dumps(rng.random() < 0.2), 0.97, "accepted", None, None))
                elif ftype == "multichoice":
                    rows.append((name, ftype, '{"boxes": []}', json.dumps(["cbc"] if rng.random() < 0.5 else []), 0.95,
                                 "accepted", None, None))
                else:
                    value = "given" if name.endswith(".status") and rng.random() < 0.6 else None
                    rows.append((name, ftype, '{"boxes": []}', json.dumps(value), 0.96, "accepted", None, None))
            variants[lhash].append(rows)
    with conn:
        conn.executemany(f"INSERT INTO forms ({', '.join(form_cols)}) VALUES ({', '.join('?' * len(form_cols))})",
                         form_rows)
        conn.executemany("INSERT INTO sheets (sheet_id, form_id, template, version, page, pages, layout_hash, batch_id,"
                         " printed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", sheet_rows)
    if copy_before_scans is not None:  # a second station: the same kit, copied before scanning
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copytree(root / "kit", copy_before_scans)
    capture_id = conn.execute("SELECT COALESCE(MAX(capture_id), 0) FROM captures").fetchone()[0]
    reading_id = conn.execute("SELECT COALESCE(MAX(reading_id), 0) FROM readings").fetchone()[0]
    made = 0
    cap_rows, read_rows, review_rows, files = [], [], [], []
    review_at = now

    def flush() -> None:
        with conn:
            conn.executemany("INSERT INTO input_files (sha256, size, kind, pages, status, first_path, started_at)"
                             " VALUES (?, 1, 'png', 1, 'done', ?, ?)", files)
            conn.executemany("INSERT INTO captures (capture_id, file_sha256, page_index, source, status, sheet_id,"
                             " page, captured_at) VALUES (?, ?, 1, 'scan', 'read', ?, ?, ?)", cap_rows)
            conn.executemany("INSERT INTO readings (reading_id, capture_id, sheet_id, field, type, raw, value,"
                             " confidence, status, reason, ink) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", read_rows)
            conn.executemany("INSERT INTO reviews (reading_id, decision, value, actor, at) VALUES (?, ?, ?, 'bench', ?)",
                             review_rows)
        for lst in (cap_rows, read_rows, review_rows, files):
            lst.clear()

    for sid, lhash in sheet_list:
        if made >= captures:
            break
        r = rng.random()
        times = 0 if r < 0.08 else (2 if r < 0.12 else 1)
        for k in range(times):
            if made >= captures:
                break
            capture_id += 1
            made += 1
            sha = f"{capture_id:064x}"
            files.append((sha, f"scans/{capture_id}.png", now))
            cap_rows.append((capture_id, sha, sid, 1, now))
            variant = variants[lhash][rng.randrange(4) if k == 0 or rng.random() < 0.5 else 0]
            for name, ftype, raw, value, conf, status, reason, ink in variant:
                reading_id += 1
                read_rows.append((reading_id, capture_id, sid, name, ftype, raw, value, conf, status, reason, ink))
                if status == "review" and rng.random() < 0.33:
                    review_rows.append((reading_id, "transcribe", json.dumps("12"), review_at))
        if len(read_rows) > 200_000:
            flush()
    flush()
    counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("forms", "sheets", "captures", "readings", "reviews")}
    conn.execute("ANALYZE")
    kit.close()
    return root / "kit", counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 captures instead of 100,000")
    ap.add_argument("--captures", type=int)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    captures = args.captures or (10_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path, counts = build(Path(tmp), captures, copy_before_scans=Path(tmp) / "station-b")
        build_s = time.perf_counter() - t0
        print(f"synthetic store (rows generated directly, no images): {counts} in {build_s:.1f} s")
        kit = open_kit(path)
        times, cpu = [], []
        report = None
        for _ in range(args.runs):
            report = None  # so the peak memory below is one report's, not two
            t, c = time.perf_counter(), time.process_time()
            report = reconcile(kit)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        med = statistics.median(times)
        print(f"reconcile: median {med:.2f} s wall over {args.runs} runs (min {min(times):.2f}, max {max(times):.2f});"
              f" CPU median {statistics.median(cpu):.2f} s (the machine is shared: wall includes waiting);"
              f" {counts['captures'] / med:,.0f} captures/s; {counts['readings'] / med:,.0f} readings/s")
        print(f"  target 100,000 captures < 60 s: {'met' if med * 100_000 / counts['captures'] < 60 else 'NOT met'}"
              f" (extrapolated {med * 100_000 / counts['captures']:.1f} s for 100,000, ratio to target"
              f" {med * 100_000 / counts['captures'] / 60:.2f})")
        print(f"  totals: {report['totals']}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak RSS after reconcile: {peak:.0f} MB")
        again = reconcile(kit)
        print(f"  idempotent (same report twice): {again == report}")
        again = report = None
        t, c = time.perf_counter(), time.process_time()
        items = worklist(kit)
        wl, wl_cpu = time.perf_counter() - t, time.process_time() - c
        print(f"worklist: {len(items):,} items in {wl:.2f} s wall, {wl_cpu:.2f} s CPU (one run)")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak RSS after the worklist: {peak:.0f} MB")
        kit.close()
        items = None
        station = open_kit(Path(tmp) / "station-b")
        t, c = time.perf_counter(), time.process_time()
        first = merge_store(station, path, "bench")
        print(f"merge into a station that scanned nothing: added {first['added']} in {time.perf_counter() - t:.1f} s"
              f" wall, {time.process_time() - c:.1f} s CPU")
        t, c = time.perf_counter(), time.process_time()
        again = merge_store(station, path, "bench")
        print(f"merge again (nothing new: {not again['changed']}): {time.perf_counter() - t:.1f} s wall,"
              f" {time.process_time() - c:.1f} s CPU")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak RSS after merging: {peak:.0f} MB")
        station.close()


if __name__ == "__main__":
    main()
