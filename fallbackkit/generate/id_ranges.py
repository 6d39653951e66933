"""Downtime identifier ranges from the hospital's system.

Hospitals reserve blocks of MRNs, encounter and accession numbers for downtime in their EHR. Loaded
into a kit (`fallbackkit ids load`), they replace the kit's own pools for blank stock of that kind:
numbers are handed out in order, never twice (next_value only grows, and a number another station
already used, merged in, is skipped), and stock that would run the ranges dry is refused before
anything is printed.

A station is a copy of the kit. Two stations must never hold the same range: give each station its
own sub-range of the hospital's block (load it on that station, after copying the kit). If they
ever do hand out the same number for different forms, `merge` refuses and names the number.
"""
from __future__ import annotations

import re
from typing import Any

from ..errors import BadInput, Conflict
from ..store.audit import append_audit
from ..store.kit import POOL_PREFIXES, Kit, now_iso

MAX_RANGE = 1_000_000


def _number(text: str, option: str) -> int:
    text = str(text).strip()
    if not re.fullmatch(r"\d{1,15}", text):
        raise BadInput(f"{option} {text!r}: give the number as the hospital system writes it, digits only")
    return int(text)


def station_part(first: str, last: str, part: str) -> tuple[str, str]:
    """Sub-range K of N of the hospital's block FIRST-LAST (`--part K/N`): N contiguous parts that
    never overlap and together cover the block, so each station can load its own with the same
    command and only K changing."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", part or "")
    if not found or not 1 <= int(found[1]) <= int(found[2]):
        raise BadInput(f"--part {part!r}: give K/N, this station's number K of N stations (e.g. 2/3)")
    k, n = int(found[1]), int(found[2])
    lo, hi = _number(first, "--from"), _number(last, "--to")
    if hi < lo:
        raise BadInput(f"--to {last} is below --from {first}")
    size = hi - lo + 1
    if n > size:
        raise BadInput(f"--part {part}: {size} numbers cannot be shared by {n} stations")
    start = lo + (size * (k - 1)) // n
    end = lo + (size * k) // n - 1
    width = len(first.strip()) if first.strip().startswith("0") else 0
    return _fmt(start, width), _fmt(end, width)


def load_range(kit: Kit, kind: str, first: str, last: str, actor: str, note: str | None = None,
               part: str | None = None) -> dict[str, Any]:
    if kind not in POOL_PREFIXES:
        raise BadInput(f"--kind {kind!r}: use one of {', '.join(POOL_PREFIXES)}")
    if part is not None:
        block = f"{first}-{last}"
        first, last = station_part(first, last, part)
        note = f"part {part.strip()} of {block}" + (f"; {note}" if note else "")
    lo, hi = _number(first, "--from"), _number(last, "--to")
    if hi < lo:
        raise BadInput(f"--to {last} is below --from {first}")
    if hi - lo + 1 > MAX_RANGE:
        raise BadInput(f"{hi - lo + 1} numbers is more than one load takes ({MAX_RANGE})",
                       hint="load the range in parts")
    width = len(str(first).strip()) if str(first).strip().startswith("0") else 0
    conn = kit.db.conn
    with conn:
        clash = conn.execute("SELECT first_value, last_value, width FROM id_ranges WHERE kind = ? AND"
                             " first_value <= ? AND last_value >= ?", [kind, hi, lo]).fetchone()
        if clash:
            raise Conflict(f"{kind} range {first}-{last} overlaps the range {_fmt(clash[0], clash[2])}-"
                           f"{_fmt(clash[1], clash[2])} already loaded in this kit; nothing loaded",
                           hint="load only numbers not loaded before (see `fallbackkit ids list`)")
        range_id = conn.execute(
            "INSERT INTO id_ranges (kind, first_value, last_value, width, next_value, loaded_at, actor, note)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [kind, lo, hi, width, lo, now_iso(), actor, note]).lastrowid
        append_audit(conn, actor, "ids.load", f"id_range:{range_id}", None,
                     {"kind": kind, "from": first, "to": last, "note": note})
    return {"id": range_id, "kind": kind, "from": _fmt(lo, width), "to": _fmt(hi, width), "count": hi - lo + 1,
            "left": remaining(kit, kind)}


def _fmt(value: int, width: int) -> str:
    return str(value).zfill(width) if width else str(value)


def list_ranges(kit: Kit) -> list[dict[str, Any]]:
    rows = kit.db.conn.execute("SELECT id, kind, first_value, last_value, width, next_value, loaded_at, note"
                               " FROM id_ranges ORDER BY kind, first_value").fetchall()
    return [{"id": r[0], "kind": r[1], "from": _fmt(r[2], r[4]), "to": _fmt(r[3], r[4]),
             "used": r[5] - r[2], "left": r[3] - r[5] + 1, "loaded_at": r[6], "note": r[7]} for r in rows]


def has_ranges(conn, kind: str) -> bool:
    return conn.execute("SELECT 1 FROM id_ranges WHERE kind = ? LIMIT 1", [kind]).fetchone() is not None


def remaining(kit: Kit, kind: str) -> int:
    row = kit.db.conn.execute("SELECT COALESCE(SUM(last_value - next_value + 1), 0) FROM id_ranges"
                              " WHERE kind = ? AND next_value <= last_value", [kind]).fetchone()
    return int(row[0])


def check_enough(kit: Kit, needed: dict[str, int]) -> None:
    """Refuse, before anything is printed, stock that would run a loaded range dry."""
    for kind, count in needed.items():
        if count and has_ranges(kit.db.conn, kind):
            left = remaining(kit, kind)
            if left < count:
                raise Conflict(f"this stock needs {count} {kind} numbers but the loaded {kind} ranges have "
                               f"{left} left; nothing printed",
                               hint=f"print at most {left}, or load more with `fallbackkit ids load --kind {kind} "
                                    f"--from A --to B` (a new range reserved in the hospital system)")


def allocate_from_range(conn, kind: str) -> str | None:
    """The next unused number of the loaded ranges of KIND, or None if none is loaded."""
    while True:
        row = conn.execute("SELECT id, next_value, width FROM id_ranges WHERE kind = ? AND next_value <= last_value"
                           " ORDER BY first_value LIMIT 1", [kind]).fetchone()
        if row is None:
            if has_ranges(conn, kind):
                raise Conflict(f"the loaded {kind} ranges are used up",
                               hint=f"load more with `fallbackkit ids load --kind {kind} --from A --to B`")
            return None
        conn.execute("UPDATE id_ranges SET next_value = next_value + 1 WHERE id = ?", [row[0]])
        value = _fmt(row[1], row[2])
        if conn.execute("SELECT 1 FROM downtime_ids WHERE value = ?", [value]).fetchone() is None:
            return value
