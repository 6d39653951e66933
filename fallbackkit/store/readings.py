"""Readings and people's decisions on them: the ONE definition of a reading's effective value.

A reading is what the machine measured for one field of one capture. People decide on it
(`store/decisions.py`: confirm, correct, transcribe, illegible; a supervisor or the decider may
undo). The review that counts is the latest one that is not an undo and has not been undone. A
reading's effective value is that review's value; without one it is the machine's value, and it
is resolved only when the machine auto-accepted it. Every stage asks this module: the review
station, `scan` (`readings list`), reconcile (worklist, conflicts, identities) and the exporters.

Set-based: one query for the reviews that count, one for the readings; never one query per row.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from .transactions import raw_connection

CHUNK = 500  # ids per IN (...) query

_MISSING = object()
_SCALARS: dict[str, Any] = {}  # most stored values are a handful of strings: 'null', 'false', '"given"'


def loads(text: str | None) -> Any:
    """A stored JSON value (cached for the few scalars that make up most of them)."""
    if text is None:
        return None
    value = _SCALARS.get(text, _MISSING)
    if value is _MISSING:
        value = json.loads(text)
        if not isinstance(value, (list, dict)) and len(_SCALARS) < 10_000:
            _SCALARS[text] = value
    return value


@dataclass(frozen=True, slots=True)
class Review:
    """A person's decision on a reading (a row of `reviews` that is not an undo)."""
    review_id: int
    reading_id: int
    decision: str           # confirm | correct | transcribe | illegible
    value: Any
    actor: str
    at: str
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The shape the review station's JSON has always had."""
        return {"review_id": self.review_id, "decision": self.decision, "value": self.value,
                "actor": self.actor, "at": self.at, "note": self.note}


@dataclass(slots=True)
class Reading:
    """One field of one capture: what the machine read, and its value after people's decisions."""
    reading_id: int
    capture_id: int
    sheet_id: str
    field: str
    type: str
    machine_value: Any
    confidence: float
    status: str                 # accepted | review (the machine's verdict)
    reason: str | None
    ink: int | None
    value: Any                  # after people's decisions
    resolved: bool
    source: str                 # machine | confirm | correct | transcribe | illegible
    review: Review | None
    raw: Any = None             # measurements (only when asked for: with_raw=True)
    crop_path: str | None = None

    @property
    def reviewer(self) -> str | None:
        return self.review.actor if self.review is not None else None

    @property
    def reviewed_at(self) -> str | None:
        return self.review.at if self.review is not None else None

    @property
    def review_id(self) -> int | None:
        return self.review.review_id if self.review is not None else None


def effective_value(machine_value: Any, machine_status: str, review: Review | None) -> tuple[Any, bool, str]:
    """(value, resolved, source) of a reading: the rule, in one place."""
    if review is not None:
        return review.value, True, review.decision
    return machine_value, machine_status == "accepted", "machine"


def _has_current_review(reading: str) -> str:
    return (f"EXISTS (SELECT 1 FROM reviews cr WHERE cr.reading_id = {reading}.reading_id"
            " AND cr.decision != 'undo' AND NOT EXISTS (SELECT 1 FROM reviews cu WHERE cu.undoes = cr.review_id))")


def decided_sql(reading: str = "rd") -> str:
    """SQL condition: the reading aliased `reading` has a review that counts (a person decided it)."""
    return _has_current_review(reading)


def undecided_sql(reading: str = "rd") -> str:
    """SQL condition: no review counts for the reading aliased `reading` (it still waits if 'review')."""
    return "NOT " + _has_current_review(reading)


_CURRENT_REVIEWS = (
    "SELECT v.review_id, v.reading_id, v.decision, v.value, v.actor, v.at, v.note FROM reviews v"
    " JOIN (SELECT reading_id, MAX(review_id) AS rid FROM reviews w WHERE decision != 'undo'"
    "       AND NOT EXISTS (SELECT 1 FROM reviews u WHERE u.undoes = w.review_id){} GROUP BY reading_id) c"
    " ON c.rid = v.review_id")


def current_reviews(conn: Any, reading_ids: Iterable[int] | None = None, *,
                    capture_ids: Iterable[int] | None = None, sheet_id: str | None = None) -> dict[int, Review]:
    """reading_id -> the review that counts, for every decided reading (or those of the given
    readings, captures or sheet)."""
    conn = raw_connection(conn)
    if sheet_id is not None and reading_ids is None and capture_ids is None:  # by index: one sheet's readings
        queries = [(_CURRENT_REVIEWS.format(" AND w.reading_id IN (SELECT reading_id FROM readings WHERE sheet_id = ?)"),
                    [sheet_id])]
    elif reading_ids is None and capture_ids is None:
        queries = [(_CURRENT_REVIEWS.format(""), [])]
    else:
        column, wanted = ("reading_id", reading_ids) if reading_ids is not None else ("capture_id", capture_ids)
        ordered = sorted(set(wanted))
        test = "w.reading_id IN ({})" if column == "reading_id" else \
            "w.reading_id IN (SELECT reading_id FROM readings WHERE capture_id IN ({}))"
        queries = [(_CURRENT_REVIEWS.format(" AND " + test.format(",".join("?" * len(part)))), part)
                   for part in (ordered[i:i + CHUNK] for i in range(0, len(ordered), CHUNK))]
    out: dict[int, Review] = {}
    for sql, params in queries:
        for rid, reading_id, decision, value, actor, at, note in conn.execute(sql, params):
            out[reading_id] = Review(rid, reading_id, decision, loads(value), actor, at, note)
    return out


