"""The initials legend of a sheet: who the initials in its slots stand for.

A paper MAR carries one legend row per nurse who signs on the sheet (initials, name, signature;
template section `legend:`, fields `l1.initials`, `l1.name`, `l1.signature`, ...). A slot's
initials are put to a person only when exactly one legend row of the same form has those
initials: two nurses with the same initials, or initials nobody wrote in the legend, resolve to
nobody (fail closed: the export then names no Practitioner, and says why).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

_ROW = re.compile(r"^l(\d+)\.(initials|name|signature)$")
_NOT_LETTERS = re.compile(r"[^0-9A-ZÀ-ÖØ-Þ]")


@dataclass(frozen=True)
class LegendEntry:
    row: int                 # the printed row number (1, 2, ...): what the station's keys 1-9 pick
    initials: str            # as transcribed
    name: str | None         # as transcribed, None when not typed (yet)
    signed: bool | None      # ink in the signature box; None when not decided


def normalize_initials(text: str | None) -> str:
    """Initials compared without case, dots, spaces or hyphens ("j.-m. d" == "JMD")."""
    return _NOT_LETTERS.sub("", (text or "").upper())


def legend_of(values: Mapping[str, Any]) -> list[LegendEntry]:
    """The legend rows of one form, from its field values (name -> plain value, as the worklist
    holds them): every row with initials written, in row order."""
    rows: dict[int, dict[str, Any]] = {}
    for name, value in values.items():
        m = _ROW.match(name)
        if m:
            rows.setdefault(int(m.group(1)), {})[m.group(2)] = value
    out = []
    for row in sorted(rows):
        parts = rows[row]
        initials = parts.get("initials")
        if not isinstance(initials, str) or not normalize_initials(initials):
            continue
        name = parts.get("name")
        signed = parts.get("signature")
        out.append(LegendEntry(row, initials.strip(), name.strip() if isinstance(name, str) and name.strip() else None,
                               signed if isinstance(signed, bool) else None))
    return out


def resolve_initials(legend: Sequence[LegendEntry], initials: str | None) -> LegendEntry | None:
    """The legend row a slot's initials stand for: the one row with the same initials (normalised),
    or None when there is none or more than one."""
    key = normalize_initials(initials)
    if not key:
        return None
    found = [e for e in legend if normalize_initials(e.initials) == key]
    return found[0] if len(found) == 1 else None


def performer(legend: Sequence[LegendEntry], initials: str | None) -> dict[str, Any] | None:
    """What an export needs for a slot's performer: initials, name and legend row, or None with
    the reason left to `unresolved_reason`."""
    entry = resolve_initials(legend, initials)
    if entry is None:
        return None
    return {"initials": entry.initials, "name": entry.name, "legend_row": entry.row, "signed": entry.signed}


def unresolved_reason(legend: Sequence[LegendEntry], initials: str | None) -> str | None:
    """Why a slot's initials name nobody (None when they do, or when no initials are written)."""
    key = normalize_initials(initials)
    if not key:
        return None
    n = sum(normalize_initials(e.initials) == key for e in legend)
    if n == 1:
        return None
    if n > 1:
        return f"initials {initials} appear on {n} rows of the sheet's legend"
    return f"initials {initials} are not in the sheet's legend" if legend else "the sheet's legend is empty"
