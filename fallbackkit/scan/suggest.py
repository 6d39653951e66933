"""A suggestion for a comb field from its stored per-cell digit measures, checked before it is shown.

Decided from raw measures (`raw["cells"]`, made by `digits.read_cells` in the scan workers), so the
thresholds here can change and be re-applied without rescanning. A suggestion is never a value: the
reading stays `review` until a person accepts or corrects it. What the station pre-fills: the whole
suggestion when the field is sure (`prefill`), else only its sure boxes (`partial`, each cell's
`sure`: a box whose digit is right with probability CELL_SURE given the field's rules, and all the
pre-filled boxes together right with probability PREFILL_MIN), so that the clerk types only the
digits the machine is unsure of; all boxes surely empty is `blank` (one key). A box is pre-filled
only where both digit models put the same digit first (the cell's `votes`: one model's sure mistake
is not pre-filled) and never with a digit the kit's memory put first against them. What the digits must mean is checked
with the one parser of handwritten values (`templates/values.py`): a time of day, a calendar date
within the kit's printing and scanning window (a birth date in the past), a number within the
template's plausible range, a MAR time near the scheduled time of its column. A suggestion that
breaks a rule is shown with the rule and is never pre-filled. A box that holds something other than
one digit (a letter, a scribble, a crossed-out digit) gives no suggestion for the field and is left
to the clerk; the boxes around it that are sure by the same rules are still pre-filled (`partial`),
unless more boxes than one hold something else (a word, a scribble or a crossing-out across the
boxes: a piece of it may look like a digit, so nothing of the field is pre-filled).
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from ..templates import values
from ..templates.layout import comb_groups

CELL_MIN = 0.5         # a written cell whose best digit is less likely than this reads as no digit
CELL_SURE = 0.9        # a box's digit (given the field's rules) below this is unsure: highlighted, never pre-filled
PREFILL_MIN = 0.98     # the pre-filled boxes must all be right with this probability (chosen on the
                       # calibration split: the most keystrokes saved at <= 0.5 % wrong with margin;
                       # round 8, 24 beds, 1,992 fields a tier, the first model's probabilities: 0.10 % /
                       # 0.20 % office / phone, 0.96 gave 0.20 / 0.35 %; round 9, models trained on
                       # 63,500 digits, 8 beds: 0.15 / 0.15 %, 0.95 gave 0.30 / 0.15 %; round 10, both
                       # models' weighted product (digits.combine), 24 beds: 0.15 / 0.15 %, keystrokes
                       # 0.338 / 0.343 of typing; 0.97 gave 0.30 / 0.15 %, 0.333 / 0.334). A box
                       # pre-filled alone must reach it too, so CELL_SURE does not bind while it is below
BLANK_MIN = 0.98       # every box empty with this probability: one key says blank
NEAR_SLOT_MIN = 120    # a MAR actual time this far (minutes) from its scheduled time is queried
EMPTY_SURE_INK = 0     # ink pixels in a cell that reads as empty beyond which emptiness is unsure
EMPTY_UNSURE_P = 0.94  # ... and how sure it is then (below PREFILL_MIN: such a box is never pre-filled
                       # as empty on its own, the clerk says it with Space)
EMPTY_SURE_EDGE = 23   # ... and ink along the inside of its outline (`edge_ink`, digits._edge_ink) beyond
                       # which too: a 1 written on the box's side is not left out of a number (blank boxes
                       # beside digits on the bench: at most 16; the 1 on its side that read empty: 130)
ALT_MIN = 0.002        # a digit alternative less likely than this is not considered
MAX_COMBINATIONS = 64  # digit strings weighed per field (the most probable ones)
TAIL_MASS = 1e-4       # digit strings are weighed until what is left is this unlikely
PREFILL_MARGIN = 0.05  # never pre-fill when the second valid digit string is this close to the best


@dataclass
class Checks:
    """What a suggestion is checked against, besides the field's own geometry."""
    earliest: _dt.date | None = None   # the kit's printing and scanning window (care dates)
    latest: _dt.date | None = None
    value_range: tuple[float | None, float | None] | None = None
    birth: bool = False                # a birth date: in the past, the care window does not apply
    today: _dt.date | None = None


