"""Digit suggestions for comb fields: real handwritten digits (the writer-disjoint test split) written
into real printed sheets, damaged like an office scan, scanned end to end into a real store.
A suggestion is never a value; a rule-breaking one is never pre-filled."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from fallbackkit.cli import cli
from fallbackkit.generate import print_patient
from fallbackkit.scan import degrade, digits, digits_synth
from fallbackkit.scan.pipeline import list_readings, scan_paths
from fallbackkit.scan.suggest import Checks, suggest
from fallbackkit.store.decisions import record_review
from digits_helpers import clear_digit, real_digit, write_comb
from scan_engine_helpers import Sheets, field
from scan_pipeline_helpers import write_png

DPI = 200


def test_model_ships_small_and_reads_the_test_split_it_never_saw():
    assert digits.MODEL_PATH.stat().st_size < 3_000_000
    images, labels = digits_synth.load_mnist()
    rng = np.random.default_rng(11)
    test = range(digits_synth.VALID_END, digits_synth.VALID_END + 400)
    cells = [digits_synth.training_cell(images[i], rng, "office") for i in test]
    probs = digits.classify(cells)
    top = probs.argmax(axis=1)
    assert (top == labels[list(test)]).mean() >= 0.95  # 0.93 before the stroke-keeping outline removal
    # calibrated: confident answers are right more often than the rest
    sure = probs.max(axis=1) >= 0.95
    assert (top[sure] == labels[list(test)][sure]).mean() >= 0.98


def test_outline_removal_keeps_the_strokes_that_cross_or_touch_it():
    """A cell cut at CELL_PPM with 1 mm around: the printed outline (one line along each side) goes,
    a stroke that crosses the top line or lies along the bottom one stays whole."""
    ppm = digits.CELL_PPM
    m = int(round(ppm))
    h, w = int(round(10 * ppm)), int(round(7.5 * ppm))
    p = np.full((h, w), 245, np.uint8)
    for r in (m, h - m):
        p[r - 1:r + 2, :] = 70
    for c in (m, w - m):
        p[:, c - 1:c + 2] = 70
    p[m - 3:m + 30, 28:32] = 25                       # a stroke from above the top line down into the box
    p[h - m - 4:h - m + 2, 20:38] = 25                # a stroke lying on the bottom line, thicker than it
    dark = np.clip((245 - p.astype(np.float32)) / 215, 0, 1) >= digits.INK_DARK
    kept, removed = digits.strip_outline(dark, m)
    assert kept[m - 3:m + 30, 28:32].all()             # the crossing stroke, through the line
    assert not kept[m - 1:m + 2, 12:24].any() and not kept[m - 1:m + 2, 36:w - 12].any()  # the line
    assert not kept[20:h - 20, m - 1:m + 2].any() and not kept[20:h - 20, w - m - 1:w - m + 2].any()
    assert kept[h - m - 4:h - m - 2, 20:38].all()      # the bottom stroke, above the line's blurred edge
    norm, ink = digits.normalise(p, 20.0)
    assert norm is not None and ink >= 33 * 4  # the crossing stroke whole (the old mask cut 1 mm of it)


def _outlined_cell() -> tuple[np.ndarray, int]:
    """A blank cell patch as cut at CELL_PPM (1 mm around), its printed outline 3 px wide, and m."""
    ppm = digits.CELL_PPM
    m = int(round(ppm))
    h, w = int(round(10 * ppm)), int(round(7.5 * ppm))
    p = np.full((h, w), 245, np.uint8)
    for r in (m, h - m):
        p[r - 1:r + 2, :] = 70
    for c in (m, w - m):
        p[:, c - 1:c + 2] = 70
    return p, m


def test_a_long_stroke_beside_the_outline_is_not_taken_for_it():
    """The base of a 2 written just above the bottom line, along most of the cell: its rows are
    not the line's (the line runs the whole side), so it stays (LINE_COVER 0.5 took it for line)."""
    p, m = _outlined_cell()
    h, w = p.shape
    p[h - m - 4:h - m - 1, 12:w - 16] = 25          # 32 px of the 44 px side, touching the line
    dark = np.clip((245 - p.astype(np.float32)) / 215, 0, 1) >= digits.INK_DARK
    kept, removed = digits.strip_outline(dark, m)
    assert kept[h - m - 4:h - m - 2, 12:w - 16].all()
    assert not kept[h - m - 1:h - m + 2, 2:10].any() and not kept[20:h - 20, m - 1:m + 2].any()


def test_a_pale_pen_stroke_stays_whole():
    """Pale parts of a stroke (below INK_DARK, above INK_FAINT) count where they join its dark parts;
    paper noise of the same paleness that joins no stroke does not."""
    p, m = _outlined_cell()
    p[20:30, 28:32] = 25
    p[30:50, 28:32] = 184                            # 0.27 of the way from paper to black
    p[50:60, 28:32] = 25
    p[25:29, 40:44] = 184                            # a pale smudge on its own
    norm, ink = digits.normalise(p, 20.0)
    assert norm is not None and ink == 40 * 4        # the whole stroke (the dark parts alone: 80)
    assert norm[:, 20:].max() == 0                   # and nothing of the smudge


