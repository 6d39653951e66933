"""Help for typing a slot's initials: the sheet's legend as one-key picks, a suggestion, and the
clerk's recent values when the sheet has no legend (issue 10 item 6, issue 15 item 9).

The legend is the form's own `l<k>.initials` / `l<k>.name` fields as people decided them (typed
once per sheet); nothing here is a value until the clerk presses a key. The suggestion is the
initials decided for the same medication row's nearest earlier dose, else the initials decided most
often on this form so far; it is pre-filled, Enter accepts it, typing replaces it.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from ..reconcile.legend import LegendEntry, normalize_initials

_LEGEND = re.compile(r"^l(\d+)\.(initials|name)$")
_SLOT = re.compile(r"^([a-z]\d+)\.s(\d+)\.initials$")
LEGEND_FIELD, SLOT_FIELD = _LEGEND, _SLOT  # the review queue hands a form's legend before its slots
RECENT = 9


def _form_values(conn, sheet_id: str) -> dict[str, Any]:
    """Values people decided for the legend and the slot initials of the form this sheet belongs
    to (each of its sheets' latest read capture), from the store's readings."""
    from ..store.readings import effective_readings
    sheets = [r[0] for r in conn.execute(
        "SELECT s2.sheet_id FROM sheets s1 JOIN sheets s2 ON s2.form_id = s1.form_id WHERE s1.sheet_id = ?",
        [sheet_id])] or [sheet_id]
    out: dict[str, Any] = {}
    for sid in sheets:
        for r in effective_readings(conn, sheet_id=sid, latest_capture=True):
            if (_LEGEND.match(r.field) or _SLOT.match(r.field)) and r.review is not None \
                    and isinstance(r.value, str) and r.value.strip():
                out[r.field] = r.value.strip()
    return out


def sheet_legend(conn, sheet_id: str) -> list[LegendEntry]:
    values = _form_values(conn, sheet_id)
    rows: dict[int, dict[str, str]] = {}
    for name, value in values.items():
        m = _LEGEND.match(name)
        if m:
            rows.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return [LegendEntry(k, p["initials"], p.get("name"), None) for k, p in sorted(rows.items())
            if normalize_initials(p.get("initials"))]


def recent_initials(conn, actor: str, limit: int = RECENT) -> list[str]:
    """The clerk's last distinct initials typed (newest first), undone decisions left out."""
    out: list[str] = []
    for value, in conn.execute(
            "SELECT rv.value FROM reviews rv JOIN readings r ON r.reading_id = rv.reading_id"
            " WHERE r.type = 'initials' AND rv.actor = ? AND rv.decision IN ('transcribe', 'correct', 'confirm')"
            " AND rv.review_id NOT IN (SELECT undoes FROM reviews WHERE undoes IS NOT NULL)"
            " ORDER BY rv.review_id DESC LIMIT 200", [actor]):
        text = json.loads(value) if value is not None else None
        if isinstance(text, str) and text.strip() and text.strip() not in out:
            out.append(text.strip())
        if len(out) == limit:
            break
    return out


def suggested(values: dict[str, Any], field: str) -> dict[str, str] | None:
    """The same row's nearest earlier dose's initials, else the form's most used initials."""
    m = _SLOT.match(field)
    if not m:
        return None
    row, slot = m.group(1), int(m.group(2))
    for k in range(slot - 1, 0, -1):
        v = values.get(f"{row}.s{k}.initials")
        if v:
            return {"value": v, "why": "previous_dose", "from": f"{row}.s{k}"}
    used = Counter(v for n, v in values.items() if _SLOT.match(n) and n != field)
    if used:
        value, _ = used.most_common(1)[0]
        return {"value": value, "why": "most_used", "from": None}
    return None


def initials_help(conn, reading: dict[str, Any], actor: str) -> dict[str, Any] | None:
    """What the reading screen offers for an initials reading: the legend's rows (keys 1-9) or,
    without a legend, the clerk's recent values (keys 1-9), and a suggestion."""
    if reading.get("type") != "initials" or _LEGEND.match(reading.get("field") or ""):
        return None
    conn = conn.conn if hasattr(conn, "conn") else conn
    legend = sheet_legend(conn, reading["sheet_id"])[:9]
    values = _form_values(conn, reading["sheet_id"])
    picks = [{"key": k, "initials": e.initials, "name": e.name, "legend_row": e.row}
             for k, e in enumerate(legend, 1)]
    source = "legend"
    if not picks:
        source = "recent"
        picks = [{"key": k, "initials": v, "name": None, "legend_row": None}
                 for k, v in enumerate(recent_initials(conn, actor), 1)]
    return {"source": source, "picks": picks, "suggested": suggested(values, reading["field"])}
