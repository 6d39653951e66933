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
- keystrokes per numeric field, against typing every field (digits + Enter), for the station's comb
  boxes: a whole pre-fill right is Enter, wrong is typed over (digits + Enter); a partial pre-fill
  (only the sure boxes) is one key per box left open + Enter, and when a pre-filled box is wrong the
  clerk clears the field and types it all (Delete + digits + Enter); nothing pre-filled is digits +
  Enter. Beside it the clerk of the previous station (whole pre-fill or nothing). A wrong digit left
  in a pre-filled box counts as a pre-filled error, for partial pre-fills too;
- recognition cost in ms per field and engine pages/s per core on filled MAR sheets with it on and off.
`--why` says why the written boxes left to the clerk were not pre-filled (and how often their top digit
was right anyway) and where the keystrokes beyond Enter go; `--rules-from OLD_SUGGEST_PY` decides the
very same readings with another version of scan/suggest.py too (a paired before/after of the rules, as
`--against` is of the models).
Targets (issue 10): top-1 >= 98 % office; pre-filled wrong <= 0.5 %; keystrokes <= 1/3 of typing;
>= 30 pages/s per core on the MAR.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # figures per core
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fallbackkit.generate import print_ward, sheet_geometry  # noqa: E402
from fallbackkit.scan import degrade, digits, digits_synth, engine  # noqa: E402
from fallbackkit.scan.simulate import fill_page, page_transform, render_pdf, identify  # noqa: E402
from fallbackkit.scan.suggest import SuggestionContext, suggest  # noqa: E402
from kit_helpers import census_kit  # noqa: E402

DPI = 200
# values written: within the plausible ranges the templates declare (`range:`)
RANGES = {"temperature": (30.0, 45.0), "pulse": (40, 180), "spo2": (50, 100), "bp_systolic": (80, 220),
          "bp_diastolic": (40, 130), "pain": (0, 10), "resp_rate": (8, 40), "height": (100, 210),
          "weight": (30, 150)}


def value_for(f: dict, rng: np.random.Generator, today: dt.date) -> str:
    """Digits a nurse would write in the field's boxes (a space: a box left empty)."""
    base = f["name"].split(".")[-1]
    if f["type"] == "datetime":
        if f.get("format") == "time":
            return f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}"
        day = today + dt.timedelta(days=int(rng.integers(0, 2)))
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


def _skip_first(evaluate, filled, n: int) -> dict:
    """The base model on the same fields the learning run measures (all but the first n)."""
    count, out = 0, []
    for page, g, truth in filled:
        kept = {}
        for name, v in truth.items():
            count += 1
            if count > n:
                kept[name] = v
        out.append((page, g, kept))
    return evaluate(out, "office", 20, 0)


