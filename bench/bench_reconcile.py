"""Benchmark: reconcile (and the worklist) on a store with 100,000 captures.

The store is synthetic: one real ward pack is printed to get real layouts and forms, then its
forms and sheets are cloned row by row (new ids, same layouts) and captures and readings are
generated DIRECTLY as rows (no images are scanned: scanning speed is the scan stage's benchmark).
About 92% of sheets come back once, 4% twice (half of those with a different mark: a conflict),
the rest never; about 6% of readings wait for a person, a third of those already decided.

    .venv/bin/python bench/bench_reconcile.py            # 100,000 captures
    .venv/bin/python bench/bench_reconcile.py --quick    # 10,000 captures

The store is built once per size and cached under /tmp/fk-bench-100k (or fk-bench-<n>); each run
works on a copy. Each step runs in its own process so that its peak RSS is its own: reconcile
(the kept summaries), reconcile --full (the full recompute), the worklist, then a second station
(a copy of the kit taken before any capture) merges the first one (every capture, reading and
review is new to it; the first one's summaries brought up to date before, untimed, as its own views
keep them, so that the merge may copy them: reconcile/summary.py copy_kept) and merges again
(nothing new); then each batch command as users run it
(`reconcile --json`, `reconcile --full --json`, `worklist --json`, `report`, `export` csv/json/fhir
(also cut into parts), `check`), in its own process, output to /dev/null. Targets (issue 16): reconcile --full <= 15 s,
worklist <= 10 s, merge (with the merged forms' summaries) <= 30 s, peak RSS <= 500 MB each.
`--only merge,cli_worklist` runs some steps; CPU seconds are the figure to compare on a shared machine.
CPU seconds include the worker processes a step starts (a large kit's `reconcile --full` and
summaries use two, reconcile/parallel.py); peak RSS is that of the largest single process.
"""
from __future__ import annotations

import argparse
import json
import os
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
    sheet_list: list[tuple] = []  # (sheet_id, layout, form_id, template, version, page, pages)
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
                sheet_list.append((sid, lhash, ids[0], template, version, page, pages))
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
                             " form_id, template, version, page, pages, captured_at)"
                             " VALUES (?, ?, 1, 'scan', 'read', ?, ?, ?, ?, ?, ?, ?)", cap_rows)
            conn.executemany("INSERT INTO readings (reading_id, capture_id, sheet_id, field, type, raw, value,"
                             " confidence, status, reason, ink) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", read_rows)
            conn.executemany("INSERT INTO reviews (reading_id, decision, value, actor, at) VALUES (?, ?, ?, 'bench', ?)",
                             review_rows)
        for lst in (cap_rows, read_rows, review_rows, files):
            lst.clear()

    for sid, lhash, fid, template, version, page, pages in sheet_list:
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
            cap_rows.append((capture_id, sha, sid, fid, template, version, page, pages, now))
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


CACHE_FORMAT = 2  # bump when build() changes what it writes


def cache_dir(captures: int) -> Path:
    return Path(tempfile.gettempdir()) / ("fk-bench-100k" if captures == 100_000 else f"fk-bench-{captures}")


