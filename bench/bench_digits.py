"""What the digit boxes cost per page: cutting, normalising and the two networks, in CPU ms.

A ward pack (MARs, vitals, registration, lab requests) printed and rendered at 200 dpi, filled by
`simulate`'s filler, about 60 % of its comb fields written with real digits of the test split, then
office-scanned; the engine reads each page and the comb fields it hands to `digits.Batch` are kept.
Those calls are then replayed: per page, the cut (`Batch.add`), the normalising (`normalise_many`)
and the networks (`opinions`), and the whole `Batch` as the engine runs it; for MAR pages and for
the whole pack, with `--reference` beside the code the models were trained with (the frozen copy in
tests/digits_reference.py), or with `--against PATH` beside another version of scan/digits.py (main's,
from a git worktree), run in turns in the same minutes. Then the kit's memory (`Memory.blend`, the
nearest labelled cells of the kit's clerks) on the MAR pages' boxes, for a memory of 3,000 and of
30,000 cells (it holds every box the kit's clerks decided), beside `--against` too. One BLAS and
one OpenCV thread (a scan worker is one core); CPU time (time.process_time); the minimum and the
median of the runs (the machine is shared: the minimum is the figure least moved by other load). Target (issue 10): the
digits <= ~8 ms of CPU per MAR page.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # figures per core
    os.environ.setdefault(_var, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fallbackkit.generate import print_ward, sheet_geometry  # noqa: E402
from fallbackkit.scan import degrade, digits, digits_synth, engine  # noqa: E402
from fallbackkit.scan.simulate import fill_page, identify, page_transform, render_pdf  # noqa: E402
from kit_helpers import census_kit  # noqa: E402

DPI = 200


def pages_as_read(beds: int) -> list[tuple[str, np.ndarray, list[tuple]]]:
    """(template, scanned page, the Batch.add calls the engine made for it) for a filled ward pack."""
    images, labels = digits_synth.load_mnist()
    test = range(digits_synth.VALID_END, len(labels))
    by_digit = {d: [i for i in test if labels[i] == d] for d in range(10)}
    used = dict.fromkeys(range(10), 0)

    def digit(ch: str) -> np.ndarray:
        d = int(ch)
        used[d] += 1
        return images[by_digit[d][used[d] % len(by_digit[d])]]

    calls: list[tuple] = []

    class Recorder(digits.Batch):
        def add(self, image, hmat, field, black, shift_mm=(0.0, 0.0)):
            calls.append((hmat.copy(), field, float(black), tuple(shift_mm)))
            return super().add(image, hmat, field, black, shift_mm)

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        kit = census_kit(Path(tmp), {"3B": beds})
        result = print_ward(kit, "3B", Path(tmp) / "ward.pdf", actor="bench", one_sided=True)
        rng = np.random.default_rng(30)
        hmat = page_transform(DPI)
        scans, geometry = [], {}
        for img in render_pdf(result.out_path, DPI):
            sp = identify(img, kit.kit_id, kit.secret)
            if sp is None:
                continue
            g = geometry[sp.sheet_id] = sheet_geometry(kit, sp.sheet_id)
            page, _ = fill_page(img, g, DPI, rng, writing=0.6)
            for f in g["fields"]:
                if f.get("cells_mm") and rng.random() < 0.6:
                    for cell, ch in zip(f["cells_mm"], rng.integers(0, 10, len(f["cells_mm"]))):
                        digits_synth.write_digit(page, hmat, cell, digit(str(ch)), rng)
            scans.append((g["template"], degrade.office(page, rng)))
        real, engine.digits.Batch = engine.digits.Batch, Recorder
        try:
            for template, scan in scans:
                calls.clear()
                engine.read_page(scan, kit_id=kit.kit_id, secret=kit.secret, geometry_for=geometry.get)
                out.append((template, scan, list(calls)))
        finally:
            engine.digits.Batch = real
        kit.close()
    return out


def parts(code, pages, runs: int) -> dict[str, list[float]]:
    """CPU ms per page of each part, one figure per run (code: cut, normalise, opinions, whole)."""
    cut, normalise, opinions, whole = code[:4]
    got: dict[str, list[float]] = {"cut": [], "normalise": [], "networks": [], "whole Batch": []}
    for _ in range(runs):
        t = dict.fromkeys(got, 0.0)
        for _, image, calls in pages:
            c0 = time.process_time()
            patches, blacks = [], []
            for hmat, field, black, shift in calls:
                p = cut(image, hmat, field, shift)
                patches += p
                blacks += [black] * len(p)
            c1 = time.process_time()
            inked = [n for n, _ in normalise(patches, blacks) if n is not None]
            c2 = time.process_time()
            if inked:
                opinions(inked)
            c3 = time.process_time()
            t["cut"] += c1 - c0
            t["normalise"] += c2 - c1
            t["networks"] += c3 - c2
            if whole is not None:
                c4 = time.process_time()
                whole(image, calls)
                t["whole Batch"] += time.process_time() - c4
        for k in got:
            got[k].append(1000 * t[k] / len(pages))
    return got


def _batch(image, calls, module=digits) -> None:
    batch = module.Batch()
    for hmat, field, black, shift in calls:
        batch.add(image, hmat, field, black, shift)
    batch.finish()


def _reference_opinions(images) -> None:
    import digits_reference as ref
    ref.opinions(digits.model(), digits.second_model(), np.stack(images))


def _load_digits(path: Path):
    """Another version of scan/digits.py as a module of this package (its `from .read import` works)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("fallbackkit.scan._digits_against", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a 4-bed ward, 3 runs")
    ap.add_argument("--reference", action="store_true",
                    help="also the code the models were trained with (tests/digits_reference.py), in turns")
    ap.add_argument("--against", type=Path, metavar="DIGITS_PY",
                    help="also another version of scan/digits.py (e.g. main's, from a git worktree), in turns")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    digits.model(), digits.second_model()
    pages = pages_as_read(4 if args.quick else 8)
    runs = 3 if args.quick else 9
    codes = {"now": (digits.comb_patches, digits.normalise_many, digits.opinions, _batch)}
    if args.against:
        other = _load_digits(args.against)
        codes["against"] = (other.comb_patches, other.normalise_many, other.opinions,
                            lambda image, calls: _batch(image, calls, other), other)
    if args.reference:
        import digits_reference as ref
        codes["reference"] = (ref.comb_patches, ref.normalise_many, _reference_opinions, None)
    for label, chosen in (("MAR pages", [p for p in pages if p[0] == "mar"]), ("the whole ward pack", pages)):
        fields = sum(len(c) for _, _, c in chosen) / len(chosen)
        cells = sum(len(f["cells_mm"]) for _, _, c in chosen for _, f, _, _ in c) / len(chosen)
        print(f"== {label}: {len(chosen)} office pages, {fields:.1f} written comb fields and {cells:.0f} boxes "
              f"per page; CPU ms per page, min / median of {runs} runs ==")
        got: dict[str, dict[str, list[float]]] = {name: {} for name in codes}
        for _ in range(runs):   # the codes in turns, so that both see the same load
            for name, code in codes.items():
                for k, v in parts(code, chosen, 1).items():
                    got[name].setdefault(k, []).extend(v)
        for name in codes:
            row = "  ".join(f"{k} {min(v):.2f} / {statistics.median(v):.2f}" for k, v in got[name].items() if any(v))
            print(f"  {name:<10} {row}")
        whole = got["now"]["whole Batch"]
        print(f"  per comb field (whole Batch): {min(whole) / fields:.3f} ms; target <= ~8 ms per MAR page")
    memory_cost(pages, codes, runs)


def memory_cost(pages, codes, runs: int) -> None:
    """CPU ms per MAR page of the kit's memory (Memory.blend of the page's inked boxes), for a memory of
    3,000 and of 30,000 labelled cells (a kit's memory holds every box its clerks decided): the pack's
    own boxes, copied with a little noise (so that many are close, as one ward's hands are)."""
    inked = [[n for n, _ in digits.normalise_many(*_patches(image, calls)) if n is not None] for _, image, calls in pages]
    feats = digits.embed([n for page in inked for n in page])
    labels = digits.opinions([n for page in inked for n in page])[0].argmax(axis=1)
    mar = [(digits.embed(page), digits.opinions(page)[0]) for (t, _, _), page in zip(pages, inked) if t == "mar" and page]
    rng = np.random.default_rng(3)
    modules = {"now": digits}
    if "against" in codes:
        modules["against"] = codes["against"][4]
    print(f"== the kit's memory (Memory.blend): {len(mar)} MAR pages; CPU ms per page, min / median of {runs} runs ==")
    for size in (3000, 30000):
        pick = rng.integers(0, len(feats), size)
        f = np.abs(feats[pick] + rng.normal(scale=0.02, size=(size, feats.shape[1])).astype(np.float32))
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        memories = {name: m.Memory(f, labels[pick]) for name, m in modules.items()}
        got: dict[str, list[float]] = {name: [] for name in memories}
        for _ in range(runs):
            for name, memory in memories.items():
                c0 = time.process_time()
                for q, probs in mar:
                    memory.blend(q, probs)
                got[name].append(1000 * (time.process_time() - c0) / len(mar))
        row = "  ".join(f"{name} {min(v):.2f} / {statistics.median(v):.2f}" for name, v in got.items())
        print(f"  {size:>6} cells: {row}")


def _patches(image, calls) -> tuple[list[np.ndarray], list[float]]:
    patches, blacks = [], []
    for hmat, field, black, shift in calls:
        p = digits.comb_patches(image, hmat, field, shift)
        patches += p
        blacks += [black] * len(p)
    return patches, blacks


if __name__ == "__main__":
    main()
