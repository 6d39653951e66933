"""The engine's field measures alone: CPU ms per page of `read.measure_handwritten_many` (handwriting),
`read.measure_boxes` (mark boxes) and the whole `engine.read_page`, on a ward pack as it comes back
(mixed templates, office damage, half the handwriting inked) and on real MAR pages full of written
digits, after the page was located once.

    python bench/bench_read.py                       # this code
    git show main:fallbackkit/scan/read.py > /tmp/read_main.py
    python bench/bench_read.py --against /tmp/read_main.py

With --against, that file is loaded as a second `read` module and the two are run in turns, page by
page, in one process (the same pages, the same cache and memory state, the machine's load shared
alike): on a shared machine this is what tells a few per cent apart, where whole-scan runs vary by
more than that. The engine's own read_page is timed with each module put in its place.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, as a scan worker
    os.environ.setdefault(_var, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pypdfium2 as pdfium  # noqa: E402

from fallbackkit import payload  # noqa: E402
from fallbackkit.generate import import_census, print_ward, sheet_geometry  # noqa: E402
from fallbackkit.generate.sample import write_census  # noqa: E402
from fallbackkit.scan import engine, locate, read  # noqa: E402
from fallbackkit.scan.degrade import degrade  # noqa: E402
from fallbackkit.scan.simulate import digit_writer, fill_page, identify  # noqa: E402
from fallbackkit.scan.workers import keep_freed_memory  # noqa: E402
from fallbackkit.store import init_kit  # noqa: E402

cv2.setNumThreads(1)
keep_freed_memory()


def pages(tmp: Path, beds: int) -> tuple[object, dict[str, list[np.ndarray]]]:
    kit = init_kit(tmp / "kit", actor="bench")
    patients, meds = write_census(tmp / "census", {"W": beds}, seed=3)
    import_census(kit, patients, meds, actor="bench")
    print_ward(kit, "W", tmp / "ward.pdf", actor="bench", one_sided=True)
    rng = np.random.default_rng(7)
    writer = digit_writer(kit)
    out: dict[str, list[np.ndarray]] = {"ward pack": [], "MAR full of digits": []}
    pdf = pdfium.PdfDocument(str(tmp / "ward.pdf"))
    for page in pdf:
        clean = np.array(page.render(scale=200 / 72, grayscale=True).to_pil().convert("L"))
        sp = identify(clean, kit.kit_id, kit.secret)
        if sp is None:  # the cover
            continue
        geometry = sheet_geometry(kit, sp.sheet_id)
        filled, _ = fill_page(clean, geometry, 200, rng, writing=0.5)
        out["ward pack"].append(degrade(filled, "office", rng, src_dpi=200))
        if sp.template == "mar":
            full, _ = fill_page(clean, geometry, 200, rng, writing=0.9, digits=writer)
            out["MAR full of digits"].append(degrade(full, "office", rng, src_dpi=200))
    pdf.close()
    return kit, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", type=Path, help="another version's fallbackkit/scan/read.py, run in turns")
    parser.add_argument("--quick", action="store_true", help="5 beds, 2 runs")
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 5)
    versions = {"this": read}
    if args.against:
        spec = importlib.util.spec_from_file_location("fallbackkit.scan.read_against", args.against)
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
        versions = {"against": other, "this": read}
    with tempfile.TemporaryDirectory() as tmp:
        kit, tiers = pages(Path(tmp), 5 if args.quick else 16)
        geometries: dict[str, dict] = {}

        def geometry_for(sheet_id):
            if sheet_id not in geometries:
                geometries[sheet_id] = sheet_geometry(kit, sheet_id)
            return geometries[sheet_id]

        print("CPU ms per page (median of runs; versions in turns, page by page)")
        for tier, images in tiers.items():
            located = []
            for img in images:
                code = locate.find_codes(img, lambda t: True)[0][0]
                g = geometry_for(payload.parse(code.text).sheet_id)
                located.append((img, locate.locate_with_code(img, code, g), g))
            jobs = {
                "handwriting": lambda mod, img, loc, g: mod.measure_handwritten_many(
                    img, loc.transform, [f for f in g["fields"] if f["type"] in mod.HANDWRITTEN], loc.black_level),
                "mark boxes": lambda mod, img, loc, g: mod.measure_boxes(
                    img, loc.transform, [b["box_mm"] for f in g["fields"] for b in engine._boxes(f)], loc.black_level),
                "read_page (digits on)": lambda mod, img, loc, g: engine.read_page(
                    img, kit_id=kit.kit_id, secret=kit.secret, geometry_for=geometry_for),
            }
            print(f"{tier}: {len(located)} pages")
            for job, run in jobs.items():
                per: dict[str, list[float]] = {name: [] for name in versions}
                for r in range(runs):
                    cpu = dict.fromkeys(versions, 0.0)
                    for j, (img, loc, g) in enumerate(located):
                        order = list(versions.items())
                        if (j + r) % 2:
                            order.reverse()
                        for name, mod in order:
                            engine.read = mod
                            t = time.process_time()
                            run(mod, img, loc, g)
                            cpu[name] += time.process_time() - t
                    engine.read = read
                    for name in versions:
                        per[name].append(1000 * cpu[name] / len(located))
                med = {name: statistics.median(v) for name, v in per.items()}
                line = "  ".join(f"{name} {ms:6.2f}" for name, ms in med.items())
                if "against" in med:
                    line += f"  ratio {med['this'] / med['against']:.3f} ({med['this'] - med['against']:+.2f} ms)"
                print(f"  {job:<24} {line}")
        kit.close()


if __name__ == "__main__":
    sys.exit(main())
