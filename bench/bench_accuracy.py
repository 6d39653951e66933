"""Accuracy of the scan engine on synthetic filled sheets, in four damage tiers (clean, office, hard,
phone) and two occlusion tiers (occl-flat, occl-phone: a sheet of plain or ruled paper or a label
lying over fields of an office scan or a phone photo).

Real printed PDFs (a kit with two wards and blank lab stock) are rendered, filled with random pen
marks (fallbackkit.scan.simulate.fill_page), damaged (fallbackkit.scan.degrade) and read in memory
with read_page. Printed per tier: pages identified, mark fields and boxes, silent errors (a wrong
value accepted: must be 0), mark fields sent to review (targets: <= 1 % clean/office, <= 5 %
hard/phone), ink accepted as blank (must be 0), fields under an occluder accepted (must be 0),
the per-page read time median, and per tier the figures before and after the visibility check
(the same readings re-decided from their raw measures without it).

    .venv/bin/python bench/bench_accuracy.py [--quick] [--pages N] [--seed S] [--tiers clean,office]
        [--only mar] [--mar-layout as-printed|dense|never-dense]

--only TEMPLATE reads only that form's pages; --mar-layout dense lays out every MAR with the dense
layout (the tighter slots a MAR gets when that keeps it on one sheet), never-dense none of them, so
that the reader's figures on both geometries can be set side by side on the same census and seed.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fallbackkit.generate import import_census, print_blank, print_ward, sheet_geometry  # noqa: E402
from fallbackkit.generate.sample import write_census  # noqa: E402
from fallbackkit.scan.degrade import OCCLUDERS, TIERS, degrade, occlude  # noqa: E402
from fallbackkit.scan.engine import PAGE_COVERED, read_page  # noqa: E402
from fallbackkit.scan.read import MARK_TYPES, decide  # noqa: E402
from fallbackkit.scan.simulate import (RENDER_DPI, fields_under, fill_page, identify,  # noqa: E402
                                       random_occluder, render_pdf)
from fallbackkit.store import init_kit  # noqa: E402

# paper over fields (flat scans from the office scanner; phone photos), every page
OCCLUSION_TIERS = {"occl-flat": 200, "occl-phone": 300}
ALL_TIERS = (*TIERS, *OCCLUSION_TIERS)


def dense_mars(always: bool = True) -> None:
    """Every MAR laid out dense (templates/layout.py DENSE) whether or not it saves a sheet; or,
    always=False, none (the compact spacing instead)."""
    from fallbackkit.templates import layout
    real = layout._flow_form

    def flow(template, paper, langs, context, spacing, **sides):  # sides: the two-sided MAR's tries
        if template.medications is not None:
            spacing = layout.DENSE if always else layout.SPACINGS[1] if spacing == layout.DENSE else spacing
        return real(template, paper, langs, context, spacing, **sides)

    layout._flow_form = flow


def build_kit(tmp: Path):
    kit = init_kit(tmp / "kit", actor="bench")
    patients, meds = write_census(tmp / "census")
    import_census(kit, patients, meds, actor="bench", as_of="2026-11-28T06:00:00+01:00")
    pdfs = [print_ward(kit, "3B", tmp / "3b.pdf", actor="bench").out_path,
            print_ward(kit, "ICU", tmp / "icu.pdf", actor="bench").out_path,
            print_blank(kit, "lab-request", 4, tmp / "lab.pdf", actor="bench").out_path]
    return kit, pdfs


def load_pages(kit, pdfs, dpi, only: str | None = None):
    pages = []
    for pdf in pdfs:
        for img in render_pdf(pdf, dpi):
            sp = identify(img, kit.kit_id, kit.secret)
            if sp is not None and (only is None or sp.template == only):
                pages.append((sp.sheet_id, img))
    return pages


def compare(reading, truth, stats, problems, where):
    t = truth
    if reading.type in MARK_TYPES:
        stats["mark_fields"] += 1
        stats["boxes"] += len(reading.raw.get("boxes", []))
        styles = t["style"] if isinstance(t["style"], list) else [t["style"]]
        stats["marked_boxes"] += sum(s != "empty" for s in styles)
        stats["clear_fields"] += not t["should_review"]
        if reading.status == "review":
            stats["mark_review"] += 1
            if not t["should_review"]:
                stats["review_unexpected"] += 1
                if len(problems) < 12:
                    problems.append(f"{where} {reading.field}: review ({reading.reason}) style={t['style']}")
        else:
            if reading.value != t["value"]:
                stats["silent_errors"] += 1
                problems.append(f"{where} {reading.field}: ACCEPTED {reading.value!r} truth {t['value']!r} "
                                f"style={t['style']}")
            elif t["should_review"]:
                stats["ambiguous_accepted_right"] += 1
    else:
        stats["hand_fields"] += 1
        # an ink-only field (a signature) accepted as signed (True) is right; accepted otherwise, ink is lost
        if t["ink"] and reading.status == "accepted" and reading.value is not True:
            stats["ink_as_blank"] += 1
            problems.append(f"{where} {reading.field}: ink accepted as blank")
        if not t["ink"] and reading.status == "review" and not reading.raw.get("page_review"):
            stats["blank_hand_review"] += 1


OCCLUSION_SIZES = [(76, 76), (38, 51), (120, 25), (105, 148), (100, 70)]


def occlude_page(img, geom, dpi, rng):
    """The occlusion tier: plain paper (various sizes), ruled paper or a label over fields, then the
    damage of an office scanner or a phone. Returns the image and the names of the hidden fields."""
    kind = str(rng.choice(OCCLUDERS))
    size = (60, 30) if kind == "label" else OCCLUSION_SIZES[int(rng.integers(0, len(OCCLUSION_SIZES)))]
    rect = random_occluder(geom, rng, size)
    angle = 0.0 if kind == "label" else float(rng.uniform(-8, 8))
    covered = occlude(img, rect, dpi, rng, kind, angle)
    d = max(size) / 2 * abs(math.sin(math.radians(angle))) + 0.5
    hidden = set(fields_under(geom, [rect[0] + d, rect[1] + d, size[0] - 2 * d, size[1] - 2 * d]))
    return degrade(covered, "phone" if dpi == 300 else "office", rng, src_dpi=dpi), hidden


def without_visibility(reading, geom):
    """The reading as decided before the visibility check (issue 12): the same stored raw measures,
    re-decided without the page's printed-outline reference and without a covered-page review."""
    raw = {k: v for k, v in reading.raw.items() if k != "printed_ref"}
    if str(raw.get("page_review", "")).startswith(PAGE_COVERED):
        raw.pop("page_review")
    f = next(f for f in geom["fields"] if f["name"] == reading.field)
    options = [o["value"] for o in f["options"]] if reading.type in ("choice", "multichoice") else None
    value, _, status, reason = decide(raw, reading.type, options)
    return SimpleNamespace(field=reading.field, type=reading.type, raw=raw, value=value, status=status, reason=reason)