def _cell(c: dict[str, Any]) -> dict[str, Any]:
    """A cell's reading: its top digit ("" for empty, None for something else) and the digit
    alternatives the field may choose among."""
    alts = c.get("alts")
    if not alts:
        sure = c.get("ink", 0) <= EMPTY_SURE_INK and c.get("edge_ink", 0) <= EMPTY_SURE_EDGE
        conf = 1.0 if sure else EMPTY_UNSURE_P
        return {"digit": "", "p": conf, "alts": [], "low": False, "choices": [("", conf)]}
    label, p = alts[0]
    if label == "other" or p < CELL_MIN:
        return {"digit": None, "p": round(1 - p if label == "other" else p, 4), "alts": alts, "low": True,
                "choices": []}
    choices = [(lab, float(q)) for lab, q in alts if lab != "other" and float(q) >= ALT_MIN]
    votes = c.get("votes")
    return {"digit": label, "p": p, "alts": alts, "low": p < CELL_SURE, "choices": choices,
            "votes": list(votes) if votes else None, "memory": bool(c.get("memory"))}


def _agreed(c: dict[str, Any], digit: str) -> bool:
    """Whether this box may be pre-filled with digit, as far as the second opinion goes: both models
    put the same digit first (one model's sure mistake is not pre-filled), and it is this digit,
    unless the field's rules chose another of their alternatives (a 7 in the first box of an hour
    is a 2) without the kit's memory weighing in: the memory may confirm or doubt the models, never
    overrule them into a pre-fill. A box without votes was read before the second opinion."""
    votes = c.get("votes")
    if not votes:
        return True
    if any(v != votes[0] for v in votes):
        return False
    return digit == votes[0] or not c.get("memory")


def _combinations(cells: list[dict]):
    """Digit strings of the cells' alternatives, most probable first (with their probability)."""
    combos: list[tuple[float, tuple[int, ...]]] = [(1.0, ())]
    for c in cells:
        combos = [(p * q, idx + (k,)) for p, idx in combos for k, (_, q) in enumerate(c["choices"])]
        combos.sort(key=lambda t: -t[0])
        del combos[MAX_COMBINATIONS:]
    for p, idx in combos:
        yield p, [c["choices"][k][0] for c, k in zip(cells, idx)]


def _groups(field: dict) -> list[tuple[str, int]]:
    return comb_groups(field["type"], field.get("format"), int(field.get("digits") or 0),
                       int(field.get("decimals") or 0))


def _assemble(cells: list[dict], field: dict) -> tuple[str | None, str | None]:
    """(text with the printed separators, or None; why not)."""
    groups = _groups(field)
    if sum(n for _, n in groups) != len(cells):
        return None, "the comb cells do not match the field"
    parts, i = [], 0
    for sep, n in groups:
        parts.append((sep, "".join(c["digit"] for c in cells[i:i + n]), [c["digit"] for c in cells[i:i + n]]))
        i += n
    if field["type"] == "number":
        (_, whole, wcells), *rest = parts
        if whole == "":
            return None, "no digits before the decimal point"
        first = next(k for k, d in enumerate(wcells) if d)
        last = max(k for k, d in enumerate(wcells) if d)
        if any(d == "" for d in wcells[first:last + 1]):
            return None, "an empty box between digits"
        text = whole
        if rest:
            _, dec, dcells = rest[0]
            if dec:
                if any(d == "" for d in dcells[:len(dec)]):
                    return None, "an empty box between digits"
                text += "." + dec
        return text, None
    if any(d == "" for _, _, ds in parts for d in ds):
        return None, "some boxes are empty"
    return "".join(sep + text for sep, text, _ in parts), None


