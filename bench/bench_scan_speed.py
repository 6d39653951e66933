"""Scan speed: pages per second per core, reading every field of filled MAR sheets, against the floor.

For PNG, JPEG, TIFF G4 and scanner-PDF input at 200 and 300 dpi:
- floor: only decoding the same files into grey pages (ingest), pages/s on one core;
- scan: the whole pipeline on one core (`scan_paths(workers=0)`: hash, archive, decode, QR, marks,
  every field, kept crops written, store transactions), pages/s;
- ratio scan time / floor time, and the median per-page cost of decoding and of reading.
Then pages as they come back (issue 12): a whole ward pack (mixed templates), office scanner
damage, about half the handwriting fields inked, as JPEG, with the same columns, and what the
visibility check costs (engine read time with and without it).
Then the CPU cost per page of each stage of the page path (decode, code, marks, the page's dark
share, mark boxes, handwriting, digits, the visibility check's outline measures, review crops,
store), for both kinds of page; the page image is no longer made by the scan (its rows read 0),
so the cost of a page view made on demand (first view, cached view) follows, per input kind. Then 1 vs 2 worker processes on a larger scanner-PDF batch, and the peak
RSS of a worker.

Targets (issue 3): >= 30 pages/s per core at 200 dpi, <= 2x the floor, near-linear with workers,
peak RSS < 400 MiB per worker. The machine is shared: figures are medians of runs; expect noise.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Figures per core, as a worker process runs (scan/workers.py): one BLAS thread, set before NumPy is
# imported. In-process scans (workers=0) otherwise start a BLAS thread per core for the digit
# network, whose spinning process_time counts and spreads over every stage (ward pack with digits
# 128 ms/page with two BLAS threads, 68 ms with one).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pypdfium2 as pdfium  # noqa: E402
from PIL import Image  # noqa: E402

from fallbackkit.generate import import_census, print_ward, sheet_geometry  # noqa: E402
from fallbackkit.generate.sample import write_census  # noqa: E402
from fallbackkit.scan import engine  # noqa: E402
from fallbackkit.scan.ingest import iter_pages  # noqa: E402
from fallbackkit.scan.pipeline import _geometry_lookup, scan_paths  # noqa: E402
from fallbackkit.scan.simulate import fill_page  # noqa: E402
from fallbackkit.store import init_kit, open_kit  # noqa: E402

cv2.setNumThreads(1)  # OpenCV on one thread too (CPU per page the same with two, 2026-12-01: kept for one core's figures)
try:  # the memory a page frees kept for the next page, as in the scan workers (decode and read figures too)
    from fallbackkit.scan.workers import keep_freed_memory
    keep_freed_memory()
except ImportError:  # an older version of the code (before/after comparisons)
    pass

FORMATS = ("png", "jpeg", "tiff-g4", "scanner-pdf")


def render(pdf_path: Path, dpi: int, indexes: list[int], kit, sheet_ids: list[str]) -> list[np.ndarray]:
    """The MAR pages rendered at dpi and filled with pen marks and handwriting (`simulate`'s filler),
    so that reading costs what it costs on real returns (marks, ink, crops to keep)."""
    rng = np.random.default_rng(dpi)
    pdf = pdfium.PdfDocument(str(pdf_path))
    try:
        out = []
        for i, sheet_id in zip(indexes, sheet_ids):
            page = pdf[i]
            clean = np.array(page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L"))
            page.close()
            filled, _ = fill_page(clean, sheet_geometry(kit, sheet_id), dpi, rng)
            out.append(filled)
        return out
    finally:
        pdf.close()


def cover_pages(pdf_path: Path, sheets: int) -> int:
    """How many pages the pack's cover takes before its sheets (a long cover takes more than one)."""
    pdf = pdfium.PdfDocument(str(pdf_path))
    try:
        return len(pdf) - sheets
    finally:
        pdf.close()


def check_templates(pages: list[np.ndarray], kit, template: str) -> None:
    """Each rendered page carries a sheet of this template (its QR code says so): the figures are
    for the pages they name."""
    from fallbackkit.scan.simulate import identify
    for i, page in enumerate(pages):
        sp = identify(page, kit.kit_id, kit.secret)
        got = None if sp is None else sheet_geometry(kit, sp.sheet_id)["template"]
        if got != template:
            raise SystemExit(f"bench: page {i} is {got!r}, not {template!r}: the pack's pages moved")


def write_format(folder: Path, fmt: str, pages: list[np.ndarray], dpi: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        for i, p in enumerate(pages):
            Image.fromarray(p).save(folder / f"p{i:03d}.png", format="PNG", dpi=(dpi, dpi))
    elif fmt == "jpeg":
        for i, p in enumerate(pages):
            Image.fromarray(p).save(folder / f"p{i:03d}.jpg", format="JPEG", quality=85, dpi=(dpi, dpi))
    elif fmt == "tiff-g4":
        frames = [Image.fromarray(np.where(p > 160, 255, 0).astype(np.uint8)).convert("1") for p in pages]
        frames[0].save(folder / "batch.tif", format="TIFF", compression="group4", save_all=True,
                       append_images=frames[1:], dpi=(dpi, dpi))
    else:
        frames = [Image.fromarray(p) for p in pages]
        frames[0].save(folder / "batch.pdf", format="PDF", save_all=True, append_images=frames[1:], resolution=dpi)


def floor_pps(folder: Path) -> tuple[float, float, float]:
    """Decode only: (pages per CPU second, pages per wall second, median CPU ms per page)."""
    times = []
    start, cpu = time.perf_counter(), time.process_time()
    for f in sorted(folder.iterdir()):
        t = time.process_time()
        for _ in iter_pages(f):
            times.append((time.process_time() - t) * 1000)
            t = time.process_time()
    return (len(times) / (time.process_time() - cpu), len(times) / (time.perf_counter() - start),
            statistics.median(times))


def read_ms(kit, folder: Path) -> tuple[float, int]:
    """Median ms for engine.read_page alone, and fields read per page."""
    from fallbackkit.generate import sheet_geometry
    geometry_for = _geometry_lookup(kit, sheet_geometry)
    times, fields = [], []
    for f in sorted(folder.iterdir()):
        for page in iter_pages(f):
            t = time.process_time()
            result = engine.read_page(page.image, kit_id=kit.kit_id, secret=kit.secret, geometry_for=geometry_for)
            times.append((time.process_time() - t) * 1000)
            fields.append(len(result.readings))
    return statistics.median(times), int(statistics.median(fields))


def scan_once(base_kit: Path, work: Path, folder: Path, workers: int) -> tuple[float, int, float, float]:
    """A fresh copy of the printed kit scans the folder:
    (pages per wall second, pages, peak worker RSS MiB, pages per CPU second of this process)."""
    dest = work / f"kit-{time.monotonic_ns()}"
    shutil.copytree(base_kit, dest)
    kit = open_kit(dest)
    try:
        cpu = time.process_time()
        summary = scan_paths(kit, [folder], workers=workers, progress=False, actor="bench")
        cpu = time.process_time() - cpu
    finally:
        kit.close()
        shutil.rmtree(dest)
    pages = summary.pages_read + summary.pages_quarantined
    if summary.failed or summary.pages_quarantined:
        print(f"  warning: {len(summary.failed)} failed files, {summary.pages_quarantined} quarantined pages",
              file=sys.stderr)
    return pages / summary.seconds, pages, summary.peak_worker_rss_mib, pages / cpu


def render_ward_pack(pdf_path: Path, dpi: int, kit) -> list[np.ndarray]:
    """Every sheet of a ward pack (mixed templates: registration, lab, MAR, vitals), filled with
    marks and about half the handwriting fields inked, then damaged as an office scanner does."""
    from fallbackkit.scan.degrade import degrade
    from fallbackkit.scan.simulate import identify
    rng = np.random.default_rng(dpi + 1)
    pdf = pdfium.PdfDocument(str(pdf_path))
    try:
        out = []
        for page in pdf:
            clean = np.array(page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L"))
            page.close()
            sp = identify(clean, kit.kit_id, kit.secret)
            if sp is None:  # the cover page
                continue
            filled, _ = fill_page(clean, sheet_geometry(kit, sp.sheet_id), dpi, rng, writing=0.5)
            out.append(degrade(filled, "office", rng, src_dpi=dpi))
        return out
    finally:
        pdf.close()


class _NoDigits:
    """The engine without the digit recogniser's suggestions (scan/digits.py), to say what the
    handwriting digits cost: no comb cell is classified."""

    class _Batch:
        def add(self, *args, **kwargs):
            return []

        def finish(self):
            pass

    def __enter__(self):
        self.saved = engine.digits.Batch
        engine.digits.Batch = self._Batch
        return self

    def __exit__(self, *exc):
        engine.digits.Batch = self.saved


class _NoVisibility:
    """The engine without the visibility check (issue 12), to say what the check costs: every
    outline measured as fully seen."""

    def __enter__(self):
        from fallbackkit.scan import read
        self.read, self.saved = read, read._edge_evidence
        read._edge_evidence = lambda P, *a, vertical=True, **k: np.ones((len(P), 4 if vertical else 2))
        # a page's handwriting outlines, measured together (older code: none)
        self.saved_strips = getattr(read, "_weakest_of_strips", None)
        if self.saved_strips is not None:
            read._weakest_of_strips = lambda strips, ppm: np.ones(sum(1 if s.ndim == 2 else len(s) for s in strips))
        return self

    def __exit__(self, *exc):
        self.read._edge_evidence = self.saved
        if self.saved_strips is not None:
            self.read._weakest_of_strips = self.saved_strips


# The page path's stages, timed in CPU seconds (time.process_time) by wrapping the functions that do
# them: (label, module path, attribute). Rows marked "of which" run inside the row above them.
STAGES = (
    ("hash + archive", "fallbackkit.scan.pipeline", "_prepare"),
    ("decode", "fallbackkit.scan.ingest", "PageReader.page"),
    ("QR code", "fallbackkit.scan.locate", "find_codes"),
    ("corner marks", "fallbackkit.scan.locate", "locate_with_code"),
    ("page image warp (on demand now)", "fallbackkit.scan.engine", "_page_image"),  # (older code)
    ("page image warp (on demand now)", "fallbackkit.scan.engine", "page_image"),
    ("page dark share (sampled)", "fallbackkit.scan.engine", "dark_fraction"),
    ("mark boxes", "fallbackkit.scan.read", "measure_boxes"),
    ("handwriting", "fallbackkit.scan.read", "measure_handwritten"),
    ("handwriting", "fallbackkit.scan.read", "measure_handwritten_many"),
    ("digits (digitmodel)", "fallbackkit.scan.digits", "Batch.add"),
    ("digits forward pass", "fallbackkit.scan.digits", "Batch.finish"),
    ("visibility (outlines)", "fallbackkit.scan.read", "_edge_evidence"),
    ("visibility (outlines)", "fallbackkit.scan.read", "_weakest_of_strips"),
    ("decide + review crops", "fallbackkit.scan.engine", "_decide_field"),
    ("PNG page image (on demand now)", "fallbackkit.scan.page_task", "viewing_copy"),
    ("PNG page image (on demand now)", "fallbackkit.scan.page_task", "viewing_png"),
    ("PNG files written", "fallbackkit.scan.page_task", "_save_png"),  # now the kept crops (signatures) only
    ("result dicts + JSON", "fallbackkit.scan.page_task", "_result_dict"),
    ("store (SQLite)", "fallbackkit.scan.pipeline", "store_page"),
    ("form summaries (reconcile)", "fallbackkit.reconcile.summary", "refresh"),
)
NESTED = {"visibility (outlines)"}  # inside mark boxes and handwriting


def page_view_costs(base_kit: Path, work: Path, folders: dict[str, Path], per_folder: int = 20) -> None:
    """What the page image costs now that it is made when someone looks at it (scan/pageview.py):
    CPU ms per page for the first view (decode the archived original, warp, viewing copy, PNG,
    cache file) and for a second view (the cached file read), after an in-process scan."""
    try:
        from fallbackkit.scan.pageview import page_image_png
    except ImportError:  # an older version of the code: the scan made every page image
        print("page view on demand: not in this version (the scan stores every page image)")
        return
    print(f"page view on demand (made when looked at, then cached), CPU ms per page, up to {per_folder} pages each:")
    print(f"  {'input':<22} {'first view':>10} {'cached':>8}")
    for name, folder in folders.items():
        dest = work / f"kit-views-{time.monotonic_ns()}"
        shutil.copytree(base_kit, dest)
        kit = open_kit(dest)
        try:
            scan_paths(kit, [folder], workers=0, progress=False, actor="bench")
            ids = [r[0] for r in kit.db.conn.execute(
                "SELECT capture_id FROM captures ORDER BY capture_id LIMIT ?", [per_folder])]
            first, again = [], []
            for cid in ids:
                t = time.process_time()
                page_image_png(kit.db.conn, kit.path, cid)
                first.append(1000 * (time.process_time() - t))
                t = time.process_time()
                page_image_png(kit.db.conn, kit.path, cid)
                again.append(1000 * (time.process_time() - t))
        finally:
            kit.close()
            shutil.rmtree(dest)
        print(f"  {name:<22} {statistics.median(first):>10.1f} {statistics.median(again):>8.2f}", flush=True)


class StageTimer:
    """CPU ms per page for each stage of the in-process page path (STAGES), outermost calls only (a
    stage called inside itself is counted once)."""

    def __init__(self):
        self.cpu = dict.fromkeys([label for label, _, _ in STAGES], 0.0)
        self.saved: list[tuple[object, str, object]] = []

    def __enter__(self):
        import importlib
        for label, module, attr in STAGES:
            owner = importlib.import_module(module)
            *path, name = attr.split(".")
            for part in path:
                owner = getattr(owner, part)
            original = getattr(owner, name, None)
            if original is None:  # an older version of the code (before/after comparisons)
                continue
            self.saved.append((owner, name, original))
            setattr(owner, name, self._timed(label, original))
        return self

    def _timed(self, label, fn):
        depth = [0]

        def timed(*args, **kwargs):
            if depth[0]:
                return fn(*args, **kwargs)
            depth[0] += 1
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[label] += time.process_time() - t
                depth[0] -= 1
        return timed

    def __exit__(self, *exc):
        for owner, name, original in reversed(self.saved):
            setattr(owner, name, original)


def stage_table(base_kit: Path, work: Path, folder: Path, runs: int) -> tuple[dict[str, float], float]:
    """Median CPU ms per page of each stage over runs of an in-process scan, and of the whole scan."""
    per_run, totals = [], []
    for _ in range(runs):
        with StageTimer() as timer:
            cpu = time.process_time()
            _, pages, _, _ = scan_once(base_kit, work, folder, workers=0)
            cpu = time.process_time() - cpu
        per_run.append({k: 1000 * v / pages for k, v in timer.cpu.items()})
        totals.append(1000 * cpu / pages)
    return {k: statistics.median(r[k] for r in per_run) for k in per_run[0]}, statistics.median(totals)


def print_stages(name: str, stages: dict[str, float], total: float) -> None:
    print(f"CPU ms per page by stage, {name} (in-process scan; total {total:.1f} ms = {1000 / total:.1f} pages per CPU second):")
    for label, ms in stages.items():
        print(f"  {('  of which ' + label) if label in NESTED else label:<34} {ms:6.1f}")
    counted = sum(ms for label, ms in stages.items() if label not in NESTED)
    print(f"  {'the rest (glue, result, JSON)':<34} {total - counted:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="8 pages per set, 1 run")
    parser.add_argument("--ward-only", action="store_true",
                        help="only the ward pack as it comes back (no MAR formats, no workers)")
    args = parser.parse_args()
    n_pages = 8 if args.quick else 30
    runs = 1 if args.quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        kit = init_kit(tmp / "kit", actor="bench")
        beds = max(4, n_pages // 2 + 1)
        patients, meds = write_census(tmp / "census", {"W": beds}, seed=3)
        import_census(kit, patients, meds, actor="bench")
        result = print_ward(kit, "W", tmp / "ward.pdf", actor="bench", one_sided=True)
        # one-sided: the PDF starts with the pack's cover (one page or more: 2 from about 16 beds), then one
        # page per sheet in order (no blank backs)
        cover = cover_pages(tmp / "ward.pdf", len(result.sheets))
        mar = [cover + i for i, s in enumerate(result.sheets) if s["template"] == "mar"][:n_pages]
        # (the ward pack of that census, all templates, is the second kind of page, below)
        mar_ids = [result.sheets[i - cover]["sheet_id"] for i in mar]
        print(f"== scan speed: {len(mar)} filled MAR pages per set, median of {runs} run(s), one core unless said ==")
        print("pages per CPU second of one core (wall-clock rate in brackets: the machine is shared)")
        print(f"{'input':<12} {'dpi':>4} {'floor p/s':>16} {'scan p/s':>16} {'ratio':>6} "
              f"{'decode ms':>10} {'read ms':>8} {'fields':>7}")
        renders = {} if args.ward_only else {dpi: render(tmp / "ward.pdf", dpi, mar, kit, mar_ids)
                                             for dpi in (200, 300)}
        if renders:
            check_templates(renders[200], kit, "mar")
        kit.close()
        probe = open_kit(tmp / "kit")
        mar_folder = None if args.ward_only else tmp / "in-png-200"
        for dpi in (() if args.ward_only else (200, 300)):
            pages = renders[dpi]
            for fmt in FORMATS:
                folder = tmp / f"in-{fmt}-{dpi}"
                write_format(folder, fmt, pages, dpi)
                floors = [floor_pps(folder) for _ in range(runs)]
                scans = [scan_once(tmp / "kit", tmp, folder, workers=0) for _ in range(runs)]
                floor = statistics.median(f[0] for f in floors)
                floor_wall = statistics.median(f[1] for f in floors)
                decode = statistics.median(f[2] for f in floors)
                scan = statistics.median(s[3] for s in scans)
                scan_wall = statistics.median(s[0] for s in scans)
                read, fields = read_ms(probe, folder)
                print(f"{fmt:<12} {dpi:>4} {floor:>7.1f} ({floor_wall:>6.1f}) {scan:>7.1f} ({scan_wall:>6.1f}) "
                      f"{floor / scan:>5.2f}x {decode:>10.1f} {read:>8.1f} {fields:>7}", flush=True)

        # pages as they come back: a whole ward pack, office scanner damage, half the handwriting inked
        ward = render_ward_pack(tmp / "ward.pdf", 200, probe)
        folder = tmp / "in-ward-office"
        write_format(folder, "jpeg", ward, 200)
        floors = [floor_pps(folder) for _ in range(runs)]
        scans = [scan_once(tmp / "kit", tmp, folder, workers=0) for _ in range(runs)]
        floor, decode = statistics.median(f[0] for f in floors), statistics.median(f[2] for f in floors)
        scan = statistics.median(s[3] for s in scans)
        with _NoDigits():
            scan_nodigits = statistics.median(scan_once(tmp / "kit", tmp, folder, workers=0)[3] for _ in range(runs))
        reads = [read_ms(probe, folder) for _ in range(runs)]
        with _NoVisibility():
            reads_off = [read_ms(probe, folder) for _ in range(runs)]
        read, fields = statistics.median(r[0] for r in reads), reads[0][1]
        read_off = statistics.median(r[0] for r in reads_off)
        print(f"== ward pack as it comes back: {len(ward)} pages (mixed templates), office scanner, JPEG, 200 dpi,"
              " half the handwriting inked ==")
        print(f"{'ward-office':<12} {200:>4} {floor:>7.1f} {'':>8} {scan:>7.1f} {'':>8} {floor / scan:>5.2f}x "
              f"{decode:>10.1f} {read:>8.1f} {fields:>7}")
        print(f"handwriting digits (scan/digits.py suggestions): scan {scan:.1f} pages/s with them, "
              f"{scan_nodigits:.1f} without ({1000 / scan - 1000 / scan_nodigits:+.1f} ms/page)")
        print(f"visibility check: read {read:.1f} ms/page with it, {read_off:.1f} ms without "
              f"({read - read_off:+.1f} ms, {100 * (read - read_off) / max(read_off, 1e-6):+.0f} %)", flush=True)
        stages, total = stage_table(tmp / "kit", tmp, folder, runs)
        print_stages("ward pack as it comes back", stages, total)
        if mar_folder is not None:
            stages, total = stage_table(tmp / "kit", tmp, mar_folder, runs)
            print_stages("clean MAR pages, PNG 200 dpi", stages, total)
        views = {"ward JPEG 200 dpi": folder}
        for fmt, label in (("tiff-g4", "ward TIFF G4 200 dpi"), ("scanner-pdf", "ward scanner PDF 200 dpi")):
            views[label] = tmp / f"in-ward-{fmt}"
            write_format(views[label], fmt, ward[:20], 200)
        views["printed PDF (vector)"] = tmp / "in-printed"
        views["printed PDF (vector)"].mkdir()
        shutil.copy(tmp / "ward.pdf", views["printed PDF (vector)"] / "ward.pdf")
        page_view_costs(tmp / "kit", tmp, views)
        probe.close()
        if args.ward_only:
            return

        # workers: a larger scanner-PDF batch (the same pages three times over), 200 dpi
        pages = renders[200] * 3
        folder = tmp / "in-workers"
        write_format(folder, "scanner-pdf", pages, 200)
        print(f"== workers: scanner PDF, {len(pages)} pages at 200 dpi (pool start-up included) ==")
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if cpus < 2:
            print(f"  note: this process may run on {cpus} CPU only (taskset?): its workers share it, so 2 "
                  "workers cannot be faster than 1 here; run without taskset for the scaling figure")
        rates = {}
        for workers in (1, 2):
            got = [scan_once(tmp / "kit", tmp, folder, workers=workers) for _ in range(runs)]
            rates[workers] = statistics.median(g[0] for g in got)
            rss = max(g[2] for g in got)
            print(f"workers={workers}: {rates[workers]:.1f} pages/s, peak RSS per worker {rss:.0f} MiB", flush=True)
        print(f"speed-up 2 vs 1 worker: {rates[2] / rates[1]:.2f}x (2 cores, shared with other work)")
        print("targets: >= 30 pages/s per core at 200 dpi; ratio <= 2x; RSS < 400 MiB per worker")


if __name__ == "__main__":
    main()
