"""Shared loading for reconciliation, the worklist and identities.

Everything here is read-only and set-based: a few whole-table queries and one pass over the
readings in capture order, so that reconcile stays fast on 100,000 captures. A reading's
*effective* value (after people's decisions) comes from `store.readings.effective_readings`, the
one definition every stage uses.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import json
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Iterable, Iterator

from ..errors import FallbackkitError
from ..store import decisions
from ..store.kit import Kit
from ..store.readings import CHUNK, Review, effective_readings_by_capture, loads
from ..store.readings import current_reviews as _current_reviews
from ..templates.model import HANDWRITTEN_TYPES, MARK_TYPES
from ..scan.reasons import MULTI_MARK
from ..scan.reasons import codes as _parse_codes

__all__ = ["CHUNK", "Layout", "Registry", "Val", "current_links", "current_reviews", "iter_capture_values",
           "load_registry", "loads", "sheet_conflicts"]


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cycle collector off while a batch is computed, back on (if it was) when it is done.

    A pass over readings allocates millions of small tuples and dicts that never form cycles; the
    collector walking them was a fifth of a full reconcile's CPU (issue 16). Only around our own
    work, never while a caller runs: what a batch leaves behind is collected as soon as it ends."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@functools.lru_cache(maxsize=4096)
def reason_codes(reason: str | None) -> frozenset[str]:
    """The codes of a stored reason (`scan.reasons.codes`), parsed once per distinct reason: a
    store holds a few hundred distinct reasons over millions of readings."""
    return frozenset(_parse_codes(reason))


_READING_FIELDS = ("reading_id", "capture_id", "sheet_id", "field", "type", "machine_value", "confidence", "status",
                   "reason", "ink", "value", "resolved", "source", "review")


class Val(tuple):
    """One field of one capture, after people's decisions: the fields of `store.readings.Reading`
    (reading_id ... review, same names, same rule) as a plain tuple, with the comparisons reconcile
    makes between captures of the same paper.

    A tuple, not an object per reading: a full reconcile walks every reading of the store (3.7 M at
    100,000 captures) and building a tuple costs half of building a dataclass (issue 16)."""
    __slots__ = ()
    RECORD_IS_TUPLE = True  # store.readings builds it with tuple.__new__ from the row it read

    def __new__(cls, reading_id: int, capture_id: int, sheet_id: str, field: str, type: str, machine_value: Any,
                confidence: float, status: str, reason: str | None, ink: int | None, value: Any, resolved: bool,
                source: str, review: Review | None) -> "Val":
        return tuple.__new__(cls, (reading_id, capture_id, sheet_id, field, type, machine_value, confidence, status,
                                   reason, ink, value, resolved, source, review))

    reading_id = property(itemgetter(0))
    capture_id = property(itemgetter(1))
    sheet_id = property(itemgetter(2))
    field = property(itemgetter(3))
    type = property(itemgetter(4))
    machine_value = property(itemgetter(5))
    confidence = property(itemgetter(6))
    status = property(itemgetter(7))
    reason = property(itemgetter(8))
    ink = property(itemgetter(9))
    value = property(itemgetter(10))
    resolved = property(itemgetter(11))
    source = property(itemgetter(12))
    review = property(itemgetter(13))
    machine = property(itemgetter(5))

    @property
    def reviewer(self) -> str | None:
        return self[13].actor if self[13] is not None else None

    @property
    def reviewed_at(self) -> str | None:
        return self[13].at if self[13] is not None else None

    @property
    def review_id(self) -> int | None:
        return self[13].review_id if self[13] is not None else None

    def __repr__(self) -> str:
        return "Val(" + ", ".join(f"{k}={v!r}" for k, v in zip(_READING_FIELDS, self)) + ")"

    @classmethod
    def of(cls, reading_id: int, type: str, machine: Any, value: Any, resolved: bool, ink: int | None,
           status: str, reason: str | None, source: str) -> "Val":
        """A value built by hand (tests, what-ifs): no capture, no review record."""
        return cls(reading_id, 0, "", "", type, machine, 0.0, status, reason, ink, value, resolved, source, None)

    @property
    def present(self) -> bool:
        """Something is written or marked (fail closed: an unresolved reading is not 'absent')."""
        value, source = self[10], self[12]
        if self[4] in MARK_TYPES:
            if value is None or value is False or value == []:
                return False
            return True
        if source == "illegible":
            return True
        if source != "machine":
            return value not in (None, "", [])
        return bool(self[9]) or value not in (None, "", False)

    @property
    def multiple_marks(self) -> bool:
        """A single choice with more than one box marked (the scanner sends it to review)."""
        machine = self[5]
        if isinstance(machine, list) and len(machine) > 1 and self[4] == "choice":
            return True
        return bool(reason_codes(self[8]) & MULTI_MARK)  # by the reason's code, never its words

    def comparable(self) -> Any:
        """What two captures of the same paper must agree on."""
        if self[4] in HANDWRITTEN_TYPES and self[12] == "machine":
            return ("ink", bool(self[9]))
        return ("value", json.dumps(self[10], sort_keys=True))

    def machine_key(self) -> Any:
        if self[4] in HANDWRITTEN_TYPES:
            return ("ink", bool(self[9]))
        return ("value", json.dumps(self[5], sort_keys=True))


@dataclass(frozen=True)
class Layout:
    hash: str
    template: str
    version: int
    page: int
    fields: dict[str, dict[str, Any]]  # name -> geometry entry
    slots: list[str] = field(default_factory=list)  # MAR slot prefixes (m1.s1, p1.s2, n1.s1), in order

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", sorted({n.rsplit(".", 1)[0] for n in self.fields if n.count(".") == 2}))


@dataclass
class Registry:
    """The printed side: forms, their sheets, layouts; and which captures exist for each sheet."""
    forms: dict[str, dict[str, Any]]
    sheets: dict[str, dict[str, Any]]                      # sheet_id -> row
    form_sheets: dict[str, list[str]]                      # form_id -> sheet ids by page
    layouts: dict[str, Layout]
    captures: dict[str, list[int]] = field(default_factory=dict)   # sheet_id -> read capture ids (ascending)
    capture_sheet: dict[int, str] = field(default_factory=dict)
    quarantined_sheets: dict[str, list[int]] = field(default_factory=dict)  # sheet -> quarantine ids
    quarantine_unassigned: int = 0

    def chosen(self, sheet_id: str) -> int | None:
        """The capture that stands for a sheet: the latest one (a rescan usually replaces a poor scan;
        when captures disagree a person settles it and the decision is recorded on every capture)."""
        caps = self.captures.get(sheet_id)
        return caps[-1] if caps else None


_PARSED: dict[str, tuple[str, Layout]] = {}  # layout hash -> (its stored geometry text, parsed)
PARSED_MAX = 4096


def _layouts(conn, hashes: set[str]) -> dict[str, Layout]:
    """These printed layouts, parsed. A layout never changes once printed (its hash is its geometry's),
    and a form's refresh is mostly parsing its layouts' geometry: a parsed copy is kept per process,
    used only while the stored text is the very same. Readers never change a Layout's fields."""
    wanted = sorted(hashes)
    out = {}
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start:start + CHUNK]
        for lhash, template, version, page, geometry in conn.execute(
                f"SELECT hash, template, version, page, geometry FROM layouts WHERE hash IN ({','.join('?' * len(part))})",
                part):
            kept = _PARSED.get(lhash)
            if kept is None or kept[0] != geometry or (kept[1].template, kept[1].version, kept[1].page) != (template, version, page):
                g = json.loads(geometry)
                kept = (geometry, Layout(lhash, template, version, page, {f["name"]: f for f in g["fields"]}))
                if len(_PARSED) >= PARSED_MAX:
                    _PARSED.clear()
                _PARSED[lhash] = kept
            out[lhash] = kept[1]
    return out