def current_review(conn: Any, reading_id: int) -> Review | None:
    """The review that counts for one reading, or None."""
    return current_reviews(conn, [reading_id]).get(reading_id)


_COLUMNS = "r.reading_id, r.capture_id, r.sheet_id, r.field, r.type, r.value, r.confidence, r.status, r.reason, r.ink"
_ORDER = {"capture": " ORDER BY r.capture_id", "reading": " ORDER BY r.reading_id",
          "sheet": " ORDER BY r.sheet_id, r.reading_id"}
LATEST_READ_CAPTURE = ("r.capture_id IN (SELECT MAX(c2.capture_id) FROM captures c2 WHERE c2.status = 'read'"
                       " AND c2.sheet_id IS NOT NULL GROUP BY c2.sheet_id)")
# The same condition for the few readings of one sheet: a reading's capture is read and no later
# capture of that capture's sheet is (two index steps per reading, not a pass over every capture).
_LATEST_READ_CAPTURE_OF_ROW = (
    "EXISTS (SELECT 1 FROM captures c1 WHERE c1.capture_id = r.capture_id AND c1.status = 'read'"
    " AND c1.sheet_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM captures c2 WHERE c2.status = 'read'"
    " AND c2.sheet_id = c1.sheet_id AND c2.capture_id > c1.capture_id))")


def effective_readings(conn: Any, *, capture_ids: Iterable[int] | None = None,
                       reading_ids: Iterable[int] | None = None, sheet_id: str | None = None,
                       latest_capture: bool = False, order: str = "reading", with_raw: bool = False,
                       reviews: dict[int, Review] | None = None, record: type = Reading) -> Iterator[Reading]:
    """The readings (all, or of the given captures / readings / sheet; only each sheet's latest read
    capture with latest_capture=True), each with its effective value.

    reviews: a `current_reviews(conn)` mapping already fetched (a caller reading many chunks asks
    once). record: a subclass of Reading to build, or a tuple type with Reading's fields in order
    and RECORD_IS_TUPLE set (reconcile's Val: its comparisons, and no object per reading)."""
    return _effective(conn, capture_ids, reading_ids, sheet_id, latest_capture, order, with_raw, reviews, record,
                      False)


def effective_readings_by_capture(conn: Any, *, capture_ids: Iterable[int] | None = None,
                                  reviews: dict[int, Review] | None = None,
                                  record: type = Reading,
                                  only_fields: Iterable[str] | None = None) -> Iterator[tuple[int, dict[str, Reading]]]:
    """(capture_id, {field: reading}) in capture order: `effective_readings` grouped in the same
    pass (reconcile walks every reading of the store this way).

    only_fields (with capture_ids): of each capture, only the readings of these fields, those the
    machine did not accept and those someone decided on (SQLite picks them; the rest are never
    turned into Python objects). A full reconcile needs no more of a sheet scanned once."""
    return _effective(conn, capture_ids, None, None, False, "capture", False, reviews, record, True,
                      None if only_fields is None else sorted(set(only_fields)))