def _check(text: str, field: dict, checks: Checks) -> str | None:
    """None when the suggestion means something plausible for the field, else the rule it breaks."""
    try:
        if field["type"] == "number":
            number = values.parse_number(text)
            if checks.value_range:
                low, high = checks.value_range
                values.check_range(number, low, high, text)
            return None
        fmt = field.get("format") or "datetime"
        day = None
        if fmt == "time":
            moment = values.parse_time(text)
        elif fmt == "date":
            day = values.parse_date(text)
            moment = None
        else:
            stamp = values.parse_datetime(text)
            day, moment = stamp.date(), stamp.time()
        if day is not None:
            if checks.birth:
                values.check_date_window(day, None, checks.today or _dt.date.today(), text)
            else:
                values.check_date_window(day, checks.earliest, checks.latest, text)
        scheduled = field.get("scheduled")
        if moment is not None and scheduled:
            # a slot printed 24:00 is midnight for the distance (the parser refuses 24:00 as a value)
            planned = values.time_or_none("00:00" if scheduled.strip() == "24:00" else scheduled)
            if planned is not None:
                a = moment.hour * 60 + moment.minute
                b = planned.hour * 60 + planned.minute
                gap = min(abs(a - b), 1440 - abs(a - b))
                if gap > NEAR_SLOT_MIN:
                    return f"{text} is more than {NEAR_SLOT_MIN // 60} h from the scheduled {scheduled}"
        return None
    except values.ValueProblem as problem:
        return str(problem)


def suggest(raw: dict[str, Any], field: dict, checks: Checks | None = None) -> dict[str, Any] | None:
    """The suggestion for one comb reading, or None when the field has no digit measures.

    Returns suggestion (text or None), suggestion_confidence (the field's: the product of its
    cells'), prefill, rule (why it is not pre-filled when checks fail, or why there is none) and
    per-cell digits with their alternatives and an unsure flag."""
    raw_cells = raw.get("cells")
    if not raw_cells:
        return None
    checks = checks or Checks()
    cells = [_cell(c) for c in raw_cells]
    for c in cells:
        c["sure"] = False
    out: dict[str, Any] = {"suggestion": None, "suggestion_confidence": None, "prefill": False,
                           "partial": False, "blank": False, "rule": None, "cells": cells}
    if all(c["digit"] == "" for c in cells):
        # every box surely empty: one key says "blank" (still a person's decision)
        out["blank"] = all(c["p"] >= BLANK_MIN for c in cells) and not raw.get("page_review")
        for c in cells:
            c["sure"] = out["blank"]
            c.pop("choices", None)
        return out
    bad = [k + 1 for k, c in enumerate(cells) if c["digit"] is None]
    if bad:
        out["rule"] = (f"box {bad[0]} holds something other than one digit" if len(bad) == 1
                       else f"boxes {', '.join(map(str, bad))} hold something other than one digit")
        if len(bad) == 1:
            _around_unread(cells, field, checks, raw)
        else:  # a word, a scribble or a crossing-out across the boxes: its pieces are no digits to pre-fill
            _mark_sure(cells, set())
        out["partial"] = any(c["sure"] for c in cells)
        return out
    # the most probable digit strings that mean something for the field; digit strings that break a
    # rule are impossible, so their probability goes to the others (not that of "something else")
    first = None
    valid: list[tuple[float, str, list[str]]] = []
    broken = 0.0
    for p, choice in _combinations(cells):
        text, why = _assemble([{"digit": d} for d in choice], field)
        rule = why if text is None else _check(text, field, checks)
        if first is None:
            first = (p, text, rule, choice)
        if rule is None:
            valid.append((p, text, choice))
            if len(valid) == 2:
                break
        else:
            broken += p
    p_top, text, rule, choice = first
    field_conf = 0.0
    if valid:
        p_best, best_text, best = valid[0]
        field_conf = p_best / max(1.0 - broken, p_best)
        if rule is None or field_conf >= CELL_MIN:
            text, rule, choice, p_top = best_text, None, best, p_best
    if text is None:
        out["rule"] = rule
        for c in cells:
            c.pop("votes", None)
            c.pop("memory", None)
        return out
    for c, d in zip(cells, choice):
        if d != c["digit"]:
            q = dict(c["choices"]).get(d, 0.0)
            c.update(digit=d, p=q, low=True)
    out["suggestion"] = text
    out["suggestion_confidence"] = round(field_conf if rule is None else p_top, 4)
    out["rule"] = rule
    second = valid[1][0] if len(valid) > 1 else 0.0
    agreed = {k for k, (c, d) in enumerate(zip(cells, choice)) if _agreed(c, d)}
    out["prefill"] = (rule is None and field_conf >= PREFILL_MIN and second <= PREFILL_MARGIN * valid[0][0]
                      and not raw.get("page_review") and len(agreed) == len(cells))
    if out["prefill"]:
        sure = set(range(len(cells)))
    elif rule is None and not raw.get("page_review"):
        sure = _sure_cells(cells, choice, field, checks) & agreed
    else:  # a suggestion that breaks a rule is never pre-filled, not even in part
        sure = set()
    _mark_sure(cells, sure)
    out["partial"] = bool(sure) and not out["prefill"]
    return out