def load_registry(kit: Kit, form_ids: Iterable[str] | None = None) -> Registry:
    conn = kit.db.conn
    where, params = "", []
    if form_ids is not None:
        form_ids = list(form_ids)
        if len(form_ids) > 30000:
            raise ValueError("load_registry: give at most 30000 form ids at a time")
        where = f" WHERE form_id IN ({','.join('?' * len(form_ids))})"
        params = form_ids
    forms = {}
    for row in conn.execute(
            "SELECT form_id, template, version, pages, patient_mrn, downtime_mrn, encounter, accession, ward, bed,"
            " printed_at, context, snapshot_id FROM forms" + where + " ORDER BY rowid", params):
        forms[row[0]] = {"form_id": row[0], "template": row[1], "version": row[2], "pages": row[3],
                         "patient_mrn": row[4], "downtime_mrn": row[5], "encounter": row[6], "accession": row[7],
                         "ward": row[8], "bed": row[9], "printed_at": row[10], "context": loads(row[11]) or {},
                         "snapshot_id": row[12]}
    sheets: dict[str, dict[str, Any]] = {}
    form_sheets: dict[str, list[str]] = {}
    hashes = set()
    for sid, fid, page, lhash in conn.execute(
            "SELECT sheet_id, form_id, page, layout_hash FROM sheets" + where + " ORDER BY form_id, page", params):
        sheets[sid] = {"sheet_id": sid, "form_id": fid, "page": page, "layout_hash": lhash}
        form_sheets.setdefault(fid, []).append(sid)
        hashes.add(lhash)
    reg = Registry(forms, sheets, form_sheets, _layouts(conn, hashes))
    read_sql = "SELECT capture_id, sheet_id FROM captures WHERE status = 'read' AND sheet_id IS NOT NULL"
    if form_ids is None:
        queries = [(read_sql, [])]
    else:
        wanted = sorted(sheets)
        queries = [(read_sql + f" AND sheet_id IN ({','.join('?' * len(part))})", part)
                   for part in (wanted[i:i + CHUNK] for i in range(0, len(wanted), CHUNK))]
    found = []
    for sql, params in queries:
        found += [(cid, sid) for cid, sid in conn.execute(sql, params) if sid in sheets]
    for cid, sid in sorted(found):
        reg.captures.setdefault(sid, []).append(cid)
        reg.capture_sheet[cid] = sid
    # Quarantined pages not yet identified by a clerk. If the code was readable (a page quarantined
    # for poor marks or fit), the payload tells which sheet it is.
    from ..payload import verify as verify_payload
    from ..store.quarantine import list_quarantine
    for item in list_quarantine(conn):
        qid, payload = item.quarantine_id, item.payload
        reg.quarantine_unassigned += 1
        if payload:
            try:
                sid = verify_payload(payload, kit.secret, kit.kit_id).sheet_id
            except FallbackkitError:  # a foreign, forged or broken code names no sheet of ours
                continue
            if sid in sheets:
                reg.quarantined_sheets.setdefault(sid, []).append(qid)
    return reg