def _effective(conn: Any, capture_ids: Iterable[int] | None, reading_ids: Iterable[int] | None,
               sheet_id: str | None, latest_capture: bool, order: str, with_raw: bool,
               reviews: dict[int, Review] | None, record: type, group: bool,
               only_fields: list[str] | None = None) -> Iterator[Any]:
    conn = raw_connection(conn)
    columns = _COLUMNS + (", r.raw, r.crop_path" if with_raw else "")
    where: list[str] = []
    params: list[Any] = []
    if only_fields is not None:
        if capture_ids is None:
            raise ValueError("only_fields: give the captures")
        where.append("(r.field IN (SELECT value FROM json_each(?)) OR r.status != 'accepted'"
                     " OR EXISTS (SELECT 1 FROM reviews v WHERE v.reading_id = r.reading_id))")
        params.append(json.dumps(only_fields))
    if sheet_id is not None:
        where.append("r.sheet_id = ?")
        params.append(sheet_id)
    if latest_capture:
        where.append(_LATEST_READ_CAPTURE_OF_ROW if sheet_id is not None else LATEST_READ_CAPTURE)
    chunks: list[tuple[str, list[Any], str | None]] = [("", [], None)]
    for column, wanted in (("capture_id", capture_ids), ("reading_id", reading_ids)):
        if wanted is not None:
            ordered = sorted(set(wanted))
            chunks = [(f"r.{column} IN ({','.join('?' * len(part))})", part, column)
                      for part in (ordered[i:i + CHUNK] for i in range(0, len(ordered), CHUNK))]
    if reviews is None and len(chunks) > 1:  # many readings: every review that counts, in one query
        reviews = current_reviews(conn)
    current, values = None, {}
    for extra, extra_params, column in chunks:
        if reviews is not None:
            get = reviews.get
        elif column is None:  # one sheet's readings: its reviews only (the reading screen asks for a form's)
            get = current_reviews(conn, sheet_id=sheet_id).get
        else:  # only the reviews of this chunk's readings: a page of the station asks for ~30 readings
            get = current_reviews(conn, **{column + "s": extra_params}).get
        conds = where + ([extra] if extra else [])
        sql = f"SELECT {columns} FROM readings r" + (" WHERE " + " AND ".join(conds) if conds else "") + _ORDER[order]
        cursor = conn.execute(sql, params + extra_params)
        # effective_value(), inlined: these loops run once per reading of the store (reconcile's
        # grouped walk is the hot one, so it has a loop of its own)
        if group:
            # a record that is a tuple (reconcile's Val) is built straight from the row's values
            new = tuple.__new__ if getattr(record, "RECORD_IS_TUPLE", False) else None
            scalar = _SCALARS.get
            for rid, cid, sid, name, ftype, value, confidence, status, reason, ink in cursor:
                machine = scalar(value, _MISSING) if value is not None else None  # loads(), inlined
                if machine is _MISSING:
                    machine = loads(value)
                review = get(rid)
                if new is not None:
                    made = new(record, (rid, cid, sid, name, ftype, machine, confidence, status, reason, ink,
                                        machine, status == "accepted", "machine", None) if review is None else
                               (rid, cid, sid, name, ftype, machine, confidence, status, reason, ink,
                                review.value, True, review.decision, review))
                elif review is None:
                    made = record(rid, cid, sid, name, ftype, machine, confidence, status, reason, ink,
                                  machine, status == "accepted", "machine", None)
                else:
                    made = record(rid, cid, sid, name, ftype, machine, confidence, status, reason, ink,
                                  review.value, True, review.decision, review)
                if cid == current:
                    values[name] = made
                else:
                    if current is not None:
                        yield current, values
                    current, values = cid, {name: made}
            continue
        for row in cursor:
            rid, cid, sid, name, ftype, value, confidence, status, reason, ink = row[:10]
            machine = loads(value)
            review = get(rid)
            if review is None:
                made = record(rid, cid, sid, name, ftype, machine, confidence, status, reason, ink,
                              machine, status == "accepted", "machine", None)
            else:
                made = record(rid, cid, sid, name, ftype, machine, confidence, status, reason, ink,
                              review.value, True, review.decision, review)
            if with_raw:
                made.raw, made.crop_path = json.loads(row[10]) if row[10] else {}, row[11]
            yield made
    if group and current is not None:
        yield current, values


def set_aside_indexes(conn: Any) -> list[str]:
    """Drop the readings' secondary indexes before a bulk insert (a merge into a near-empty
    station: each index built once at the end is a sort, not millions of inserts into random
    places). Each definition is recorded in `indexes_set_aside` in the caller's transaction, with
    its DROP, so that `restore_indexes` builds them again even after a crash. Returns their names."""
    conn = raw_connection(conn)
    found = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'readings'"
                         " AND sql IS NOT NULL ORDER BY name").fetchall()
    for name, sql in found:
        conn.execute("INSERT OR REPLACE INTO indexes_set_aside (name, sql) VALUES (?, ?)", [name, sql])
        conn.execute(f'DROP INDEX "{name}"')
    return [name for name, _ in found]


def restore_indexes(conn: Any) -> list[str]:
    """Build again every index `set_aside_indexes` dropped (caller's transaction); returns their names."""
    conn = raw_connection(conn)
    done = []
    for name, sql in conn.execute("SELECT name, sql FROM indexes_set_aside ORDER BY name").fetchall():
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", [name]).fetchone() is None:
            conn.execute(sql)
        conn.execute("DELETE FROM indexes_set_aside WHERE name = ?", [name])
        done.append(name)
    return done


def indexes_set_aside(conn: Any) -> list[str]:
    """Indexes a merge set aside and has not built again yet (a merge killed midway)."""
    return [r[0] for r in raw_connection(conn).execute("SELECT name FROM indexes_set_aside ORDER BY name")]


def effective_reading(conn: Any, reading_id: int) -> Reading | None:
    """One reading with its effective value, or None when there is no such reading."""
    return next(iter(effective_readings(conn, reading_ids=[reading_id])), None)