def _suggest_module(path: str):
    """Another version of scan/suggest.py, loaded beside the shipped one (for --rules-from)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("fallbackkit.scan._suggest_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--beds", type=int, default=8,
                    help="beds of the ward printed (8: 16 vitals sheets, 664 comb fields a damage tier); more "
                         "give a larger sample, e.g. to choose thresholds on the calibration split")
    ap.add_argument("--sweep", action="store_true", help="also what other pre-fill thresholds would give")
    ap.add_argument("--sweep-only", action="store_true", help="stop after the accuracy figures")
    ap.add_argument("--show-wrong", action="store_true", help="print each wrong pre-filled field")
    ap.add_argument("--split", choices=["test", "calibrate"], default="test",
                    help="digits from the writer-disjoint test split (the figures), or from the calibration "
                         "split (to choose thresholds without looking at the test split)")
    ap.add_argument("--one-model", action="store_true",
                    help="without the second opinion (the first model alone), to compare")
    ap.add_argument("--model", default=None, help="another first model file (a training try), not the shipped one")
    ap.add_argument("--second-model", default=None, help="another second opinion file, not the shipped one")
    ap.add_argument("--against", nargs=2, metavar=("FIRST", "SECOND"), action="append", default=[],
                    help="also measure this pair of model files on the very same pages and damage (a paired "
                         "before/after: the kit's random codes move the pages between runs); repeatable")
    ap.add_argument("--rules-from", default=None, metavar="SUGGEST_PY",
                    help="also decide the very same readings with another suggest.py (e.g. `git show "
                         "main:fallbackkit/scan/suggest.py > /tmp/before.py`): a paired before/after of the rules")
    ap.add_argument("--mean-too", action="store_true",
                    help="also measure the shipped models with a box's probabilities the two models' mean (as "
                         "before round 8) on the very same pages and damage")
    ap.add_argument("--why", action="store_true",
                    help="why boxes are left to the clerk, and where the keystrokes above Enter go")
    args = ap.parse_args()
    before = _suggest_module(args.rules_from) if args.rules_from else None
    if args.model:
        digits.MODEL_PATH = Path(args.model)
    if args.second_model:
        digits.SECOND_PATH = Path(args.second_model)
    pairs = [(digits.MODEL_PATH, digits.SECOND_PATH, False)] + [(Path(a), Path(b), False) for a, b in args.against]
    if args.mean_too:
        pairs.insert(1, (digits.MODEL_PATH, digits.SECOND_PATH, True))
    if args.one_model:
        digits.second_model = digits.model
    images, labels = digits_synth.load_mnist()
    test_idx = (list(range(digits_synth.VALID_END, len(labels))) if args.split == "test"
                else list(range(digits_synth.TRAIN_END, digits_synth.VALID_END)))
    print(f"digits from the {args.split} split")
    by_digit = {d: [i for i in test_idx if labels[i] == d] for d in range(10)}
    cursor = {d: 0 for d in range(10)}

    def next_digit(ch: str) -> np.ndarray:
        d = int(ch)
        i = by_digit[d][cursor[d] % len(by_digit[d])]
        cursor[d] += 1
        return images[i]

    with tempfile.TemporaryDirectory() as tmp:
        kit = census_kit(Path(tmp), {"3B": args.beds})
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
        hints = SuggestionContext(kit.db.conn, kit.templates_dir)  # window: printing day onwards
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
        def clerk(m: dict, got: dict, written: str, want: str) -> None:
            """The simulated clerk's keys for one field (see the module docstring), and pre-fill errors."""
            typed = len(written.replace(" ", "")) + 1
            m["keys_typing"] += typed
            m["keys_whole"] += (typed if got["suggestion"] != want else 1) if got["prefill"] else typed
            if got["prefill"]:
                m["prefilled"] += 1
                wrong = got["suggestion"] != want
                m["prefilled_wrong"] += wrong
                m["keys_assist"] += typed if wrong else 1
            elif got.get("partial"):
                m["partial"] += 1
                sure = [(c["digit"] or "", ch.strip()) for c, ch in zip(got["cells"], written) if c["sure"]]
                wrong = any(d != t for d, t in sure)
                m["partial_wrong"] += wrong
                left = len(got["cells"]) - len(sure)
                m["open_boxes"] += left
                m["keys_assist"] += 1 + typed if wrong else left + 1
            elif got.get("blank") and not written.strip():
                m["keys_assist"] += 1
            else:
                m["keys_assist"] += typed

        def evaluate(pages, tier: str, seed: int, learn_fields: int = 0) -> dict:
            """Read the pages damaged by tier; the first learn_fields fields (in reading order) are
            not measured but taught to the memory, as a clerk's corrections would be."""
            trng = np.random.default_rng(seed)
            m = {"cells_ok": 0, "cells": 0, "time": [0, 0], "date": [0, 0], "prefilled": 0,
                 "prefilled_wrong": 0, "fields": 0, "keys_assist": 0, "keys_typing": 0,
                 "partial": 0, "partial_wrong": 0, "keys_whole": 0, "open_boxes": 0}
            lesson_images, lesson_labels = [], []
            for page, g, truth in pages:
                scan = degrade.degrade(page, tier, trng, DPI)
                res = engine.read_page(scan, kit_id=kit.kit_id, secret=kit.secret,
                                       geometry_for=lambda s, g=g: g if s == g["sheet_id"] else None)
                if res.status != "read":
                    print(f"  {tier}: a page was not read ({res.reason})")
                    continue
                by = {r.field: r for r in res.readings}
                for name, (f, written) in truth.items():
                    raw = by[name].raw
                    if learn_fields and m.get("taught", 0) < learn_fields:
                        m["taught"] = m.get("taught", 0) + 1
                        black = float(res.quality.get("black_level", 30.0))
                        for cell, ch in zip(f["cells_mm"], written):
                            if ch.strip():
                                norm, _ = digits.normalise(digits.cell_patch(
                                    scan, np.array(res.transform), cell, raw.get("shift_mm", [0, 0])), black)
                                if norm is not None:
                                    lesson_images.append(norm)
                                    lesson_labels.append(int(ch))
                        if m["taught"] == learn_fields:
                            digits.use_memory(digits.Memory(digits.embed(lesson_images), np.array(lesson_labels)))
                        continue
                    if learn_fields and m.get("taught", 0) == learn_fields and by[name].raw.get("cells"):
                        raw = {**raw, "cells": digits.read_cells(scan, np.array(res.transform), f,
                                                                  float(res.quality.get("black_level", 30.0)),
                                                                  raw.get("shift_mm", [0, 0]))}
                    checks = hints.checks(f"{g['template']}@{g['version']}", f)
                    got = suggest(raw, f, checks) or {"suggestion": None, "prefill": False, "cells": []}
                    want = truth_text(f, written)
                    m.setdefault("fields_raw", []).append((raw, f, checks, written, want))
                    for c, ch in zip(got["cells"], written):
                        if ch.strip():
                            m["cells"] += 1
                            m["cells_ok"] += c["digit"] == ch
                    kind = "time" if f.get("format") == "time" else "date" if f.get("format") == "date" else None
                    if kind:
                        m[kind][0] += got["suggestion"] == want
                        m[kind][1] += 1
                    m["fields"] += 1
                    typed = len(written.replace(" ", "")) + 1
                    m.setdefault("detail", []).append(
                        (got.get("suggestion_confidence") or 0.0 if got["suggestion"] and got.get("rule") is None
                         and not raw.get("page_review") else -1.0, got["suggestion"] == want, typed))
                    clerk(m, got, written, want)
                    if args.show_wrong and got["prefill"] and got["suggestion"] != want:
                        print(f"  {tier}: {name} written {want!r} pre-filled {got['suggestion']!r} at "
                              f"{got['suggestion_confidence']}: {[c.get('alts') for c in raw.get('cells') or []]}")
            digits.use_memory(None)
            return m

        def show(label: str, m: dict) -> None:
            print(f"{label}: top-1 digit accuracy {m['cells_ok'] / max(m['cells'], 1):.2%} ({m['cells']} digits); "
                  f"times right {m['time'][0] / max(m['time'][1], 1):.1%} of {m['time'][1]}, "
                  f"dates right {m['date'][0] / max(m['date'][1], 1):.1%} of {m['date'][1]}")
            n = max(m["fields"], 1)
            any_pre = m["prefilled"] + m["partial"]
            any_wrong = m["prefilled_wrong"] + m["partial_wrong"]
            print(f"{label}: pre-filled {m['prefilled'] / n:.1%} of {m['fields']} fields, "
                  f"pre-filled wrong {m['prefilled_wrong'] / max(m['prefilled'], 1):.2%} ({m['prefilled_wrong']}); "
                  f"partly pre-filled {m['partial'] / n:.1%} ({m['open_boxes'] / max(m['partial'], 1):.2f} boxes left "
                  f"open each), a pre-filled box wrong {m['partial_wrong'] / max(m['partial'], 1):.2%} "
                  f"({m['partial_wrong']}); any pre-fill {any_pre / n:.1%}, wrong {any_wrong / max(any_pre, 1):.2%} "
                  f"({any_wrong})")
            print(f"{label}: keystrokes per field {m['keys_assist'] / n:.2f} vs typing {m['keys_typing'] / n:.2f} "
                  f"(ratio {m['keys_assist'] / max(m['keys_typing'], 1):.2f}); whole pre-fill or nothing (the "
                  f"previous station) {m['keys_whole'] / n:.2f} (ratio {m['keys_whole'] / max(m['keys_typing'], 1):.2f})")

        def sweep(label: str, m: dict) -> None:
            """What other pre-fill thresholds (field confidence) would give, on these fields."""
            rows = m.get("detail", [])
            for t in (0.8, 0.9, 0.95, 0.97, 0.98, 0.985, 0.99, 0.995, 0.998):
                pre = [(ok, typed) for conf, ok, typed in rows if conf >= t]
                wrong = sum(not ok for ok, _ in pre)
                keys = sum(typed if not ok else 1 for ok, typed in pre) + sum(
                    typed for conf, _, typed in rows if conf < t)
                print(f"  {label} threshold {t}: pre-filled {len(pre) / max(len(rows), 1):.1%}, wrong "
                      f"{wrong / max(len(pre), 1):.2%} ({wrong}), keystroke ratio "
                      f"{keys / max(sum(r[2] for r in rows), 1):.2f}")

        def sweep_partial(label: str, m: dict) -> None:
            """What other CELL_SURE / PREFILL_MIN would give with the comb boxes, on these fields."""
            from fallbackkit.scan import suggest as sg
            kept = sg.CELL_SURE, sg.PREFILL_MIN
            try:
                for cell_sure, prefill_min in [(c, p) for c in (0.9, 0.99) for p in (0.8, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99)]:
                    sg.CELL_SURE, sg.PREFILL_MIN = cell_sure, prefill_min
                    k = {key: 0 for key in ("prefilled", "prefilled_wrong", "partial", "partial_wrong",
                                            "keys_assist", "keys_typing", "keys_whole", "open_boxes")}
                    for raw, f, checks, written, want in m["fields_raw"]:
                        clerk(k, suggest(raw, f, checks) or {"suggestion": None, "prefill": False, "cells": []},
                              written, want)
                    pre, wrong = k["prefilled"] + k["partial"], k["prefilled_wrong"] + k["partial_wrong"]
                    print(f"  {label} CELL_SURE {cell_sure} PREFILL_MIN {prefill_min}: "
                          f"whole {k['prefilled']}, whole wrong {k['prefilled_wrong']}, "
                          f"partly {k['partial']}, pre-filled wrong {wrong / max(pre, 1):.2%} ({wrong}), "
                          f"keystroke ratio {k['keys_assist'] / max(k['keys_typing'], 1):.3f}")
            finally:
                sg.CELL_SURE, sg.PREFILL_MIN = kept

        def paired_rules(label: str, m: dict) -> None:
            """The same readings decided by the other suggest.py (--rules-from) and by this one."""
            for name, decide in (("before", before.suggest), ("after", suggest)):
                k = {key: 0 for key in ("prefilled", "prefilled_wrong", "partial", "partial_wrong",
                                        "keys_assist", "keys_typing", "keys_whole", "open_boxes")}
                for raw, f, checks, written, want in m["fields_raw"]:
                    clerk(k, decide(raw, f, checks) or {"suggestion": None, "prefill": False, "cells": []},
                          written, want)
                n = max(len(m["fields_raw"]), 1)
                pre, wrong = k["prefilled"] + k["partial"], k["prefilled_wrong"] + k["partial_wrong"]
                print(f"  {label} rules {name}: whole {k['prefilled'] / n:.1%} ({k['prefilled_wrong']} wrong), "
                      f"in part {k['partial'] / n:.1%} ({k['open_boxes'] / max(k['partial'], 1):.2f} open each), "
                      f"pre-filled wrong {wrong / max(pre, 1):.2%} ({wrong}), keystroke ratio "
                      f"{k['keys_assist'] / max(k['keys_typing'], 1):.3f}")

        def why(label: str, m: dict) -> None:
            """Why each written box the clerk must type was not pre-filled, and how often its top digit
            was right anyway; then the keystrokes beyond one Enter a field, by what the field got."""
            from fallbackkit.scan import suggest as sg
            boxes: dict[str, list[int]] = {}
            extra: dict[str, list[int]] = {}
            typing = 0
            for raw, f, checks, written, want in m["fields_raw"]:
                got = suggest(raw, f, checks) or {"suggestion": None, "prefill": False, "cells": []}
                k = {key: 0 for key in ("prefilled", "prefilled_wrong", "partial", "partial_wrong",
                                        "keys_assist", "keys_typing", "keys_whole", "open_boxes")}
                clerk(k, got, written, want)
                typing += k["keys_typing"]
                kind = ("whole" if got["prefill"] else "in part" if got.get("partial") else "blank" if got.get("blank")
                        else "nothing (a box holds something else)" if got.get("rule") and "other than" in got["rule"]
                        else "nothing (rule broken)" if got.get("rule") else "nothing")
                row = extra.setdefault(kind, [0, 0])
                row[0] += 1
                row[1] += k["keys_assist"] - 1
                if got["prefill"]:
                    continue
                for c, rc, ch in zip(got["cells"], raw.get("cells") or [], written):
                    if c.get("sure") or not ch.strip():
                        continue
                    alts, votes = rc.get("alts"), rc.get("votes")
                    if not alts:
                        reason = "read as empty"
                    elif alts[0][0] == "other" or alts[0][1] < sg.CELL_MIN:
                        reason = "something else (or no digit above CELL_MIN)"
                    elif votes and any(v != votes[0] for v in votes):
                        reason = "the two models disagree"
                    elif rc.get("memory"):
                        reason = "the kit's memory weighed in"
                    elif alts[0][1] < sg.CELL_SURE:
                        reason = "models agree, p below CELL_SURE"
                    elif got.get("rule"):
                        reason = "the field breaks a rule / another box holds something else"
                    elif alts[0][1] < sg.PREFILL_MIN:
                        reason = "models agree, p below PREFILL_MIN (what a box pre-filled alone needs)"
                    else:
                        reason = "p above PREFILL_MIN: not with the other sure boxes, or not after the field's rules"
                    row = boxes.setdefault(reason, [0, 0])
                    row[0] += 1
                    row[1] += c.get("digit") == ch
            print(f"  {label}: written boxes left to the clerk, by why (their top digit right):")
            for reason, (n, ok) in sorted(boxes.items(), key=lambda t: -t[1][0]):
                print(f"    {n:5d} {reason} ({ok / max(n, 1):.0%})")
            print(f"  {label}: keystrokes beyond Enter, share of typing (Enter alone on every field: "
                  f"{len(m['fields_raw']) / max(typing, 1):.3f}):")
            for kind, (n, keys) in sorted(extra.items(), key=lambda t: -t[1][1]):
                print(f"    {kind}: {n} fields, {keys / max(typing, 1):.3f}")

        shipped_opinions = digits.opinions

        def mean_opinions(images):
            """digits.opinions with a box's probabilities the two models' mean (before round 8)."""
            probs, votes, feats = shipped_opinions(images)
            second = digits.second_model()
            if not len(probs) or second is None:
                return probs, votes, feats
            x = np.stack(images) if isinstance(images, list) else np.asarray(images, np.float32)
            return (digits.model().probabilities(x) + second.probabilities(x)) / 2, votes, feats

        for first, second, mean in pairs:
            digits.MODEL_PATH, digits.SECOND_PATH = first, second
            digits.model.cache_clear()
            digits.second_model.cache_clear()
            digits.opinions = mean_opinions if mean else shipped_opinions
            if len(pairs) > 1:
                print(f"models {first} + {second if not args.one_model else '(first alone)'}"
                      + (": a box's probabilities the two models' mean" if mean else ""))
            for tier in ("office", "phone"):
                m = evaluate(filled, tier, 20)
                show(tier, m)
                if args.sweep:
                    sweep(tier, m)
                    sweep_partial(tier, m)
                if before is not None:
                    paired_rules(tier, m)
                if args.why:
                    why(tier, m)
            if args.split != "test" or args.sweep_only:
                continue
            # learning: the first 50 fields (neighbouring writers of the test split) corrected by a clerk,
            # then the remaining fields read again with and without the kit's memory
            show("office, fields after the first 50, base model", _skip_first(evaluate, filled, 50))
            learnt = evaluate(filled, "office", 20, 50)
            show("office, fields after the first 50, after learning them", learnt)
            if before is not None:
                paired_rules("office after learning", learnt)
        digits.opinions = shipped_opinions
        if args.split != "test" or args.sweep_only:
            kit.close()
            return
        # cost: recognition per comb field, and engine pages/s on filled MAR sheets with it on and off
        page, g, truth = filled[0]
        hmat = page_transform(DPI)
        t_all, c_all = [], []
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            for name, (f, _) in truth.items():
                digits.read_cells(page, hmat, f, 20.0)
            t_all.append((time.perf_counter() - t0) * 1000 / len(truth))
            c_all.append((time.process_time() - c0) * 1000 / len(truth))
        print(f"recognition: {statistics.median(t_all):.2f} ms per comb field by the clock, "
              f"{statistics.median(c_all):.2f} ms of CPU (all cells written, one field at a time)")
        t_all, c_all = [], []
        for _ in range(5):
            t0, c0 = time.perf_counter(), time.process_time()
            batch = digits.Batch()
            for name, (f, _) in truth.items():
                batch.add(page, hmat, f, 20.0)
            batch.finish()
            t_all.append((time.perf_counter() - t0) * 1000 / len(truth))
            c_all.append((time.process_time() - c0) * 1000 / len(truth))
        print(f"recognition as the scan does it (a page's comb fields together): "
              f"{statistics.median(t_all):.2f} ms per comb field by the clock, "
              f"{statistics.median(c_all):.2f} ms of CPU")
        batch = digits.Batch()
        for name, (f, _) in truth.items():
            batch.add(page, hmat, f, 20.0)
        c_norm, c_nets = [], []
        for _ in range(5):
            c0 = time.process_time()
            norms = [n for n, _ in digits.normalise_many(batch.patches, batch.blacks) if n is not None]
            c1 = time.process_time()
            digits.opinions(norms)
            c_norm.append((c1 - c0) * 1000)
            c_nets.append((time.process_time() - c1) * 1000)
        print(f"  of which, for the page's {len(norms)} inked boxes: normalising (outline, ink, 28 x 28) "
              f"{statistics.median(c_norm):.1f} ms of CPU, the two networks {statistics.median(c_nets):.1f} ms")
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

        def run() -> tuple[float, float]:
            """pages/s by the clock and by this process's CPU time (the shared machine's load
            moves the first, much less the second)."""
            t0, c0 = time.perf_counter(), time.process_time()
            for scan, _ in mar_pages:
                engine.read_page(scan, kit_id=kit.kit_id, secret=kit.secret, geometry_for=lookup.get)
            return (len(mar_pages) / (time.perf_counter() - t0), len(mar_pages) / (time.process_time() - c0))

        def median_run() -> tuple[float, float]:
            runs = [run() for _ in range(3)]
            return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        on = median_run()
        class Off:  # no digit reading: the engine as it was before
            def add(self, *a, **k):
                return []

            def finish(self):
                pass
        real = engine.digits.Batch
        engine.digits.Batch = Off
        try:
            off = median_run()
        finally:
            engine.digits.Batch = real
        print(f"engine on filled MAR pages (one core, in memory): {on[0]:.1f} pages/s with digits, "
              f"{off[0]:.1f} without ({len(mar_pages)} pages); per CPU second {on[1]:.1f} with, {off[1]:.1f} without; "
              f"digits {1000 / on[1] - 1000 / off[1]:.1f} ms of CPU per page")
        kit.close()


if __name__ == "__main__":
    main()