def current_reviews(kit: Kit, reading_ids: Iterable[int] | None = None) -> dict[int, Review]:
    """reading_id -> the review that counts (`store.readings.current_reviews`)."""
    return _current_reviews(kit.db.conn, reading_ids)


def iter_capture_values(kit: Kit, capture_ids: Iterable[int] | None = None,
                        reviews: dict[int, Review] | None = None,
                        only_fields: Iterable[str] | None = None) -> Iterator[tuple[int, dict[str, Val]]]:
    """Yield (capture_id, {field: Val}) in capture order, one pass over the readings (all of them,
    or those of the given captures, fetched by index in chunks; with only_fields, of each capture
    only those fields and the readings not auto-accepted or decided: see effective_readings_by_capture)."""
    return effective_readings_by_capture(kit.db.conn, capture_ids=capture_ids, reviews=reviews, record=Val,
                                         only_fields=only_fields)


def current_links(kit: Kit) -> dict[str, dict[str, Any]]:
    """downtime MRN -> the link that counts (the latest one not revoked)."""
    return decisions.current_links(kit.db.conn)


def sheet_conflicts(sheet_id: str, by_capture: dict[int, dict[str, Val]]) -> list[dict[str, Any]]:
    """Fields on which captures of the same paper disagree.

    A conflict exists when the machine saw different things (a different mark, ink in one and not
    the other) or when people's decisions differ. It is resolved once every capture's reading is
    resolved and they all agree (resolve_conflict records the chosen value on each capture)."""
    caps = sorted(by_capture)
    names = sorted({n for v in by_capture.values() for n in v})
    out = []
    for name in names:
        present = [(cid, by_capture[cid][name]) for cid in caps if name in by_capture[cid]]
        if len(present) < 2:
            continue
        machine_differs = len({v.machine_key() for _, v in present}) > 1
        all_resolved = all(v.resolved for _, v in present)
        decided_differs = all_resolved and len({v.comparable() for _, v in present}) > 1
        if machine_differs or decided_differs:
            out.append({"sheet_id": sheet_id, "field": name,
                        "captures": [{"capture_id": cid, "reading_id": v.reading_id, "value": v.value,
                                      "ink": v.ink}
                                     for cid, v in present],
                        "resolved": all_resolved and not decided_differs})
    return out
