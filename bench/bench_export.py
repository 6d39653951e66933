"""Export speed on a big store: FHIR bundles, CSV, JSON, the PDF and HTML reports, backup and check.

The store is built by printing ward packs and writing one read capture per sheet with a reading
per printed field (as the scan stage stores them), most handwriting transcribed by a clerk, a
tenth left under review. Scanning itself is measured in bench_scan_speed.py; this measures what
IT waits for after recovery. Figures are medians of several runs (the machine is shared). Then
the FHIR export once more with N pages given a real archived original: what making their page
images on demand costs per page, and that the process does not grow by the images' size.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fallbackkit.export import backup, check, export_fhir, export_table, write_report
from fallbackkit.generate import import_census, print_ward
from fallbackkit.generate.sample import write_census
from fallbackkit.store import init_kit
from fallbackkit.store.kit import now_iso

HAND = {"time": "08:15", "temperature": "37.1", "pulse": "80", "bp_systolic": "120", "bp_diastolic": "75",
        "resp_rate": "16", "spo2": "97", "pain": "1", "initials": "AB", "obs_date": "2026-11-28",
        "mar_date": "2026-11-28", "collected_at": "2026-11-28 07:30"}


def _value(name: str, ftype: str, rng: random.Random, options: list[str]):
    base = name.rsplit(".", 1)[-1]
    if ftype == "checkbox":
        return rng.random() < 0.3
    if ftype == "choice":
        return rng.choice(options) if rng.random() < 0.6 else None
    if ftype == "multichoice":
        return sorted(rng.sample(options, 2))
    if base in HAND and rng.random() < 0.7:
        return HAND[base]
    return None


def build_store(tmp: Path, beds: int, seed: int = 5):
    kit = init_kit(tmp / "kit", actor="bench")
    wards = {f"W{i}": beds // 4 for i in range(4)}
    patients, meds = write_census(tmp / "census", wards, seed=seed)
    import_census(kit, patients, meds, actor="bench")
    for ward in wards:
        print_ward(kit, ward, tmp / f"{ward}.pdf", actor="bench")
    rng = random.Random(seed)
    conn = kit.db.conn
    layouts = {h: json.loads(g) for h, g in conn.execute("SELECT hash, geometry FROM layouts")}
    sheets = conn.execute("SELECT sheet_id, form_id, template, version, page, pages, layout_hash FROM sheets").fetchall()
    at = now_iso()
    with conn:
        for n, (sid, fid, tpl, ver, page, pages, lh) in enumerate(sheets):
            if rng.random() < 0.08:  # never returned
                continue
            sha = hashlib.sha256(f"{sid}".encode()).hexdigest()
            conn.execute("INSERT INTO input_files (sha256, size, kind, pages, status, archive_path, first_path,"
                         " started_at, finished_at) VALUES (?, 1, 'png', 1, 'done', ?, ?, ?, ?)",
                         [sha, f"archive/{sha[:2]}/{sha}.png", f"scans/scan-{n:05d}.png", at, at])
            cid = conn.execute(
                "INSERT INTO captures (file_sha256, page_index, source, status, sheet_id, form_id, template, version,"
                " page, pages, orientation, fit_error_mm, image_path, captured_at) VALUES (?, 1, 'scan', 'read', ?,"
                " ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                [sha, sid, fid, tpl, ver, page, pages, round(rng.gammavariate(2, 0.15), 3),
                 f"pages/{sha[:2]}/{sha}-p1.png", at]).lastrowid
            for f in layouts[lh]["fields"]:
                options = [o["value"] for o in f.get("options", [])]
                value = _value(f["name"], f["type"], rng, options)
                hand = f["type"] not in ("checkbox", "choice", "multichoice")
                status = "review" if (hand and value is not None) or rng.random() < 0.02 else "accepted"
                rid = conn.execute(
                    "INSERT INTO readings (capture_id, sheet_id, field, type, raw, value, confidence, status,"
                    " reason) VALUES (?, ?, ?, ?, '{}', ?, 0.9, ?, ?)",
                    [cid, sid, f["name"], f["type"], json.dumps(None if hand else value), status,
                     "to transcribe" if status == "review" else None]).lastrowid
                if status == "review" and rng.random() < 0.9:
                    conn.execute("INSERT INTO reviews (reading_id, decision, value, actor, at) VALUES (?, ?, ?,"
                                 " 'clerk', ?)", [rid, "transcribe" if hand else "correct", json.dumps(value), at])
    return kit, len(sheets)


def archive_pages(kit, n: int, dpi: int = 200) -> list[int]:
    """Give n of the store's read captures a real archived original (a 200 dpi A4 grey page: paper
    grain and printed lines, JPEG) and the transform of a page scanned straight, so that the FHIR
    export makes their page images as it does on a scanned kit (scan/pageview.py)."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(7)
    conn = kit.db.conn
    rows = conn.execute("SELECT c.capture_id, f.sha256 FROM captures c JOIN input_files f ON f.sha256 ="
                        " c.file_sha256 WHERE c.status = 'read' ORDER BY c.capture_id LIMIT ?", [n]).fetchall()
    ppm = dpi / 25.4
    transform = json.dumps([[ppm, 0, 0], [0, ppm, 0], [0, 0, 1]])
    h, w = round(297 * ppm), round(210 * ppm)
    base = np.clip(rng.normal(236, 5, (h, w)), 0, 255).astype(np.uint8)
    base[200:h - 200:70, 120:w - 120] = 30
    with conn:
        for cid, sha in rows:  # archived as a scanner's JPEG (quality 85)
            page = base.copy()
            page[rng.integers(300, h - 300):, rng.integers(100, 600)::97] = 40  # each page its own
            archive = f"archive/{sha[:2]}/{sha}.jpg"
            path = kit.path / archive
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), page, [cv2.IMWRITE_JPEG_QUALITY, 85])
            conn.execute("UPDATE input_files SET archive_path = ?, kind = 'jpeg' WHERE sha256 = ?", [archive, sha])
            conn.execute("UPDATE captures SET transform = ?, dpi = ?, width_px = ?, height_px = ? WHERE capture_id = ?",
                         [transform, dpi, w, h, cid])
    return [cid for cid, _ in rows]