def cached_store(captures: int, seed: int = 1) -> tuple[Path, dict]:
    """The synthetic store, built once per size and kept under /tmp/fk-bench-<size>: kit/ (scanned)
    and station-b/ (the same kit copied before any capture). Reruns copy it instead of building."""
    root = cache_dir(captures)
    meta = root / "built.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("format") == CACHE_FORMAT and info.get("seed") == seed:
            return root, info["counts"]
    shutil.rmtree(root, ignore_errors=True)
    building = root.with_name(root.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    t0 = time.perf_counter()
    _, counts = build(building, captures, seed, copy_before_scans=building / "station-b")
    (building / "built.json").write_text(json.dumps({"format": CACHE_FORMAT, "seed": seed, "counts": counts,
                                                     "build_s": round(time.perf_counter() - t0, 1)}))
    building.rename(root)
    print(f"built the synthetic store in {time.perf_counter() - t0:.1f} s (cached in {root})", file=sys.stderr)
    return root, counts


def working_copy(cache: Path, dest: Path, *parts: str) -> Path:
    """A copy of the cached kit (and station) to work on: the cache itself is never changed."""
    for part in parts or ("kit",):
        shutil.copytree(cache / part, dest / part)
    return dest / (parts[0] if parts else "kit")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    """CPU seconds of this process and of the worker processes it has waited for (a full
    reconcile and many summaries use two: reconcile/parallel.py)."""
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + done.ru_utime + done.ru_stime


def _phase(name: str, work: Path, runs: int) -> dict:
    """One measured step, run in its own process so that its peak RSS is its own."""
    import inspect
    out: dict = {"phase": name}
    if name in ("reconcile", "reconcile_full"):
        kit = open_kit(work / "kit")
        full = name == "reconcile_full"
        if full and "full" not in inspect.signature(reconcile).parameters:
            return {"phase": name, "skipped": "reconcile has no full recompute in this version"}
        times, cpu, report = [], [], None
        for _ in range(runs):
            report = None
            t, c = time.perf_counter(), _cpu()
            report = reconcile(kit, full=True) if full else reconcile(kit)
            times.append(time.perf_counter() - t)
            cpu.append(_cpu() - c)
        again = reconcile(kit, full=True) if full else reconcile(kit)
        out.update(wall=times, cpu=cpu, totals=report["totals"], idempotent=again == report)
        kit.close()
    elif name == "summaries":
        try:
            from fallbackkit.reconcile.summary import refresh
        except ImportError:
            return {"phase": name, "skipped": "no kept summaries in this version"}
        kit = open_kit(work / "kit")
        t, c = time.perf_counter(), _cpu()
        n = refresh(kit, everything=True)
        out.update(wall=[time.perf_counter() - t], cpu=[_cpu() - c], forms=n)
        kit.close()
    elif name in ("worklist", "worklist_full"):
        kit = open_kit(work / "kit")
        full = name == "worklist_full"
        if full and "full" not in inspect.signature(worklist).parameters:
            return {"phase": name, "skipped": "the worklist has no kept items in this version"}
        t, c = time.perf_counter(), _cpu()
        n = sum(1 for _ in (worklist(kit, full=True) if full else worklist(kit)))
        out.update(wall=[time.perf_counter() - t], cpu=[_cpu() - c], items=n)
        kit.close()
    elif name == "merge":
        station = open_kit(work / "station-b")
        t, c = time.perf_counter(), _cpu()
        first = merge_store(station, work / "kit", "bench")
        out.update(wall=[time.perf_counter() - t], cpu=[_cpu() - c], added=first["added"])
        t, c = time.perf_counter(), _cpu()
        again = merge_store(station, work / "kit", "bench")
        out.update(again_wall=time.perf_counter() - t, again_cpu=_cpu() - c,
                   again_changed=again["changed"])
        try:
            from fallbackkit.reconcile.summary import refresh
        except ImportError:
            refresh = None
        if refresh is not None:  # what `fallbackkit merge` does next: the merged forms' summaries
            t, c = time.perf_counter(), _cpu()
            out.update(summaries_forms=refresh(station), summaries_wall=time.perf_counter() - t,
                       summaries_cpu=_cpu() - c)
        station.close()
    elif name in CLI_PHASES:  # the command as users run it, output to /dev/null
        import subprocess
        args, = CLI_PHASES[name]
        args = [a.replace("OUT", str(work / f"out-{name}")) for a in args]
        t, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([sys.executable, "-m", "fallbackkit", "--kit", str(work / "kit"), "--quiet",
                               "--user", "bench", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode and not (name == "cli_check" and done.returncode == 7):
            return {"phase": name, "skipped": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
        # check exits 7 on the synthetic store: its reviews were written as rows, with no audit row
        # each, and check says so (the right answer); it has done all its work by then, so it is timed
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return {"phase": name, "wall": [time.perf_counter() - t], "cpu": [cpu], "peak_mb": round(after.ru_maxrss / 1024)}
    out["peak_mb"] = round(_peak_mb())
    out["workers_peak_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return out


# Each command as users run it (its own process; peak RSS of that process). Exports and the report
# write into a folder of the working copy; FHIR without page images (the synthetic store has none).
CLI_PHASES = {
    "cli_reconcile": (["reconcile", "--json"],),
    "cli_reconcile_full": (["reconcile", "--full", "--json"],),
    "cli_worklist": (["worklist", "--json"],),
    "cli_report": (["report", "--out", "OUT.html"],),
    "cli_export_csv": (["export", "--format", "csv", "--out", "OUT"],),
    "cli_export_json": (["export", "--format", "json", "--out", "OUT.json"],),
    "cli_export_fhir": (["export", "--format", "fhir", "--out", "OUT", "--page-images", "none"],),
    "cli_export_fhir_parts": (["export", "--format", "fhir", "--out", "OUT", "--page-images", "none",
                               "--max-entries", "8"],),
    "cli_check": (["check"],),
}
CLI_LABELS = {"cli_reconcile": "`reconcile --json`", "cli_reconcile_full": "`reconcile --full --json`",
              "cli_worklist": "`worklist --json`", "cli_report": "`report --out report.html`",
              "cli_export_csv": "`export --format csv`", "cli_export_json": "`export --format json`",
              "cli_export_fhir": "`export --format fhir --page-images none`",
              "cli_export_fhir_parts": "`export --format fhir --page-images none --max-entries 8` (a patient's bundle held)",
              "cli_check": "`check` (exits 7 here: the synthetic reviews have no audit rows)"}
CLI_TARGETS = {"cli_reconcile_full": 15.0, "cli_worklist": 10.0}


def _run_phase(name: str, work: Path, runs: int) -> dict:
    import subprocess
    done = subprocess.run([sys.executable, __file__, "--phase", name, "--work", str(work), "--runs", str(runs)],
                          capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{name} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 captures instead of 100,000")
    ap.add_argument("--captures", type=int)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cache", help="use this copy of the cached store (kit/ and station-b/, e.g. one whose summaries"
                                    " are already computed) instead of /tmp/fk-bench-<size>; it is copied, never changed")
    ap.add_argument("--only", help="comma-separated steps to run (default: all), e.g. merge,cli_reconcile_full")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(_phase(args.phase, Path(args.work), args.runs)))
        return
    captures = args.captures or (10_000 if args.quick else 100_000)
    if args.cache:
        cache = Path(args.cache)
        counts = json.loads((cache / "built.json").read_text())["counts"]
    else:
        cache, counts = cached_store(captures)
    print(f"synthetic store (rows generated directly, no images, cached in {cache}): {counts}")
    print(f"load average at start: {_load()} (2 cores, shared)")
    scale = 100_000 / counts["captures"]
    only = set(args.only.split(",")) if args.only else None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        working_copy(cache, work, "kit", "station-b")
        print(f"working copy in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        open_kit(work / "kit").close()  # migrations of this version, if the cached store lacks them
        open_kit(work / "station-b").close()
        print(f"open (and migrate) both stores: {time.perf_counter() - t:.1f} s")
        if only is None or "merge" in only:  # the other station's views keep its summaries current
            try:
                from fallbackkit.reconcile.summary import refresh
            except ImportError:
                refresh = None
            if refresh is not None:
                t = time.perf_counter()
                source = open_kit(work / "kit")
                n = refresh(source)
                source.close()
                print(f"the merged station's own summaries brought up to date ({n:,} forms): {time.perf_counter() - t:.1f} s")
        steps = [("summaries", None), ("reconcile", None), ("reconcile_full", None), ("worklist", None),
                 ("worklist_full", None), ("merge", 30.0)] + [(n, CLI_TARGETS.get(n)) for n in CLI_PHASES]
        for name, target in steps:
            if only is not None and name not in only:
                continue
            r = _run_phase(name, work, args.runs if name.startswith("reconcile") else 1)
            if "skipped" in r:
                print(f"{name}: skipped ({r['skipped']})")
                continue
            med = statistics.median(r["wall"])
            label = {"summaries": "compute every form's summary (once, after migrating an older store)",
                     "reconcile": "library reconcile() (kept summaries, whole report in memory)",
                     "reconcile_full": "library reconcile(full=True) (whole report in memory)",
                     "worklist": "library worklist() (kept items, a list of WorkItem)",
                     "worklist_full": "worklist built from the readings",
                     "merge": "merge into a station that scanned nothing", **CLI_LABELS}[name]
            line = (f"{label}: median {med:.2f} s wall over {len(r['wall'])} run(s), CPU {statistics.median(r['cpu']):.2f} s"
                    f" (with its worker processes'); peak RSS {r['peak_mb']} MB"
                    + (f" (each worker at most {r['workers_peak_mb']} MB)" if r.get("workers_peak_mb") else "")
                    + f"; load {_load()}")
            if target:
                line += (f"; target {target:.0f} s at 100k: {'met' if med * scale <= target else 'NOT met'}"
                         f" ({med * scale:.1f} s extrapolated)")
            print(line)
            if name.startswith("reconcile"):
                print(f"  totals: {r['totals']}; idempotent: {r['idempotent']}")
            elif name.startswith("worklist"):
                print(f"  {r['items']:,} items")
            elif name == "merge":
                print(f"  added {r['added']}")
                print(f"merge again (nothing new: {not r['again_changed']}): {r['again_wall']:.1f} s wall,"
                      f" {r['again_cpu']:.1f} s CPU")
                if "summaries_wall" in r:
                    print(f"  then the merged forms' summaries ({r['summaries_forms']:,} forms):"
                          f" {r['summaries_wall']:.1f} s wall, {r['summaries_cpu']:.1f} s CPU; merge + summaries"
                          f" {r['wall'][0] + r['summaries_wall']:.1f} s wall, {r['cpu'][0] + r['summaries_cpu']:.1f} s CPU"
                          f" (what `fallbackkit merge` does; target 30 s)")
        print("peak RSS target: 500 MB for each")


if __name__ == "__main__":
    main()