def run_tier(tier, kit, pages, n, seed, hard_cases=0.03, spilled=0.03):
    rng = np.random.default_rng(seed)
    geometries = {}
    stats = dict.fromkeys(["pages", "identified", "read", "mark_fields", "clear_fields", "boxes", "marked_boxes",
                           "mark_review",
                           "review_unexpected", "silent_errors", "ambiguous_accepted_right", "hand_fields",
                           "ink_as_blank", "blank_hand_review", "hidden", "hidden_accepted"], 0)
    stats_before = dict(stats)
    times = []
    problems: list[str] = []
    dpi = OCCLUSION_TIERS.get(tier) or RENDER_DPI[tier]
    for i in range(n):
        sheet_id, clean = pages[i % len(pages)]
        geom = geometries.get(sheet_id) or geometries.setdefault(sheet_id, sheet_geometry(kit, sheet_id))
        blank = rng.random() < 0.05
        marked, truth = fill_page(clean, geom, dpi, rng, blank=blank, fill=0.85, hard_cases=hard_cases,
                                  spilled=spilled)
        hidden: set[str] = set()
        if tier in OCCLUSION_TIERS:
            img, hidden = occlude_page(marked, geom, dpi, rng)
        else:
            img = degrade(marked, tier, rng, src_dpi=dpi)
        t0 = time.perf_counter()
        res = read_page(img, kit_id=kit.kit_id, secret=kit.secret, geometry_for=geometries.get)
        times.append((time.perf_counter() - t0) * 1000)
        stats["pages"] += 1
        if res.sheet_id == sheet_id:
            stats["identified"] += 1
        if res.status != "read":
            problems.append(f"{tier} page {i} {sheet_id}: {res.reason} {res.detail}")
            continue
        stats["read"] += 1
        for reading in res.readings:
            compare(reading, truth[reading.field], stats, problems, f"{tier} p{i}")
            before = without_visibility(reading, geom)
            compare(before, truth[reading.field], stats_before, [], "")
            for st, r in ((stats, reading), (stats_before, before)):
                if reading.field in hidden:
                    st["hidden"] += 1
                    st["hidden_accepted"] += r.status == "accepted"
            if reading.field in hidden and reading.status == "accepted":
                problems.append(f"{tier} p{i} {reading.field}: under the occluder, ACCEPTED {reading.value!r}")
    return stats, stats_before, times, problems