def _mark_sure(cells: list[dict], sure: set[int]) -> None:
    """Each box pre-filled or left to the clerk (then highlighted); the weighing's leftovers dropped."""
    for k, c in enumerate(cells):
        c["sure"] = k in sure
        c["low"] = c["low"] or k not in sure
        c.pop("choices", None)
        c.pop("votes", None)
        c.pop("memory", None)


def _around_unread(cells: list[dict], field: dict, checks: Checks, raw: dict[str, Any]) -> None:
    """The sure boxes of a field with one box that holds something other than one digit (no suggestion):
    that box is left to the clerk, who sees on the crop what is in it, and the other boxes are
    pre-filled by the rules of a partial pre-fill (each right with CELL_SURE given the field's rules,
    all of them together with PREFILL_MIN, both models agreeing; never on a page under review). An
    unread box is a wildcard: its digit alternatives, if any, are weighed with the rules like any
    box's, the rest of it (what it holds besides a digit) the rules cannot judge."""
    sure: set[int] = set()
    if not raw.get("page_review"):
        weighed = [c if c["digit"] is not None else
                   {"choices": [(lab, float(q)) for lab, q in c["alts"] if lab != "other" and float(q) >= ALT_MIN]}
                   for c in cells]
        best = [c["digit"] for c in cells]
        agreed = {k for k, c in enumerate(cells) if c["digit"] and _agreed(c, c["digit"])}
        sure = _sure_cells(weighed, best, field, checks) & agreed
    _mark_sure(cells, sure)


def _sure_cells(cells: list[dict], best: list[str | None], field: dict, checks: Checks) -> set[int]:
    """The boxes pre-filled on their own: each one's digit right with probability CELL_SURE given
    the field's rules, and all of them together right with probability PREFILL_MIN.

    Weighed over the digit strings of the boxes' alternatives, where what a box's alternatives leave
    over ("something else", a digit too unlikely to list) is a wildcard: the clerk types it, the rules
    cannot judge it, and it never agrees with the machine's digit. Strings that break a rule are
    impossible; what was not weighed counts against."""
    widened = []
    for c in cells:
        rest = 1.0 - sum(q for _, q in c["choices"])
        widened.append({"choices": c["choices"] + ([("?", rest)] if rest > 1e-9 else [])})
    weighed: list[tuple[float, list[str]]] = []
    broken = seen = 0.0
    for p, choice in _combinations(widened):
        seen += p
        if "?" not in choice:
            text, why = _assemble([{"digit": d} for d in choice], field)
            if (why if text is None else _check(text, field, checks)) is not None:
                broken += p
                continue
        weighed.append((p, choice))
        if 1.0 - seen < TAIL_MASS:
            break
    mass = 1.0 - broken
    if mass <= 0:
        return set()

    def agree(keep: set[int]) -> float:
        return sum(p for p, ch in weighed if all(ch[k] == best[k] for k in keep)) / mass

    alone = {k: agree({k}) for k in range(len(best))}
    chosen: set[int] = set()
    for k in sorted(alone, key=lambda k: -alone[k]):
        if alone[k] < CELL_SURE:
            break
        if agree(chosen | {k}) >= PREFILL_MIN:
            chosen.add(k)
    return chosen


def prefill_pattern(got: dict[str, Any], field: dict) -> str | None:
    """What the station puts in the box for a suggestion: the pre-filled boxes' digits (a space for
    a box surely empty), `_` for each box left to the clerk, the printed separators in place; None
    when nothing is pre-filled."""
    cells = got.get("cells") or []
    if not (got.get("prefill") or got.get("partial")) or sum(n for _, n in _groups(field)) != len(cells):
        return None
    out, i = [], 0
    for sep, n in _groups(field):
        out.append(sep)
        for c in cells[i:i + n]:
            out.append((c["digit"] or " ") if c.get("sure") else "_")
        i += n
    return "".join(out)