def page_image_costs(kit, tmp: Path, n: int) -> None:
    """The FHIR export with page images made on demand: CPU per page made (first export, nothing
    cached) against the same export with every page image cached, and the process's peak RSS
    before and after (one patient's bundle at a time: the images of a large export are never all
    held)."""
    import resource
    import shutil
    try:
        from fallbackkit.scan.pageview import page_image_png  # noqa: F401
    except ImportError:
        print("page images on demand: not in this version")
        return
    ids = archive_pages(kit, n)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    first = timed(lambda: export_fhir(kit, tmp / "fhir-pages"), 1)[1]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cached = timed(lambda: export_fhir(kit, tmp / "fhir-pages"), 1)[1]
    import tracemalloc
    heap = {}
    for mode in ("binary", "none"):  # the Python heap's peak with and without the images in the bundles
        tracemalloc.start()
        export_fhir(kit, tmp / f"fhir-pages-{mode}", page_images=mode)
        heap[mode] = tracemalloc.get_traced_memory()[1] / 1024 / 1024
        tracemalloc.stop()
    made = [kit.path / p for (p,) in kit.db.conn.execute(
        f"SELECT image_path FROM captures WHERE capture_id IN ({','.join('?' * len(ids))})", ids)
        if (kit.path / p).is_file()]  # the pages of items exported (the others wait for review)
    size = sum(p.stat().st_size for p in made)
    shutil.rmtree(kit.path / "pages", ignore_errors=True)
    print(f"FHIR with page images made on demand (binary): {len(made)} of {len(ids)} pages given an original were "
          f"exported: first export {first:.2f} s CPU, again (cached) {cached:.2f} s: "
          f"{1000 * (first - cached) / max(len(made), 1):.1f} ms CPU per page image made; the images "
          f"{size / 1024 / 1024:.1f} MiB in all (base64 {size * 4 / 3 / 1024 / 1024:.1f} MiB), "
          f"peak RSS {peak:.0f} -> {after:.0f} MiB; Python heap peak of an export {heap['binary']:.1f} MiB with the images, {heap['none']:.1f} MiB"
          " without (one patient's images held at a time, not all)")


def _check(kit) -> None:
    """`check` timed as it runs; this bench's store writes its reviews without audit rows (build_store
    inserts them directly), which check refuses at its end: the time is still what check takes."""
    from fallbackkit.errors import IntegrityFailure
    try:
        check(kit)
    except IntegrityFailure:
        pass


def timed(fn, runs: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds (CPU time is the steadier figure on a shared machine)."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--page-images", type=int, default=400, metavar="N",
                        help="pages given a real archived original for the page-image export figure")
    args = parser.parse_args()
    beds, runs = (40, 2) if args.quick else (200, 3)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        kit, n_sheets = build_store(tmp, beds)
        built = time.perf_counter() - start
        readings = kit.db.conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        print(f"== export on a store of {beds} beds: {n_sheets} sheets printed, {readings} readings "
              f"(built in {built:.1f} s) ==")
        fhir = {}

        def do_fhir():
            fhir.update(export_fhir(kit, tmp / "fhir"))
        rows = [("FHIR bundles", timed(do_fhir, runs)),
                ("CSV", timed(lambda: export_table(kit, "csv", tmp / "csv"), runs)),
                ("JSON", timed(lambda: export_table(kit, "json", tmp / "export.json"), runs)),
                ("report PDF", timed(lambda: write_report(kit, tmp / "report.pdf"), runs)),
                ("report HTML", timed(lambda: write_report(kit, tmp / "report.html"), runs)),
                ("backup (verified)", timed(lambda: backup(kit, tmp / "backup.sqlite", "bench"), runs)),
                ("check", timed(lambda: _check(kit), runs))]
        print(f"{'':<20} {'wall':>8} {'cpu':>8}   readings/s (cpu)")
        for name, (wall, cpu) in rows:
            print(f"{name:<20} {wall:7.2f}s {cpu:7.2f}s   {readings / max(cpu, 1e-6):9.0f}")
        print(f"FHIR: {fhir['bundles']} bundles, {fhir['resources']} resources, {fhir['pending']} items pending; "
              f"{fhir['resources'] / rows[0][1][1]:.0f} resources per CPU second")
        page_image_costs(kit, tmp, args.page_images)
        print(f"sizes: report.pdf {(tmp / 'report.pdf').stat().st_size / 1024:.0f} KiB, "
              f"report.html {(tmp / 'report.html').stat().st_size / 1024:.0f} KiB, "
              f"backup {(tmp / 'backup.sqlite').stat().st_size / 1024 / 1024:.1f} MiB")
        kit.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