def speed(kit, pages_by_dpi, n):
    out = {}
    for dpi, pages in pages_by_dpi.items():
        geometries = {}
        times = []
        for i in range(n):
            sheet_id, img = pages[i % len(pages)]
            geometries.setdefault(sheet_id, sheet_geometry(kit, sheet_id))
            t0 = time.perf_counter()
            read_page(img, kit_id=kit.kit_id, secret=kit.secret, geometry_for=geometries.get)
            times.append((time.perf_counter() - t0) * 1000)
        out[dpi] = times
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="20 pages per tier")
    ap.add_argument("--pages", type=int, default=None, help="pages per tier (default 200)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tiers", default=",".join(ALL_TIERS))
    ap.add_argument("--hard-cases", type=float, default=0.03,
                    help="share of pen marks drawn faint or half outside the box (default 0.03)")
    ap.add_argument("--spilled", type=float, default=0.03,
                    help="share of the other marks drawn as big crosses spilling out of their box (default 0.03)")
    ap.add_argument("--only", default=None, metavar="TEMPLATE", help="read only this form's pages (e.g. mar)")
    ap.add_argument("--mar-layout", choices=("as-printed", "dense", "never-dense"), default="as-printed",
                    help="dense: every MAR laid out with the dense layout's tighter slots; never-dense: none")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    n = args.pages or (20 if args.quick else 200)
    if args.mar_layout != "as-printed":
        dense_mars(args.mar_layout == "dense")
    with tempfile.TemporaryDirectory() as tmp:
        kit, pdfs = build_kit(Path(tmp))
        rendered = {dpi: load_pages(kit, pdfs, dpi, args.only) for dpi in (200, 300)}
        print(f"kit: {len(rendered[200])} printed sheets; {n} pages per tier; marked = boxes with a pen mark drawn")
        print("ident = pages whose sheet was identified; read = identified and aligned (not quarantined)")
        print("review% = all mark fields sent to review, including those made ambiguous on purpose (two marks,"
              " faint, half outside, mark + cancelled);\nclear->rev% = mark fields with clear marks sent to review"
              " (the review targets apply to these); silent = wrong value accepted")
        print("occl-*: a sheet of plain or ruled paper or a label over fields (office scan / phone photo);"
              " hidden = fields under it,\nhid->acc = hidden fields accepted (silent if covered: must be 0)")
        print(f"{'tier':10} {'pages':>5} {'ident':>5} {'read':>5} {'fields':>6} {'boxes':>6} {'marked':>6} "
              f"{'silent':>6} {'review%':>7} {'clear->rev%':>11} {'ink->blank':>10} {'hidden':>6} {'hid->acc':>8} "
              f"{'med ms':>7}")
        ok = True
        comparison: list[str] = []
        for k, tier in enumerate(args.tiers.split(",")):
            stats, before, times, problems = run_tier(tier, kit, rendered[OCCLUSION_TIERS.get(tier) or RENDER_DPI[tier]], n,
                                              args.seed + k, args.hard_cases,
                                              args.spilled)
            rate = 100.0 * stats["mark_review"] / max(1, stats["mark_fields"])
            clear_rate = 100.0 * stats["review_unexpected"] / max(1, stats["clear_fields"])
            rate_before = 100.0 * before["mark_review"] / max(1, before["mark_fields"])
            comparison.append(f"{tier:10} silent {before['silent_errors']:4} -> {stats['silent_errors']:<4} "
                              f"hidden accepted {before['hidden_accepted']:4} -> {stats['hidden_accepted']:<4} "
                              f"ink->blank {before['ink_as_blank']:3} -> {stats['ink_as_blank']:<3} "
                              f"mark review% {rate_before:6.2f} -> {rate:6.2f}")
            print(f"{tier:10} {stats['pages']:5} {stats['identified']:5} {stats['read']:5} {stats['mark_fields']:6} "
                  f"{stats['boxes']:6} {stats['marked_boxes']:6} {stats['silent_errors']:6} {rate:7.2f} "
                  f"{clear_rate:11.2f} {stats['ink_as_blank']:10} {stats['hidden']:6} {stats['hidden_accepted']:8} "
                  f"{statistics.median(times):7.1f}")
            # on occluded pages the clear marks under the paper go to review by design: no review target
            target = 1.0 if tier in ("clean", "office") else 5.0 if tier in TIERS else 100.0
            if stats["silent_errors"] or stats["ink_as_blank"] or stats["read"] != stats["pages"] \
                    or clear_rate > target or stats["hidden_accepted"]:
                ok = False
            if args.verbose or stats["silent_errors"] or stats["ink_as_blank"]:
                for p in problems[:15]:
                    print("   ", p)
        print("before -> after the visibility check (the same pages and raw measures, re-decided without it):")
        for line in comparison:
            print("   ", line)
        sp = speed(kit, rendered, 20 if args.quick else 60)
        for dpi, times in sp.items():
            print(f"read time, clean page in memory, {dpi} dpi: median {statistics.median(times):.1f} ms "
                  f"({1000 / statistics.median(times):.0f} pages/s on one core)")
        kit.close()
    print("targets met" if ok else "TARGETS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