def test_a_pages_cells_normalised_together_read_as_each_alone():
    """The scan normalises a page's cells side by side in one go; training and learning normalise one
    cell at a time: the same pixels either way."""
    images, _ = digits_synth.load_mnist()
    rng = np.random.default_rng(3)
    patches, blacks = [], []
    for i in range(12):
        page, m = _outlined_cell()
        if i % 4:                                    # a few cells left empty
            digits_synth.paste(page, np.eye(3) * [[digits.CELL_PPM], [digits.CELL_PPM], [1]],
                               digits_synth.ink_alpha(images[i], (1, 1, 5.5, 8), digits.CELL_PPM, rng)[0],
                               (1.0 + rng.uniform(-0.3, 0.8), 1.5), digits.CELL_PPM)
        patches.append(degrade.office(page, rng) if i % 2 else page)
        blacks.append(float(rng.uniform(0, 60)))
    together = digits.normalise_many(patches, blacks)
    for (n1, ink1), p, b in zip(together, patches, blacks):
        n2, ink2 = digits.normalise(p, b)
        assert ink1 == ink2 and (n1 is None) == (n2 is None)
        assert n1 is None or np.array_equal(n1, n2)
    assert sum(n is None for n, _ in together) == 3


def _cells(*labels_p):
    out = []
    for lp in labels_p:
        if lp is None:
            out.append({"ink": 0})
        else:
            out.append({"ink": 200, "alts": [[lp[0], lp[1]], ["other", round(1 - lp[1], 4)]]})
    return out


def _sure(text):
    return _cells(*[(ch, 0.999) if ch != " " else None for ch in text])


TIME = {"name": "c1.time", "type": "datetime", "format": "time", "cells_mm": [[0, 0, 5.5, 8]] * 4}
DATE = {"name": "obs_date", "type": "datetime", "format": "date", "cells_mm": [[0, 0, 5.5, 8]] * 8}
SPO2 = {"name": "c1.spo2", "type": "number", "digits": 3, "decimals": 0, "cells_mm": [[0, 0, 5.5, 8]] * 3}
TEMP = {"name": "c1.temperature", "type": "number", "digits": 2, "decimals": 1, "cells_mm": [[0, 0, 5.5, 8]] * 3}


