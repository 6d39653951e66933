"""Handwriting assist: how well real handwritten digits in comb boxes are suggested, and at what cost.

Real printed vitals sheets (every comb field: the date, height, weight, times, temperatures, pulse,
blood pressure, respiratory rate, SpO2, pain) get digits from the writer-disjoint test split of
data/handwriting/ (MNIST test images 4000-4999, never trained on; taken in file order, so that a
page is a run of neighbouring writers), written into the boxes through the page transform, then
office-scanned at 200 dpi or phone-photographed (`degrade.py`), read by the engine and suggested
(`scan/suggest.py`, checked with `templates/values.py`). Prints:
- digit accuracy of the top suggestion (written cells);
- field accuracy (all digits right) for 4-digit times and 8-digit dates;
- share of fields pre-filled and how often a pre-filled field is wrong;
- keystrokes per numeric field for a clerk who presses Enter on a right pre-fill and types the digits
  and Enter otherwise (a wrong pre-fill: typed over), against typing every field;
- recognition cost in ms per field and engine pages/s per core on filled MAR sheets with it on and off.
Targets (issue 10): top-1 >= 98 % office; pre-filled wrong <= 0.5 %; keystrokes <= 1/3 of typing;
>= 30 pages/s per core on the MAR.
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fallbackkit.generate import print_ward, sheet_geometry  # noqa: E402
from fallbackkit.scan import degrade, digits, digits_synth, engine  # noqa: E402
from fallbackkit.scan.simulate import fill_page, page_transform, render_pdf, identify  # noqa: E402
from fallbackkit.scan.suggest import Checks, suggest  # noqa: E402
from kit_helpers import census_kit  # noqa: E402

DPI = 200
# plausible ranges of the issue (until the templates carry `range:`, they are given here)
RANGES = {"temperature": (30.0, 45.0), "pulse": (20, 250), "spo2": (50, 100), "bp_systolic": (50, 260),
          "bp_diastolic": (20, 160), "pain": (0, 10), "resp_rate": (4, 60), "height": (30, 250),
          "weight": (0.5, 400)}


def value_for(f: dict, rng: np.random.Generator, today: dt.date) -> str:
    """Digits a nurse would write in the field's boxes (a space: a box left empty)."""
    base = f["name"].split(".")[-1]
    if f["type"] == "datetime":
        if f.get("format") == "time":
            return f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}"
        day = today - dt.timedelta(days=int(rng.integers(0, 3)))
        return day.strftime("%d%m%Y")
    ints, decs = int(f.get("digits") or 0), int(f.get("decimals") or 0)
    lo, hi = RANGES.get(base, (0, 10 ** ints - 1))
    v = float(rng.uniform(max(lo, 0), min(hi, 10 ** ints - 1)))
    if base == "temperature":
        v = float(rng.uniform(35.5, 40.0))
    if base == "spo2":
        v = float(rng.uniform(85, 100))
    whole = str(int(v)).rjust(ints)[-ints:]
    frac = str(int(round((v - int(v)) * 10 ** decs))).rjust(decs, "0")[-decs:] if decs else ""
    return whole + frac