def keeps_prefill(pattern: str | None, value: Any, number: bool) -> bool | None:
    """Whether a decided value keeps every pre-filled box of a `prefill_pattern` (None without a
    pattern). A number's empty boxes and a missing decimal part may be written either way."""
    import re
    if pattern is None:
        return None
    if not isinstance(value, str):
        return False
    out = []
    for k, ch in enumerate(pattern):
        if ch.isdigit():
            out.append(re.escape(ch))
        elif ch == "_":
            out.append("\\d?" if number else "\\d")
        elif ch == " " and number:
            continue
        elif number:  # the decimal point: the decimal part may be left out
            return re.fullmatch("".join(out) + "(?:" + re.escape(ch) + keeps_regex(pattern[k + 1:]) + ")?",
                                value.strip()) is not None
        else:
            out.append(re.escape(ch))
    return re.fullmatch("".join(out), value.strip()) is not None


def keeps_regex(cells: str) -> str:
    import re
    return "".join(re.escape(ch) if ch.isdigit() else "\\d?" if ch == "_" else "" for ch in cells)


__all__ = ["Checks", "suggest", "prefill_pattern", "keeps_prefill", "CELL_MIN", "CELL_SURE", "PREFILL_MIN"]


class SuggestionContext:
    """Builds the Checks of each reading of a kit: the printing and scanning window from the
    store, the plausible range from the template (`range:`), cached per sheet and template."""

    WINDOW_MARGIN = _dt.timedelta(days=1)

    def __init__(self, conn, templates_dir):
        self.conn = conn
        self.templates_dir = templates_dir
        self._geometry: dict[str, dict[str, dict]] = {}
        self._specs: dict[str, dict[str, Any]] | None = None
        first = conn.execute("SELECT MIN(printed_at) FROM sheets").fetchone()[0]
        last = conn.execute("SELECT MAX(captured_at) FROM captures").fetchone()[0]
        self.earliest = _day(first) - self.WINDOW_MARGIN if first else None
        self.latest = _day(last) + self.WINDOW_MARGIN if last else None

    def field(self, sheet_id: str, name: str) -> tuple[dict | None, str | None]:
        """The field's printed geometry on that sheet and the sheet's template@version."""
        if sheet_id not in self._geometry:
            import json
            row = self.conn.execute(
                "SELECT l.geometry, s.template, s.version FROM sheets s JOIN layouts l ON l.hash = s.layout_hash"
                " WHERE s.sheet_id = ?", [sheet_id]).fetchone()
            fields = {f["name"]: f for f in json.loads(row[0])["fields"]} if row else {}
            self._geometry[sheet_id] = (fields, f"{row[1]}@{row[2]}" if row else None)
        fields, ref = self._geometry[sheet_id]
        return fields.get(name), ref

    def spec(self, template: str | None, name: str) -> Any:
        if self._specs is None:
            from ..templates.model import load_templates
            if self.templates_dir is None:
                self._specs = {}
                return None
            try:
                self._specs = {ref: field_specs(t) for ref, t in load_templates(self.templates_dir).items()}
            except Exception:  # a broken template directory: no ranges, never a pre-fill on a guess
                self._specs = {}
        specs = self._specs.get(template or "", {})
        base = name.split(".")[-1]
        return specs.get(name) or specs.get(base)

    def checks(self, template: str | None, field: dict) -> Checks:
        spec = self.spec(template, field["name"])
        value_range = getattr(spec, "range", None) if spec is not None else None
        birth = field["name"].split(".")[-1].endswith("birth_date")
        return Checks(self.earliest, self.latest, tuple(value_range) if value_range else None, birth)

    def for_reading(self, sheet_id: str, name: str, raw: dict) -> dict[str, Any] | None:
        if not raw.get("cells"):
            return None
        field, ref = self.field(sheet_id, name)
        if field is None:
            return None
        return suggest(raw, field, self.checks(ref, field))


def _day(stamp: str) -> _dt.date:
    return _dt.date.fromisoformat(str(stamp)[:10])


def field_specs(template) -> dict[str, Any]:
    """The template's field specs by field name (grid rows by their row name)."""
    out = {}
    for s in template.sections:
        for f in s.fields:
            out[f.name] = f
        if s.grid:
            for r in s.grid.rows:
                out[r.name] = r
        if s.medications:  # a slot's held code (m1.s2.held) is checked against the code list
            for part, spec in s.medications.part_specs().items():
                out.setdefault(part, spec)
    return out