def test_rule_breaking_suggestions_are_shown_with_the_rule_and_never_prefilled():
    import datetime as dt
    window = Checks(dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    good = suggest({"cells": _sure("0830")}, TIME, window)
    assert good["suggestion"] == "08:30" and good["prefill"] and good["rule"] is None
    for raw, f, checks, rule in [
        (_sure("2570"), TIME, window, "not a time of day"),
        (_sure("31022026"), DATE, window, "not a calendar date"),
        (_sure("28112019"), DATE, window, "outside"),
        (_sure("130"), SPO2, Checks(value_range=(50, 100)), "plausible range"),
    ]:
        got = suggest({"cells": raw}, f, checks)
        assert got["suggestion"] and not got["prefill"], got
        assert rule in got["rule"], got
    assert suggest({"cells": _sure("372")}, TEMP, Checks(value_range=(30.0, 45.0)))["suggestion"] == "37.2"
    assert suggest({"cells": _sure(" 98")}, SPO2, Checks(value_range=(50, 100)))["suggestion"] == "98"
    # a MAR time far from the scheduled time of its column
    mar = {**TIME, "name": "m1.s1.time", "scheduled": "08:00"}
    assert "scheduled" in suggest({"cells": _sure("1430")}, mar, window)["rule"]
    assert suggest({"cells": _sure("0815")}, mar, window)["prefill"]
    midnight = {**TIME, "name": "m1.s4.time", "scheduled": "24:00"}
    assert suggest({"cells": _sure("2350")}, midnight, window)["prefill"]
    # an unsure digit: suggested, highlighted, the field not pre-filled (only its sure boxes)
    unsure = suggest({"cells": _cells(("0", 0.9999), ("8", 0.7), ("3", 0.9999), ("0", 0.9999))}, TIME, window)
    assert unsure["suggestion"] == "08:30" and not unsure["prefill"] and unsure["partial"]
    assert [c["low"] for c in unsure["cells"]] == [False, True, False, False]
    assert [c["sure"] for c in unsure["cells"]] == [True, False, True, True]
    # a page that goes to review as a whole is never pre-filled
    assert not suggest({"cells": _sure("0830"), "page_review": "poor page fit"}, TIME, window)["prefill"]


def test_the_fields_rules_choose_among_a_cells_alternatives_and_close_calls_are_not_prefilled():
    import datetime as dt
    window = Checks(dt.date(2026, 1, 1), dt.date(2026, 12, 31))

    def cell(*alts):
        return {"ink": 200, "alts": [list(a) for a in alts]}
    sure = [cell(("3", 0.9999)), cell(("0", 0.9999))]
    # a 7 or a 2 in the hour's first box: 73:30 is no time of day, so 23:30 it is, pre-filled
    got = suggest({"cells": [cell(("7", 0.55), ("2", 0.449)), cell(("3", 0.9999))] + sure}, TIME, window)
    assert got["suggestion"] == "23:30" and got["rule"] is None and got["prefill"], got
    assert got["suggestion_confidence"] > 0.95
    assert got["cells"][0]["digit"] == "2" and got["cells"][0]["low"]  # highlighted: chosen by the rules
    # a 3 or a 5 in the minutes: both are times, the clerk decides (suggested, never pre-filled)
    close = suggest({"cells": [cell(("0", 0.9999)), cell(("8", 0.9999)), cell(("3", 0.55), ("5", 0.449)),
                               cell(("0", 0.9999))]}, TIME, window)
    assert close["suggestion"] == "08:30" and not close["prefill"] and close["suggestion_confidence"] < 0.6
    # SpO2 1?0: 100 is the only plausible reading of a 0 or a 3 in the middle box
    spo2 = suggest({"cells": [cell(("1", 0.9999)), cell(("3", 0.5), ("0", 0.4999)), cell(("0", 0.9999))]},
                   SPO2, Checks(value_range=(50, 100)))
    assert spo2["suggestion"] == "100" and spo2["prefill"], spo2
    # "something else" is not a rule: its share stays against the digit (no pre-fill)
    other = suggest({"cells": [cell(("0", 0.9999)), cell(("8", 0.7), ("other", 0.3)), cell(("3", 0.9999)),
                               cell(("0", 0.9999))]}, TIME, window)
    assert other["suggestion"] == "08:30" and not other["prefill"]


def test_only_the_sure_boxes_are_prefilled_and_together_they_are_sure():
    """Partial pre-fill (issue 10): the boxes the machine is sure of given the field's rules go in
    the box, the others are left to the clerk; all pre-filled boxes together must be right with
    probability PREFILL_MIN; a suggestion that breaks a rule is not pre-filled even in part."""
    import datetime as dt
    from fallbackkit.scan.suggest import PREFILL_MIN, keeps_prefill, prefill_pattern
    window = Checks(dt.date(2026, 1, 1), dt.date(2026, 12, 31))

    def cell(*alts):
        return {"ink": 200, "alts": [list(a) for a in alts]}
    # one unsure minute digit (3 or 5): 08:_0, the cursor will wait on the third box
    got = suggest({"cells": [cell(("0", 0.9999)), cell(("8", 0.9999)), cell(("3", 0.55), ("5", 0.449)),
                             cell(("0", 0.9999))]}, TIME, window)
    assert not got["prefill"] and got["partial"] and prefill_pattern(got, TIME) == "08:_0"
    # a 7, 3 or 1 after a 2: 27 is no hour, 23 and 21 both are: the box is left to the clerk, 2_:15
    got = suggest({"cells": [cell(("2", 0.9999)), cell(("7", 0.5), ("3", 0.3), ("1", 0.2)), cell(("1", 0.9999)),
                             cell(("5", 0.9999))]}, TIME, window)
    assert got["suggestion"] == "23:15" and prefill_pattern(got, TIME) == "2_:15"
    # four boxes each right with 0.985: together 0.94 < PREFILL_MIN, so not all of them are pre-filled
    assert 0.985 ** 4 < PREFILL_MIN
    got = suggest({"cells": _cells(*[(d, 0.985) for d in "0830"])}, TIME, window)
    pattern = prefill_pattern(got, TIME)
    assert not got["prefill"] and got["partial"] and pattern.count("_") >= 1
    assert 0.985 ** (4 - pattern.count("_")) >= PREFILL_MIN
    # a number: the sure empty box stays empty, the unsure last digit is left to the clerk
    got = suggest({"cells": _cells(None, ("7", 0.9999), ("2", 0.6))}, SPO2, Checks(value_range=(50, 100)))
    assert got["partial"] and prefill_pattern(got, SPO2) == " 7_"
    # rule-breaking suggestions: nothing pre-filled, not even the sure boxes
    for raw, f, checks in [(_sure("2570"), TIME, window), (_sure("130"), SPO2, Checks(value_range=(50, 100))),
                           (_sure("31022026"), DATE, window)]:
        got = suggest({"cells": raw}, f, checks)
        assert got["rule"] and not got["prefill"] and not got["partial"] and prefill_pattern(got, f) is None
        assert not any(c["sure"] for c in got["cells"])
    # a page that goes to review as a whole: nothing pre-filled
    got = suggest({"cells": _cells(("0", 0.9999), ("8", 0.7), ("3", 0.9999), ("0", 0.9999)),
                   "page_review": "poor page fit"}, TIME, window)
    assert not got["partial"] and not got["prefill"]
    # every box surely empty: one key says blank; a box with stray ink is not surely empty
    assert suggest({"cells": _cells(None, None, None)}, SPO2)["blank"]
    assert not suggest({"cells": [{"ink": 0}, {"ink": 5}, {"ink": 0}]}, SPO2)["blank"]
    # did the clerk keep the pre-filled boxes? (report: a pre-filled digit changed)
    assert keeps_prefill("08:_0", "08:30", False) and keeps_prefill("08:_0", "08:50", False)
    assert not keeps_prefill("08:_0", "09:30", False)
    assert keeps_prefill(" 7_", "72", True) and keeps_prefill(" 7_", "7", True) and not keeps_prefill(" 7_", "82", True)
    assert keeps_prefill("37._", "37", True) and keeps_prefill("37._", "37.4", True) and not keeps_prefill("37._", "38.4", True)


def test_a_box_holding_something_else_is_left_open_and_the_sure_boxes_around_it_are_prefilled():
    """A letter, a scribble or a crossed-out digit in one box: no suggestion for the field, the box is
    named in the rule and left to the clerk, and the boxes around it are pre-filled by the rules of a
    partial pre-fill (sure each, sure together given the field's rules, both models agreeing); a box
    that reads as empty beside it is left open too (a stroke lost in the cut would be a pre-filled
    mistake), and nothing is pre-filled on a page under review."""
    import datetime as dt
    from fallbackkit.scan.suggest import prefill_pattern
    window = Checks(dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    pulse = {**SPO2, "name": "c1.pulse"}
    in_range = Checks(value_range=(20, 250))

    def cell(*alts, votes=None):
        out = {"ink": 200, "alts": [list(a) for a in alts]}
        if votes:
            out["votes"] = votes
        return out
    one, six, five = (cell((d, 0.9999), votes=[d, d]) for d in "165")
    scribble = cell(("other", 0.7), ("5", 0.27), votes=["other", "other"])
    got = suggest({"cells": [one, scribble, six]}, pulse, in_range)
    assert got["suggestion"] is None and not got["prefill"] and "box 2" in got["rule"], got
    assert got["partial"] and prefill_pattern(got, pulse) == "1_6"
    assert [c["sure"] for c in got["cells"]] == [True, False, True] and got["cells"][1]["digit"] is None
    assert "votes" not in got["cells"][0] and "choices" not in got["cells"][1]
    # an empty-looking box beside the unread one stays open: __5, never " _5"
    got = suggest({"cells": [{"ink": 0}, scribble, five]}, pulse, in_range)
    assert got["partial"] and prefill_pattern(got, pulse) == "__5"
    # the boxes around it must be sure on their own and agreed by both models
    unsure = cell(("6", 0.8), ("5", 0.2), votes=["6", "6"])
    split = cell(("6", 0.9999), votes=["6", "5"])
    for third in (unsure, split):
        got = suggest({"cells": [one, scribble, third]}, pulse, in_range)
        assert prefill_pattern(got, pulse) == "1__", got
    # the rules cannot judge a digit string with the unread box in it: a 7 or a 3 in the minutes
    # (70 is no minute) is left open beside it, where a whole suggestion would have made it a 3
    got = suggest({"cells": [cell(("other", 0.9), votes=["other", "other"]), cell(("9", 0.9999)),
                             cell(("7", 0.6), ("3", 0.4)), cell(("0", 0.9999))]}, TIME, window)
    assert got["partial"] and prefill_pattern(got, TIME) == "_9:_0", got
    assert suggest({"cells": [cell(("0", 0.9999)), cell(("9", 0.9999)), cell(("7", 0.6), ("3", 0.4)),
                              cell(("0", 0.9999))]}, TIME, window)["suggestion"] == "09:30"
    # every box unread or unsure: nothing pre-filled; a page under review: nothing either
    assert not suggest({"cells": [scribble, scribble, scribble]}, pulse, in_range)["partial"]
    # more than one box unread (a word or a scribble across the boxes): a piece of it that looks like a sure
    # digit is not pre-filled either (a scribbled birth date's first box read as 0 at 0.998 by both models)
    date = {"name": "birth_date", "type": "datetime", "format": "date", "cells_mm": [[0, 0, 5, 8]] * 8}
    loop = cell(("0", 0.998), ("other", 0.002), votes=["0", "0"])
    got = suggest({"cells": [loop, scribble, scribble, scribble] + [{"ink": 0}] * 4}, date, Checks(birth=True))
    assert "boxes 2, 3, 4" in got["rule"] and not got["partial"] and not any(c["sure"] for c in got["cells"]), got
    got = suggest({"cells": [one, scribble, scribble]}, pulse, in_range)
    assert not got["partial"] and prefill_pattern(got, pulse) is None
    got = suggest({"cells": [one, scribble, six], "page_review": "poor page fit"}, pulse, in_range)
    assert not got["partial"] and not any(c["sure"] for c in got["cells"])


def test_the_kits_memory_confirms_or_doubts_the_models_and_never_overrules_them():
    """Issue 10: after learning 50 fields of one writer the memory made a misread digit surer (0.99 %
    of pre-fills wrong). It may now lower a digit or confirm it, never raise one towards "sure"."""
    from fallbackkit.scan.suggest import CELL_SURE
    assert digits.MEMORY_RAISE_MAX < CELL_SURE
    rng = np.random.default_rng(5)
    feats = rng.normal(size=(6, 16)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    memory = digits.Memory(feats, np.full(6, 9))          # this hand's cells, all labelled 9

    def probs(**p):
        out = np.full(11, 0.0)
        for k, v in p.items():
            out[int(k[1:])] = v
        out[digits.OTHER] = 1 - out.sum()
        return out.astype(np.float32)
    base = np.stack([probs(d7=0.95, d9=0.03), probs(d9=0.85, d4=0.1), probs(d7=0.6, d9=0.3), probs(d9=0.5, d4=0.45)])
    far = -feats[0]                                        # a cell unlike anything in the memory
    after, touched = memory.blend(np.stack([feats[0], feats[1], feats[2], far]), base)
    assert touched.tolist() == [True, True, True, False]
    assert (after <= np.maximum(base, digits.MEMORY_RAISE_MAX) + 1e-6).all()
    assert after[0, 7] < 0.5 and after[0, 9] <= digits.MEMORY_RAISE_MAX   # doubted, not overruled into a sure 9
    assert after[1, 9] <= 0.85 + 1e-6                      # confirmed: no surer than the models said
    assert after[2, 9] > after[2, 7]                       # shown first ...
    assert np.array_equal(after[3], base[3])               # nothing close: the models alone

    import datetime as dt
    window = Checks(dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    sure = {"ink": 200, "alts": [["8", 0.9999]], "votes": ["8", "8"]}
    rest = [sure, {"ink": 200, "alts": [["3", 0.9999]], "votes": ["3", "3"]},
            {"ink": 200, "alts": [["0", 0.9999]], "votes": ["0", "0"]}]
    # ... but a digit the memory put first against both models is never pre-filled, even where the
    # field's rules leave no other (7 is no first digit of an hour)
    doubted = {"ink": 200, "alts": [["1", 0.61], ["7", 0.38]], "votes": ["7", "7"], "memory": True}
    got = suggest({"cells": [doubted] + rest}, TIME, window)
    assert got["suggestion"] == "18:30" and not got["prefill"] and got["partial"], got
    assert [c["sure"] for c in got["cells"]] == [False, True, True, True]
    # the models' own second choice picked by the rules (no memory) is pre-filled as before
    ruled = {"ink": 200, "alts": [["7", 0.55], ["1", 0.449]], "votes": ["7", "7"]}
    assert suggest({"cells": [ruled] + rest}, TIME, window)["prefill"]
    # the memory confirming the models: as sure as the models
    confirmed = {"ink": 200, "alts": [["0", 0.9999]], "votes": ["0", "0"], "memory": True}
    assert suggest({"cells": [confirmed] + rest}, TIME, window)["prefill"]


def test_a_box_the_two_models_read_differently_is_never_prefilled():
    """The second opinion: a second network (another seed, another reshaping of the training digits)
    reads every inked box; a box where the two disagree is not pre-filled, even when the field's
    rules leave one reading (SpO2 700 is out of range, so 100 it would be)."""
    spo2 = Checks(value_range=(50, 100))
    zero = {"ink": 200, "alts": [["0", 0.9999]], "votes": ["0", "0"]}
    split = {"ink": 200, "alts": [["1", 0.6], ["7", 0.4]], "votes": ["1", "7"]}
    got = suggest({"cells": [split, zero, zero]}, SPO2, spo2)
    assert got["suggestion"] == "100" and not got["prefill"]
    assert [c["sure"] for c in got["cells"]] == [False, True, True]
    assert "votes" not in got["cells"][0] and "memory" not in got["cells"][0]
    agreed = {**split, "votes": ["1", "1"]}
    assert suggest({"cells": [agreed, zero, zero]}, SPO2, spo2)["prefill"]
    # the shipped models: both small, each reading every inked cell of a real scan (below)
    assert digits.SECOND_PATH.stat().st_size < 3_000_000
    images, labels = digits_synth.load_mnist()
    rng = np.random.default_rng(12)
    test = list(range(digits_synth.VALID_END, digits_synth.VALID_END + 300))
    cells = [digits_synth.training_cell(images[i], rng, "office") for i in test]
    probs, votes, _ = digits.opinions(cells)
    assert votes.shape == (300, 2)
    assert (votes[:, 1] == labels[test]).mean() >= 0.95          # the second model reads digits too
    assert (votes[:, 0] != votes[:, 1]).mean() < 0.05            # ... mostly as the first does


def test_without_the_second_model_file_nothing_is_prefilled(tmp_path, monkeypatch):
    """An install missing digits_second.npz still suggests, and pre-fills nothing (fails closed)."""
    monkeypatch.setattr(digits, "SECOND_PATH", tmp_path / "missing.npz")
    digits.second_model.cache_clear()
    try:
        images, _ = digits_synth.load_mnist()
        rng = np.random.default_rng(2)
        page, m = _outlined_cell()
        digits_synth.paste(page, np.eye(3) * [[digits.CELL_PPM], [digits.CELL_PPM], [1]],
                           digits_synth.ink_alpha(clear_digit("1"), (1, 1, 5.5, 8), digits.CELL_PPM, rng)[0],
                           (2.0, 1.5), digits.CELL_PPM)
        batch = digits.Batch()
        cells = []
        for _ in range(3):
            batch.cells.append({"ink": 0})
            cells.append(batch.cells[-1])
            batch.patches.append(page)
            batch.blacks.append(20.0)
        batch.finish()
        assert all(c["votes"][1] == "none" for c in cells)
        got = suggest({"cells": cells}, SPO2, Checks(value_range=(50, 200)))
        assert got["suggestion"] == "111" and not got["prefill"] and not got["partial"], got
    finally:
        digits.second_model.cache_clear()


@pytest.fixture
def vitals(kit, tmp_path):
    mrn = kit.db.execute("SELECT mrn FROM patients LIMIT 1").fetchone()[0]
    result = print_patient(kit, "vitals", mrn, tmp_path / "vitals.pdf", actor="tester")
    sheets = Sheets(kit, result.out_path, DPI)
    sid, image, geometry = sheets.pages()[0]
    return sid, image, geometry


def _scan(kit, tmp_path, image, name="page.png", seed=3):
    damaged = degrade.office(image, np.random.default_rng(seed))
    inbox = tmp_path / f"inbox-{name}"
    inbox.mkdir()
    write_png(inbox / name, damaged, DPI)
    scan_paths(kit, [inbox], workers=1, progress=False, actor="clerk")


def _by_field(kit, sid):
    return {r["field"]: r for r in list_readings(kit, sheet_id=sid)}


def test_real_digits_in_printed_comb_boxes_are_suggested_end_to_end(kit, vitals, tmp_path):
    sid, image, geometry = vitals
    page = write_comb(image, DPI, field(geometry, "c1.time"), "0830", seed=7, clear=True)
    page = write_comb(page, DPI, field(geometry, "c2.time"), "1415", seed=2, k=5, clear=True)
    page = write_comb(page, DPI, field(geometry, "c1.pulse"), " 72", seed=3, k=3, clear=True)
    _scan(kit, tmp_path, page)
    got = _by_field(kit, sid)
    assert got["c1.time"]["suggestion"] == "08:30"
    assert got["c2.time"]["suggestion"] == "14:15"
    assert got["c1.pulse"]["suggestion"] == "72", (got["c1.pulse"]["cells"], got["c1.pulse"].get("rule"))
    for name in ("c1.time", "c2.time", "c1.pulse"):
        r = got[name]
        assert r["status"] == "review" and r["value"] is None  # a suggestion is never a value
        assert 0 < r["suggestion_confidence"] <= 1
        assert len(r["cells"]) == len(field(geometry, name)["cells_mm"])
    assert got["c3.time"]["suggestion"] is None and got["c3.time"]["ink"] is False
    # the per-cell measures are stored raw beside the reading
    raw = json.loads(kit.db.execute("SELECT raw FROM readings WHERE sheet_id = ? AND field = 'c1.time'",
                                    [sid]).fetchone()[0])
    assert [c["alts"][0][0] for c in raw["cells"]] == list("0830")
    assert [c["votes"] for c in raw["cells"]] == [[d, d] for d in "0830"]  # both models read each box
    # readings --json shows them
    res = CliRunner().invoke(cli, ["--kit", str(kit.path), "readings", "--json", "--sheet", sid])
    assert res.exit_code == 0, res.output
    rows = {r["field"]: r for r in json.loads(res.output)}
    assert rows["c1.time"]["suggestion"] == "08:30"
    assert {"suggestion_confidence", "prefill", "cells"} <= set(rows["c1.time"])


def test_prefilled_value_is_not_stored_until_a_person_confirms(kit, vitals, tmp_path):
    sid, image, geometry = vitals
    page = write_comb(image, DPI, field(geometry, "c1.time"), "0830", seed=7, clear=True)
    _scan(kit, tmp_path, page)
    r = _by_field(kit, sid)["c1.time"]
    assert r["suggestion"] == "08:30" and r["prefill"], (r["cells"], r["rule"])
    stored = kit.db.execute("SELECT value, status FROM readings WHERE reading_id = ?", [r["reading_id"]]).fetchone()
    assert stored == (None, "review")
    assert not kit.db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]
    record_review(kit.db, r["reading_id"], "transcribe", "08:30", "alice")
    after = _by_field(kit, sid)["c1.time"]
    assert after["value"] == "08:30" and after["status"] == "accepted" and not after["prefill"]


def test_a_decision_records_how_a_partly_prefilled_suggestion_fared(kit, vitals, tmp_path):
    """prefilled 2 (only the sure boxes), outcome completed (pre-filled digits kept, another digit
    typed than suggested) or corrected (a pre-filled digit changed); the report counts both."""
    from fallbackkit.export.report import suggestion_accuracy
    from fallbackkit.scan.suggest import keeps_prefill
    sid, image, geometry = vitals
    page = write_comb(image, DPI, field(geometry, "c1.time"), "0830", seed=7, clear=True)
    page = write_comb(page, DPI, field(geometry, "c2.time"), "2200", seed=2, clear=True)
    _scan(kit, tmp_path, page)
    got = _by_field(kit, sid)
    shown = {"suggestion": "08:30", "partial": True, "pattern": "08:_0"}
    for name, value in (("c1.time", "08:50"), ("c2.time", "09:30")):
        kept = keeps_prefill(shown["pattern"], value, False)
        record_review(kit.db, got[name]["reading_id"], "transcribe", value, "alice", suggestion={**shown, "kept": kept})
    rows = kit.db.execute("SELECT suggestion_outcome, prefilled FROM reviews ORDER BY review_id").fetchall()
    assert rows == [("completed", 2), ("corrected", 2)]
    acc = suggestion_accuracy(kit)
    assert (acc["partly_prefilled"], acc["partly_completed"], acc["partly_changed"]) == (2, 1, 1)
    # a box held something else (no suggestion) and only the sure boxes were shown: their pattern is
    # what the decision records as shown, and the report counts it with the partly pre-filled
    reading = got["c3.time"]
    boxes = {"suggestion": None, "partial": True, "pattern": "0_:30"}
    record_review(kit.db, reading["reading_id"], "transcribe", "08:30", "alice",
                  suggestion={**boxes, "kept": keeps_prefill(boxes["pattern"], "08:30", False)})
    row = kit.db.execute("SELECT suggestion, suggestion_outcome, prefilled FROM reviews ORDER BY review_id DESC"
                         " LIMIT 1").fetchone()
    assert row == ("0_:30", "completed", 2)
    acc = suggestion_accuracy(kit)
    assert (acc["partly_prefilled"], acc["partly_completed"], acc["partly_changed"]) == (3, 2, 1)


def test_letter_or_crossed_out_digit_gives_no_suggestion_for_that_cell(kit, vitals, tmp_path):
    sid, image, geometry = vitals
    rng = np.random.default_rng(5)
    crossed = digits_synth.crossed_image(real_digit("3", 2), rng)
    crossed[:, :] = np.maximum(crossed, 0)
    letter = digits_synth.letter_image(np.random.default_rng(8))
    page = write_comb(image, DPI, field(geometry, "c1.time"), "0830", seed=1, images={2: crossed})
    page = write_comb(page, DPI, field(geometry, "c2.time"), "1415", seed=2, k=5, images={1: letter})
    _scan(kit, tmp_path, page)
    got = _by_field(kit, sid)
    for name, bad in (("c1.time", 2), ("c2.time", 1)):
        r = got[name]
        assert r["suggestion"] is None and not r["prefill"], r
        assert r["cells"][bad]["digit"] is None
        assert f"box {bad + 1}" in r["rule"]
        assert r["status"] == "review"
        # that box is left to the clerk; the sure boxes around it are pre-filled (only boxes agreed by both models)
        assert not r["cells"][bad]["sure"] and r["cells"][bad]["low"]
        assert r["partial"], r["cells"]


def test_impossible_values_written_on_paper_are_never_prefilled(kit, vitals, tmp_path):
    sid, image, geometry = vitals
    page = write_comb(image, DPI, field(geometry, "c1.time"), "2570", seed=4, clear=True)
    page = write_comb(page, DPI, field(geometry, "c1.spo2"), "130", seed=5, k=3, clear=True)
    _scan(kit, tmp_path, page)
    got = _by_field(kit, sid)
    r = got["c1.time"]
    assert r["suggestion"] == "25:70"
    assert not r["prefill"] and "not a time of day" in r["rule"]
    spo2 = got["c1.spo2"]  # the template's plausible range for SpO2 is 50-100
    assert spo2["suggestion"] == "130"
    assert not spo2["prefill"] and "plausible range" in spo2["rule"]


def _hard_digits(n: int) -> list[tuple[str, np.ndarray]]:
    """The n test-split digits (never trained on) the base model finds hardest in an office-scanned
    box: those it misreads first (the models misread fewer than 20 of the split), then those it
    gives the least probability of being what they are."""
    images, labels = digits_synth.load_mnist()
    rng = np.random.default_rng(21)
    kept, cells = [], []
    for i in range(digits_synth.VALID_END, len(labels)):
        cell = digits_synth.training_cell(images[i], rng, "office")
        if cell is not None:
            kept.append(i)
            cells.append(cell)
    probs = digits.classify(cells)
    truth = labels[kept]
    wrong = probs.argmax(axis=1) != truth
    order = np.lexsort((probs[np.arange(len(kept)), truth], ~wrong))
    return [(str(labels[kept[k]]), images[kept[k]]) for k in order[:n]]


def test_learning_from_corrections_improves_a_second_page_by_the_same_hand(kit, tmp_path, monkeypatch):
    from fallbackkit.scan import learn
    mrn = kit.db.execute("SELECT mrn FROM patients LIMIT 1").fetchone()[0]
    sheets = []
    for n in (1, 2):
        printed = print_patient(kit, "vitals", mrn, tmp_path / f"vitals-{n}.pdf", actor="tester")
        sheets.append(Sheets(kit, printed.out_path, DPI))
    hard = _hard_digits(20)
    names = [f"c{c}.time" for c in range(1, 6)]

    def written(sheet_pages, seed):
        sid, image, geometry = sheet_pages.pages()[0]
        page = image
        for j, name in enumerate(names):
            group = hard[4 * j:4 * j + 4]
            page = write_comb(page, DPI, field(geometry, name), "".join(d for d, _ in group), seed=seed + j,
                              images={i: img for i, (_, img) in enumerate(group)})
        return sid, page, geometry

    sid1, page1, _ = written(sheets[0], 100)
    _scan(kit, tmp_path, page1, "first.png")
    first = _by_field(kit, sid1)
    for j, name in enumerate(names):  # the clerk types what is written
        text = "".join(d for d, _ in hard[4 * j:4 * j + 4])
        record_review(kit.db, first[name]["reading_id"], "transcribe", f"{text[:2]}:{text[2:]}", "alice",
                      suggestion=first[name])
    sid2, page2, geometry2 = written(sheets[1], 200)
    _scan(kit, tmp_path, page2, "second.png", seed=4)
    assert (kit.path / digits.MEMORY_FILE).exists()
    second = _by_field(kit, sid2)
    truth = [d for d, _ in hard]

    def right(cells):
        return sum(c["digit"] == t for c, t in zip(cells, truth))
    with_memory = right([c for name in names for c in second[name]["cells"]])
    # the same scan read by the base model alone
    digits.use_memory(None)
    damaged = degrade.office(page2, np.random.default_rng(4))
    alone = sheets[1].read(damaged)
    by = {r.field: r for r in alone.readings}
    base = right([c for name in names for c in suggest(by[name].raw, field(geometry2, name))["cells"]])
    assert with_memory > base, (with_memory, base)
    # the memory is rebuilt at each scan start from all the kit's labelled cells in one batch
    calls = []
    many = digits.normalise_many
    monkeypatch.setattr(digits, "normalise_many", lambda p, b: calls.append(len(p)) or many(p, b))
    monkeypatch.setattr(digits, "normalise", lambda *a: pytest.fail("one cell at a time"))
    assert learn.refresh(kit) == 20
    assert calls == [20]


def test_simulate_with_digits_writes_train_split_digits_that_scan_into_suggestions(kit, tmp_path):
    from fallbackkit.scan.simulate import digit_writer, simulate
    writer = digit_writer(kit)
    assert sum(len(v) for v in writer.by_digit.values()) == digits_synth.TRAIN_END  # never the test split
    mrn = kit.db.execute("SELECT mrn FROM patients LIMIT 1").fetchone()[0]
    printed = print_patient(kit, "vitals", mrn, tmp_path / "vitals.pdf", actor="tester")
    res = CliRunner().invoke(cli, ["--kit", str(kit.path), "simulate", str(printed.out_path), "--out",
                                   str(tmp_path / "sim"), "--seed", "2", "--tier", "office", "--digits"])
    assert res.exit_code == 0, res.output
    assert "comb fields written in real handwritten digits" in res.output
    truth = json.loads((tmp_path / "sim" / "truth.json").read_text())
    written = {(p["sheet_id"], name): t["written"] for f in truth["files"] for p in f["pages"]
               for name, t in p["fields"].items() if t.get("written")}
    assert len(written) >= 10
    scan_paths(kit, [tmp_path / "sim"], workers=1, progress=False, actor="clerk")
    rows = {(r["sheet_id"], r["field"]): r for r in list_readings(kit)}
    suggested = [k for k in written if rows[k]["suggestion"]]
    prefilled = [k for k in written if rows[k]["prefill"]]
    assert len(suggested) >= len(written) / 2 and prefilled
    right = [k for k in prefilled if "".join(ch for ch in rows[k]["suggestion"] if ch.isdigit())
             == written[k].replace(" ", "")]
    assert len(right) >= 0.9 * len(prefilled), (len(right), len(prefilled))
    assert all(rows[k]["status"] == "review" and rows[k]["value"] is None for k in written)
    # the same simulation without --digits keeps the scribbles (and the truth of earlier runs)
    plain = simulate(kit, printed.out_path, tmp_path / "plain", seed=2, tier="office")
    assert plain["digit_fields"] == 0


def _digits_read_in_scanned_sheets(kit, vitals, tier: str, pages: int = 2) -> tuple[int, int]:
    """(digits read right, digits written): every comb box of a printed vitals sheet written with
    test-split digits (never trained on, in file order: neighbouring writers), the sheet damaged like
    an office scan or a phone photo and read by the engine; the models' first choice per box."""
    from fallbackkit.scan import engine
    from fallbackkit.scan.simulate import page_transform
    sid, image, geometry = vitals
    hmat = page_transform(DPI)
    rng = np.random.default_rng(41)
    images, labels = digits_synth.load_mnist()
    order = iter(range(digits_synth.VALID_END, len(labels)))
    right = written = 0
    for _ in range(pages):
        page = image.copy()
        truth = {}
        for f in geometry["fields"]:
            if f.get("cells_mm"):
                truth[f["name"]] = []
                for cell in f["cells_mm"]:
                    i = next(order)
                    digits_synth.write_digit(page, hmat, cell, images[i], rng)
                    truth[f["name"]].append(str(labels[i]))
        res = engine.read_page(degrade.degrade(page, tier, rng, DPI), kit_id=kit.kit_id, secret=kit.secret,
                               geometry_for=lambda s: geometry if s == sid else None)
        assert res.status == "read", res.reason
        for r in res.readings:
            for want, c in zip(truth.get(r.field, []), r.raw.get("cells") or []):
                written += 1
                right += bool(c.get("alts")) and c["alts"][0][0] == want
    return right, written


@pytest.mark.parametrize("tier", ["office", "phone"])
def test_the_models_read_test_split_digits_cut_from_scanned_printed_sheets(kit, vitals, tier):
    """A guard, not the figure (bench_handwriting measures 1,697 digits): on 260 test-split digits the
    models trained on printed sheets read 97.3 % (office) and 97.7 % (phone), those before 96.5 / 96.9 %
    (not re-measured with the models trained on 8,500 digits: the bench reads 98.2-98.4 / 97.6-97.9 %)."""
    right, written = _digits_read_in_scanned_sheets(kit, vitals, tier)
    assert written >= 250
    assert right / written >= 0.96, (tier, right, written)


def _train_digits():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "tools" / "train_digits.py"
    spec = importlib.util.spec_from_file_location("train_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_cells_from_printed_sheets_are_the_same_in_every_run(tmp_path):
    """tools/train_digits.py writes training digits into sheets the kit prints, damages them and cuts
    them with the engine: the kit's random codes (QR, sheet ids) must not reach the cells, or the
    shipped models could not be made again."""
    td = _train_digits()
    images, labels = digits_synth.load_mnist()
    runs = []
    for k in range(2):
        pages = td.printed_pages(tmp_path / f"run{k}")
        assert {g["template"] for _, g in pages} >= {"vitals", "mar"}
        x, y = td.page_set(pages[:2], images[:60], labels[:60], 1, np.random.default_rng(3), None)
        runs.append((x, y))
    (x0, y0), (x1, y1) = runs
    assert np.array_equal(y0, y1) and np.array_equal(x0, x1)
    assert x0.shape[1:] == (28, 28) and len(y0) >= 50
    # digits cut by the engine: the shipped models read them
    digit = y0 != digits.OTHER
    assert (digits.classify(list(x0[digit])).argmax(axis=1) == y0[digit]).mean() >= 0.9