def truth_text(f: dict, written: str) -> str:
    if f["type"] == "datetime":
        if f.get("format") == "time":
            return f"{written[:2]}:{written[2:]}"
        return f"{written[:2]}/{written[2:4]}/{written[4:]}"
    ints = int(f.get("digits") or 0)
    whole, frac = written[:ints].strip(), written[ints:]
    return whole + (f".{frac}" if frac else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    images, labels = digits_synth.load_mnist()
    test_idx = list(range(digits_synth.VALID_END, len(labels)))
    by_digit = {d: [i for i in test_idx if labels[i] == d] for d in range(10)}
    cursor = {d: 0 for d in range(10)}

    def next_digit(ch: str) -> np.ndarray:
        d = int(ch)
        i = by_digit[d][cursor[d] % len(by_digit[d])]
        cursor[d] += 1
        return images[i]

    with tempfile.TemporaryDirectory() as tmp:
        kit = census_kit(Path(tmp), {"3B": 8})
        result = print_ward(kit, "3B", Path(tmp) / "ward.pdf", actor="bench")
        pages = render_pdf(result.out_path, DPI)
        vitals, mars = [], []
        for img in pages:
            sp = identify(img, kit.kit_id, kit.secret)
            if sp is None:
                continue
            g = sheet_geometry(kit, sp.sheet_id)
            (vitals if g["template"] == "vitals" else mars if g["template"] == "mar" else []).append((img, g))
        today = dt.date.today()
        window = Checks(today - dt.timedelta(days=7), today + dt.timedelta(days=1))
        n_pages = 4 if args.quick else len(vitals)
        rng = np.random.default_rng(10)
        filled = []
        for img, g in vitals[:n_pages]:
            page = img.copy()
            truth = {}
            hmat = page_transform(DPI)
            for f in g["fields"]:
                if not f.get("cells_mm"):
                    continue
                written = value_for(f, rng, today)
                for cell, ch in zip(f["cells_mm"], written):
                    if ch.strip():
                        digits_synth.write_digit(page, hmat, cell, next_digit(ch), rng)
                truth[f["name"]] = (f, written)
            filled.append((page, g, truth))
        print(f"{len(filled)} vitals pages, {sum(len(t) for _, _, t in filled)} comb fields, "
              f"{sum(len(w.replace(' ', '')) for _, _, t in filled for _, w in t.values())} written digits "
              f"per damage tier (test split images used: {sum(cursor.values())})")
        for tier in ("office", "phone"):
            trng = np.random.default_rng(20)
            cells_ok = cells_n = 0
            fields = {"time": [0, 0], "date": [0, 0]}
            prefilled = prefilled_wrong = n_fields = 0
            keys_assist = keys_typing = 0
            field_ms = []
            for page, g, truth in filled:
                scan = degrade.degrade(page, tier, trng, DPI)
                res = engine.read_page(scan, kit_id=kit.kit_id, secret=kit.secret,
                                       geometry_for=lambda s, g=g: g if s == g["sheet_id"] else None)
                if res.status != "read":
                    print(f"  {tier}: a page was not read ({res.reason})")
                    continue
                by = {r.field: r for r in res.readings}
                for name, (f, written) in truth.items():
                    raw = by[name].raw
                    base = name.split(".")[-1]
                    checks = Checks(window.earliest, window.latest, RANGES.get(base))
                    got = suggest(raw, f, checks) or {"suggestion": None, "prefill": False, "cells": []}
                    want = truth_text(f, written)
                    for c, ch in zip(got["cells"], written):
                        if ch.strip():
                            cells_n += 1
                            cells_ok += c["digit"] == ch
                    kind = "time" if f.get("format") == "time" else "date" if f.get("format") == "date" else None
                    if kind:
                        fields[kind][0] += got["suggestion"] == want
                        fields[kind][1] += 1
                    n_fields += 1
                    typed = len(written.replace(" ", "")) + 1
                    keys_typing += typed
                    if got["prefill"]:
                        prefilled += 1
                        if got["suggestion"] != want:
                            prefilled_wrong += 1
                            keys_assist += typed
                        else:
                            keys_assist += 1
                    else:
                        keys_assist += typed
            print(f"{tier}: top-1 digit accuracy {cells_ok / max(cells_n, 1):.2%} ({cells_n} digits); "
                  f"times right {fields['time'][0] / max(fields['time'][1], 1):.1%} of {fields['time'][1]}, "
                  f"dates right {fields['date'][0] / max(fields['date'][1], 1):.1%} of {fields['date'][1]}")
            print(f"{tier}: pre-filled {prefilled / max(n_fields, 1):.1%} of {n_fields} fields, "
                  f"pre-filled wrong {prefilled_wrong / max(prefilled, 1):.2%} ({prefilled_wrong}); "
                  f"keystrokes per field {keys_assist / n_fields:.2f} vs typing {keys_typing / n_fields:.2f} "
                  f"(ratio {keys_assist / keys_typing:.2f})")
        # cost: recognition per comb field, and engine pages/s on filled MAR sheets with it on and off
        page, g, truth = filled[0]
        hmat = page_transform(DPI)
        t_all = []
        for _ in range(3):
            t0 = time.perf_counter()
            for name, (f, _) in truth.items():
                digits.read_cells(page, hmat, f, 20.0)
            t_all.append((time.perf_counter() - t0) * 1000 / len(truth))
        print(f"recognition: {statistics.median(t_all):.2f} ms per comb field (all cells written)")
        mrng = np.random.default_rng(30)
        mar_pages = []
        for img, mg in mars[: (4 if args.quick else 12)]:
            m, _ = fill_page(img, mg, DPI, mrng, writing=0.6)
            for f in mg["fields"]:
                if f.get("cells_mm") and mrng.random() < 0.6:
                    w = f"{int(mrng.integers(6, 23)):02d}{int(mrng.integers(0, 60)):02d}"
                    for cell, ch in zip(f["cells_mm"], w):
                        digits_synth.write_digit(m, hmat, cell, next_digit(ch), mrng)
            mar_pages.append((degrade.office(m, mrng), mg))
        lookup = {mg["sheet_id"]: mg for _, mg in mar_pages}

        def run() -> float:
            t0 = time.perf_counter()
            for scan, _ in mar_pages:
                engine.read_page(scan, kit_id=kit.kit_id, secret=kit.secret, geometry_for=lookup.get)
            return len(mar_pages) / (time.perf_counter() - t0)
        on = statistics.median(run() for _ in range(3))
        real = engine.digits.read_cells
        engine.digits.read_cells = lambda *a, **k: []
        try:
            off = statistics.median(run() for _ in range(3))
        finally:
            engine.digits.read_cells = real
        print(f"engine on filled MAR pages (one core, in memory): {on:.1f} pages/s with digits, "
              f"{off:.1f} without ({len(mar_pages)} pages)")
        kit.close()


if __name__ == "__main__":
    main()
