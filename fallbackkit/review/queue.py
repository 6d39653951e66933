"""What waits for a person, read straight from the store with indexed queries.

The reading queue is "readings in status 'review' with no decision that counts" (a review that is
neither an undo nor undone). `next_reading` walks the (status, reading_id) index and stops at the
first match (LIMIT 1), so serving the next item costs the same with 10 or 10,000 items waiting.

Several clerks at once: `claim_next` hands a clerk the next reading nobody else has claimed and
claims it for them for CLAIM_SECONDS (renewed while it is on their screen, `renew_claims`). A claim
ends when the reading is decided (store/decisions.py record_review), when the clerk moves on (their
next request no longer keeps it) or when it expires, so nothing stays stuck with a clerk who left.
A claim only decides who is handed what: deciding is still guarded by the 409 "decided meanwhile".
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import BadInput, NotFound
from ..store.readings import undecided_sql
from ..templates.values import field_options, is_option_value

CLAIM_SECONDS = 180.0  # a reading handed to a clerk stays theirs this long unless renewed (3 min)

# No decision that counts, and the capture is the latest of its sheet (the one reconciliation uses;
# a disagreement between captures shows up as a conflict instead).
PENDING = (undecided_sql("rd") +
           " AND NOT EXISTS (SELECT 1 FROM captures later WHERE later.sheet_id = rd.sheet_id"
           " AND later.status = 'read' AND later.capture_id > rd.capture_id)")


def _conn(conn):
    return conn.conn if hasattr(conn, "conn") else conn


def _filters(ward: str | None, template: str | None, reason: str | None) -> tuple[str, str, list[Any]]:
    joins, where, params = "", "", []
    if ward or template:
        joins = " JOIN captures c ON c.capture_id = rd.capture_id"
        if template:
            where += " AND c.template = ?"
            params.append(template)
        if ward:
            joins += " JOIN forms f ON f.form_id = c.form_id"
            where += " AND f.ward = ?"
            params.append(ward)
    if reason:
        clause, value = reason_clause(reason, "rd")
        where += f" AND {clause}"
        params.append(value)
    return joins, where, params


# A reason filter is a code (scan/reasons.py): the readings whose stored codes (readings.reason_codes,
# quarantine.reason_codes) hold it, whatever its parameters or the other reasons beside it.
HAS_CODE = ("EXISTS (SELECT 1 FROM json_each({t}.reason_codes) j"
            " WHERE json_extract(j.value, '$.code') = ?)")


def is_reason_code(value: str) -> bool:
    from ..scan.reasons import ENGLISH, QUARANTINE
    return value in ENGLISH or value in QUARANTINE or value == "other"


def reason_clause(reason: str, table: str) -> tuple[str, str]:
    """The WHERE part (one parameter) for a reason filter on `table` (an alias of readings or
    quarantine). A value that is no code (a link saved before the codes) selects its exact text."""
    if is_reason_code(reason):
        return HAS_CODE.format(t=table), reason
    return f"{table}.reason = ?", reason


def counts_by_code(counts: dict[str, int]) -> dict[str, int]:
    """Waiting readings per stored reason text -> per reason code (a reading with two reasons counts
    under both, as the filter by either finds it), most first. The count of "unsure" (no reason) stays."""
    from ..scan.reasons import parse
    out: dict[str, int] = {}
    for text, n in counts.items():
        codes = ["unsure"] if text in (None, "unsure") else list(dict.fromkeys(r["code"] for r in parse(text)))
        for code in codes:
            out[code] = out.get(code, 0) + n
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


# a live claim of someone else (params: actor, now) / a claim of this clerk (params: actor, now)
CLAIMED_BY_OTHER = ("EXISTS (SELECT 1 FROM review_claims cl WHERE cl.reading_id = rd.reading_id"
                    " AND cl.actor != ? AND cl.expires_at > ?)")
CLAIMED_BY_ME = ("EXISTS (SELECT 1 FROM review_claims cl WHERE cl.reading_id = rd.reading_id"
                 " AND cl.actor = ? AND cl.expires_at > ?)")


def next_sql(ward: str | None = None, template: str | None = None, reason: str | None = None,
             claims: str | None = None) -> tuple[str, list[Any]]:
    """The query behind next_reading: its first parameter is the reading id to start after.

    claims="free" also skips readings someone else has claimed, claims="mine" keeps only this
    clerk's own; both then take the clerk's name and the time as their last two parameters."""
    joins, where, params = _filters(ward, template, reason)
    if claims == "free":
        where += f" AND NOT {CLAIMED_BY_OTHER}"
    elif claims == "mine":
        where += f" AND {CLAIMED_BY_ME}"
    return (f"SELECT rd.reading_id FROM readings rd{joins} WHERE rd.status = 'review' AND rd.reading_id > ?"
            f"{where} AND {PENDING} ORDER BY rd.reading_id LIMIT 1", params)


def next_reading(conn, after: int = 0, ward: str | None = None, template: str | None = None,
                 reason: str | None = None, wrap: bool = True, *, actor: str | None = None,
                 now: float | None = None, claims: str | None = None) -> int | None:
    """The id of the next reading waiting for a person after `after` (wrapping round once), or None.

    With actor (and claims="free", the default then), readings someone else claimed are skipped."""
    conn = _conn(conn)
    if actor is not None:
        claims = claims or "free"
    sql, params = next_sql(ward, template, reason, claims)
    if claims:
        params = [*params, actor, time.time() if now is None else now]
    row = conn.execute(sql, [after, *params]).fetchone()
    if row is None and wrap and after > 0:
        row = conn.execute(sql, [0, *params]).fetchone()
    return row[0] if row else None


def _pending(conn, reading_id: int) -> bool:
    return conn.execute(f"SELECT 1 FROM readings rd WHERE rd.reading_id = ? AND rd.status = 'review' AND {PENDING}",
                        [reading_id]).fetchone() is not None


def _hold(conn, reading_id: int, actor: str, now: float, seconds: float) -> bool:
    """Claim (or renew) reading_id for actor unless someone else holds a live claim on it."""
    conn.execute("INSERT INTO review_claims (reading_id, actor, claimed_at, expires_at) VALUES (?, ?, ?, ?)"
                 " ON CONFLICT (reading_id) DO UPDATE SET actor = excluded.actor, expires_at = excluded.expires_at,"
                 " claimed_at = CASE WHEN review_claims.actor = excluded.actor THEN review_claims.claimed_at"
                 " ELSE excluded.claimed_at END"
                 " WHERE review_claims.actor = excluded.actor OR review_claims.expires_at <= ?",
                 [reading_id, actor, now, now + seconds, now])
    row = conn.execute("SELECT actor FROM review_claims WHERE reading_id = ?", [reading_id]).fetchone()
    return row is not None and row[0] == actor


# The initials legend of a MAR ("Nurses on this sheet": l<k>.initials, l<k>.name; reconcile/legend.py)
# is handed before the form's initials slots (m<k>.s<j>.initials ...), so that every slot is then a
# one-key pick from it (review/initials.py). Point lookups per claim on readings_sheet (sheet_id, field).
_FORM_READINGS = ("SELECT rd.reading_id FROM captures c JOIN readings rd ON rd.sheet_id = c.sheet_id"
                  " AND rd.capture_id = c.capture_id WHERE c.form_id = ? AND rd.status = 'review'")
_LEGEND_SQL = ("rd.field >= 'l' AND rd.field < 'm'"
               " AND (rd.field GLOB 'l[0-9]*.initials' OR rd.field GLOB 'l[0-9]*.name')")
_SLOT_SQL = "rd.type = 'initials' AND rd.field GLOB '[a-z][0-9]*.s[0-9]*.initials'"


def _legend_reading(conn, reading_id: int) -> tuple[int | None, bool, bool]:
    """(form_id, is a legend row, is an initials slot) of a reading."""
    from .initials import LEGEND_FIELD, SLOT_FIELD
    row = conn.execute("SELECT c.form_id, rd.field, rd.type FROM readings rd JOIN captures c"
                       " ON c.capture_id = rd.capture_id WHERE rd.reading_id = ?", [reading_id]).fetchone()
    if row is None or row[0] is None:
        return None, False, False
    return row[0], bool(LEGEND_FIELD.match(row[1])), row[2] == "initials" and bool(SLOT_FIELD.match(row[1]))


def _next_legend(conn, form_id: int, after: int, actor: str, now: float) -> int | None:
    row = conn.execute(f"{_FORM_READINGS} AND {_LEGEND_SQL} AND rd.reading_id > ? AND {PENDING}"
                       f" AND NOT {CLAIMED_BY_OTHER} ORDER BY rd.reading_id LIMIT 1",
                       [form_id, after, actor, now]).fetchone()
    return row[0] if row else None


def _first_slot(conn, form_id: int) -> int | None:
    row = conn.execute(f"SELECT MIN(reading_id) FROM ({_FORM_READINGS} AND {_SLOT_SQL} AND {PENDING})",
                       [form_id]).fetchone()
    return row[0] if row else None


def legend_first(conn, rid: int | None, after: int, actor: str, now: float,
                 next_after=None) -> int | None:
    """The reading to hand instead of rid so that a form's legend comes before its initials slots.

    rid is the queue's next reading after `after`. Coming from a legend row, the next legend row of
    the form comes next, then the form's first slot still waiting (even when the legend is printed
    after the slots); a legend row the clerk skipped is not handed again until the queue comes back
    to the form's first slot with none of its slots decided. next_after(x) is the queue's next
    reading after x."""
    conn = _conn(conn)
    if after:
        form, is_legend, _ = _legend_reading(conn, after)
        if is_legend:
            nxt = _next_legend(conn, form, after, actor, now)
            if nxt is not None:
                return nxt
            slot = _first_slot(conn, form)
            if slot is not None and slot < after and next_after is not None:
                return next_after(slot - 1)
            return rid
    if rid is None:
        return None
    form, _, is_slot = _legend_reading(conn, rid)
    if not is_slot or _first_slot(conn, form) != rid or _slots_started(conn, form):
        return rid
    return _next_legend(conn, form, 0, actor, now) or rid


def _slots_started(conn, form_id: int) -> bool:
    """Some initials slot of the form is decided: the clerk is past the legend (skipped or typed)."""
    return conn.execute(f"{_FORM_READINGS} AND {_SLOT_SQL} AND NOT ({undecided_sql('rd')}) LIMIT 1",
                        [form_id]).fetchone() is not None


def claim_next(conn, actor: str, after: int = 0, keep: int | None = None, ward: str | None = None,
               template: str | None = None, reason: str | None = None, *, now: float | None = None,
               seconds: float = CLAIM_SECONDS) -> int | None:
    """The next reading for this clerk, claimed for them, in one write transaction (BEGIN IMMEDIATE:
    two clerks asking at the same instant never get the same reading).

    after: the reading the clerk comes from; keep: the reading still on their screen (a prefetch),
    which stays claimed. Every other claim of the clerk ends (they moved on). A clerk starting
    afresh (no after, no keep: a reload, a new tab) gets back the reading they still hold."""
    from ..store.transactions import atomic
    conn = _conn(conn)
    now = time.time() if now is None else now
    with atomic(conn):
        conn.execute("DELETE FROM review_claims WHERE expires_at <= ?", [now])
        rid = None
        if not after and keep is None:
            rid = next_reading(conn, 0, ward, template, reason, actor=actor, now=now, claims="mine")
        if rid is None:
            rid = next_reading(conn, after, ward, template, reason, actor=actor, now=now)
            rid = legend_first(conn, rid, after, actor, now, lambda x: next_reading(
                conn, x, ward, template, reason, actor=actor, now=now))
        held = [x for x in dict.fromkeys((rid, keep)) if x is not None]
        marks = ",".join("?" * len(held))
        conn.execute("DELETE FROM review_claims WHERE actor = ?" + (f" AND reading_id NOT IN ({marks})" if held else ""),
                     [actor, *held])
        for x in held:
            if x == rid or _pending(conn, x):
                _hold(conn, x, actor, now, seconds)
    return rid


@contextmanager
def snapshot(conn) -> Iterator[None]:
    """Reads that see one state of the store (a read transaction: WAL readers take no lock that
    a writer waits for, and wait for none)."""
    conn = _conn(conn)
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.rollback()  # nothing was written: ending the read transaction


def held_by(conn, reading_id: int, actor: str, now: float) -> bool:
    """The reading still waits for a person and actor holds a live claim on it."""
    conn = _conn(conn)
    return _pending(conn, reading_id) and conn.execute(
        "SELECT 1 FROM review_claims WHERE reading_id = ? AND actor = ? AND expires_at > ?",
        [reading_id, actor, now]).fetchone() is not None


def renew_claims(conn, actor: str, reading_ids: list[int], *, now: float | None = None,
                 seconds: float = CLAIM_SECONDS) -> list[int]:
    """Renew the clerk's claims on the readings on their screen; the ids they still hold (a reading
    decided meanwhile or claimed by someone else after this clerk's claim expired is not held)."""
    from ..store.transactions import atomic
    conn = _conn(conn)
    now = time.time() if now is None else now
    held = []
    with atomic(conn):
        for rid in dict.fromkeys(reading_ids):
            if _pending(conn, rid) and _hold(conn, rid, actor, now, seconds):
                held.append(rid)
    return held


def claimed_by_others(conn, actor: str, *, now: float | None = None) -> int:
    """Readings waiting for a person that someone else holds a live claim on."""
    conn = _conn(conn)
    return conn.execute(f"SELECT COUNT(*) FROM readings rd WHERE rd.status = 'review' AND {CLAIMED_BY_OTHER}"
                        f" AND {PENDING}", [actor, time.time() if now is None else now]).fetchone()[0]


def release_claim(conn, reading_id: int) -> None:
    """A decided reading is nobody's any more (called inside the decision's transaction)."""
    _conn(conn).execute("DELETE FROM review_claims WHERE reading_id = ?", [reading_id])


def list_queue(conn, ward: str | None = None, template: str | None = None, reason: str | None = None,
               limit: int = 100) -> list[dict[str, Any]]:
    conn = _conn(conn)
    joins, where, params = _filters(ward, template, reason)
    sql = (f"SELECT rd.reading_id FROM readings rd{joins} WHERE rd.status = 'review'{where} AND {PENDING}"
           f" ORDER BY rd.reading_id LIMIT ?")
    ids = [r[0] for r in conn.execute(sql, [*params, limit])]
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        "SELECT rd.reading_id, rd.sheet_id, rd.field, rd.type, rd.reason, rd.value, c.template, c.page, f.ward, f.bed,"
        " COALESCE(f.patient_mrn, f.downtime_mrn), c.version FROM readings rd JOIN captures c ON c.capture_id = rd.capture_id"
        f" LEFT JOIN forms f ON f.form_id = c.form_id WHERE rd.reading_id IN ({marks}) ORDER BY rd.reading_id", ids)
    return [{"reading_id": r[0], "sheet_id": r[1], "field": r[2], "type": r[3], "reason": r[4],
             "value": json.loads(r[5]) if r[5] is not None else None, "template": r[6], "page": r[7],
             "ward": r[8], "bed": r[9], "mrn": r[10], "version": r[11]} for r in rows]


def queue_counts(conn, ward: str | None = None, template: str | None = None) -> dict[str, int]:
    """Waiting readings per reason (for the filter bar)."""
    conn = _conn(conn)
    joins, where, params = _filters(ward, template, None)
    rows = conn.execute(f"SELECT rd.reason, COUNT(*) FROM readings rd{joins} WHERE rd.status = 'review'{where}"
                        f" AND {PENDING} GROUP BY rd.reason ORDER BY 2 DESC", params)
    return {r[0] or "unsure": r[1] for r in rows}


def filter_choices(conn) -> dict[str, list[str]]:
    """Wards, templates and reasons to filter by (index skip-scans: a few steps, whatever the size)."""
    conn = _conn(conn)
    def distinct(column: str, where: str = "1") -> list[Any]:  # one index step per value, not per row
        return [r[0] for r in conn.execute(
            f"WITH RECURSIVE d(v) AS (SELECT MIN({column}) FROM forms WHERE {where} UNION ALL"
            f" SELECT (SELECT MIN({column}) FROM forms WHERE {where} AND {column} > d.v) FROM d WHERE d.v IS NOT NULL)"
            " SELECT v FROM d WHERE v IS NOT NULL")]
    wards, templates = distinct("ward"), distinct("template")
    texts = [r[0] for r in conn.execute(  # one step per reason on the partial index (m0066), not per reading
        "WITH RECURSIVE r(reason) AS (SELECT MIN(reason) FROM readings WHERE status = 'review'"
        " UNION ALL SELECT (SELECT MIN(reason) FROM readings WHERE status = 'review' AND reason > r.reason)"
        " FROM r WHERE r.reason IS NOT NULL) SELECT reason FROM r WHERE reason IS NOT NULL")]
    return {"wards": wards, "templates": templates, "reasons": reason_codes_of(texts)}


def reason_codes_of(texts) -> list[str]:
    """The codes the given stored reasons hold, in the order of scan/reasons.py (a stable list to pick from)."""
    from ..scan.reasons import ENGLISH, QUARANTINE, parse
    found = {r["code"] for text in texts for r in ([{"code": text}] if text in QUARANTINE else parse(text))}
    order = [*ENGLISH, *QUARANTINE, "other"]
    return [c for c in order if c in found]


def open_quarantine_count(conn) -> int:
    """How many quarantined pages nobody has identified yet."""
    return _conn(conn).execute("SELECT COUNT(*) FROM quarantine q WHERE NOT EXISTS"
                               " (SELECT 1 FROM quarantine_assignments a WHERE a.quarantine_id = q.quarantine_id)"
                               ).fetchone()[0]


def open_quarantine(conn, reason: str | None = None) -> list[dict[str, Any]]:
    """Quarantined pages nobody has identified yet; with reason (a code), those whose stored codes
    (quarantine.reason_codes) hold it."""
    from ..store.quarantine import list_quarantine
    items = [item.as_dict() for item in list_quarantine(conn)]
    if not reason:
        return items
    clause, value = reason_clause(reason, "q")
    keep = {r[0] for r in _conn(conn).execute(f"SELECT q.quarantine_id FROM quarantine q WHERE {clause}", [value])}
    return [i for i in items if i["quarantine_id"] in keep]


# --- geometry: where a field is on the page image ---------------------------------------------

def page_view_size(conn, kit_path: Path | None, capture_id: int) -> tuple[int, int] | None:
    """(width, height) of a capture's page image without making it (scan/pageview.py): the
    cached file's header, else the size it will have."""
    from ..scan.pageview import page_image_size
    from ..store.captures import page_image_source
    try:
        return page_image_size(kit_path, page_image_source(_conn(conn), capture_id))
    except NotFound:
        return None


def page_view_problem(kit_path: Path | None, capture_id: int, image_path: str | None,
                      archive_path: str | None) -> str | None:
    """Why a capture's page image cannot be shown (its original missing from the archive and no
    cached copy), or None; a damaged original is only found out when the image is made."""
    from ..scan.pageview import missing_original
    return missing_original(kit_path, capture_id, image_path, archive_path) if kit_path is not None else None


def page_mapper(size_px: tuple[int, int], page_size_mm: list[float]):
    """A function mm (x, y) -> px on the stored page image.

    The scan stage stores each read page rectified and upright (the sheet's own frame at about
    100 dpi), so page millimetres map onto it by scaling alone; the capture's homography maps
    onto the original scan, not onto this image."""
    (w, h), (pw, ph) = size_px, page_size_mm
    sx, sy = w / pw, h / ph
    return lambda x, y: (x * sx, y * sy)


def field_boxes(field: dict[str, Any]) -> list[list[float]]:
    if field.get("box_mm"):
        return [field["box_mm"]]
    return [o["box_mm"] for o in field.get("options", []) if o.get("box_mm")]


def outline(mapper, boxes: list[list[float]], pad_mm: float = 1.5) -> str:
    """SVG polygon points around the union of boxes (mm), in image px."""
    if not boxes:
        return ""
    x0 = min(b[0] for b in boxes) - pad_mm
    y0 = min(b[1] for b in boxes) - pad_mm
    x1 = max(b[0] + b[2] for b in boxes) + pad_mm
    y1 = max(b[1] + b[3] for b in boxes) + pad_mm
    pts = [mapper(x0, y0), mapper(x1, y0), mapper(x1, y1), mapper(x0, y1)]
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)


_GEOMETRY: dict[str, Any] = {}


def layout_geometry(conn, layout_hash: str | None) -> dict[str, Any] | None:
    """A printed layout's geometry, parsed once per process and shared: treat it as read-only. A
    layout row never changes (its key is the hash of its geometry), and parsing one costs more
    than the rest of a reading screen."""
    if not layout_hash:
        return None
    found = _GEOMETRY.get(layout_hash)
    if found is None:
        row = _conn(conn).execute("SELECT geometry FROM layouts WHERE hash = ?", [layout_hash]).fetchone()
        if row is None or not row[0]:
            return None
        if len(_GEOMETRY) > 256:
            _GEOMETRY.clear()
        found = _GEOMETRY[layout_hash] = json.loads(row[0])
    return found


def capture_info(conn, capture_id: int) -> dict[str, Any]:
    conn = _conn(conn)
    row = conn.execute(
        "SELECT c.capture_id, c.status, c.sheet_id, c.form_id, c.template, c.version, c.page, c.pages, c.transform,"
        " c.dpi, c.image_path, c.width_px, c.height_px, c.duplicate_of, c.captured_at, f.ward, f.bed,"
        " f.patient_mrn, f.downtime_mrn, i.archive_path, s.layout_hash FROM captures c"
        " LEFT JOIN forms f ON f.form_id = c.form_id LEFT JOIN input_files i ON i.sha256 = c.file_sha256"
        " LEFT JOIN sheets s ON s.sheet_id = c.sheet_id WHERE c.capture_id = ?", [capture_id]).fetchone()
    if row is None:
        raise NotFound(f"no capture {capture_id}")
    keys = ["capture_id", "status", "sheet_id", "form_id", "template", "version", "page", "pages", "transform",
            "dpi", "image_path", "width_px", "height_px", "duplicate_of", "captured_at", "ward", "bed",
            "patient_mrn", "downtime_mrn", "archive_path", "geometry"]
    info = dict(zip(keys, row))
    info["geometry"] = layout_geometry(conn, info["geometry"])
    return info


def reading_options(conn, reading_id: int) -> list[Any] | None:
    """The options printed for a reading's field (None: a field without options), from its
    layout alone: what the conflicts screen needs of a reading, without the reading screen's
    image, suggestion and history."""
    row = _conn(conn).execute(
        "SELECT rd.field, rd.type, s.layout_hash FROM readings rd JOIN captures c ON c.capture_id = rd.capture_id"
        " LEFT JOIN sheets s ON s.sheet_id = c.sheet_id WHERE rd.reading_id = ?", [reading_id]).fetchone()
    if row is None:
        raise NotFound(f"no reading {reading_id}")
    geometry = layout_geometry(conn, row[2])
    field = next((f for f in geometry["fields"] if f["name"] == row[0]), None) if geometry else None
    return field_options(field, row[1])


def reading_detail(conn, reading_id: int, kit_path: Path | None = None) -> dict[str, Any]:
    """Everything the reading screen shows for one reading."""
    from ..store.decisions import current_review
    from ..store.reviews import history as review_history
    conn = _conn(conn)
    row = conn.execute(
        "SELECT reading_id, capture_id, sheet_id, field, type, raw, value, confidence, status, reason, ink, crop_path"
        " FROM readings WHERE reading_id = ?", [reading_id]).fetchone()
    if row is None:
        raise NotFound(f"no reading {reading_id}")
    r = dict(zip(["reading_id", "capture_id", "sheet_id", "field", "type", "raw", "value", "confidence", "status",
                  "reason", "ink", "crop_path"], row))
    r["raw"] = json.loads(r["raw"]) if r["raw"] else {}
    r["value"] = json.loads(r["value"]) if r["value"] is not None else None
    cap = capture_info(conn, r["capture_id"])
    geometry = cap.pop("geometry")
    field = None
    if geometry:
        field = next((f for f in geometry["fields"] if f["name"] == r["field"]), None)
    r["capture"] = {k: v for k, v in cap.items() if k not in ("transform", "archive_path")}
    r["options"] = field_options(field, r["type"])
    r["has_crop"] = bool(r["crop_path"]) or bool(cap["image_path"] and field)
    r["has_page"] = bool(cap["image_path"])
    r["outline"] = ""
    size = page_view_size(conn, kit_path, r["capture_id"])
    r["capture"]["img_w"], r["capture"]["img_h"] = size or (None, None)
    if geometry and field and size:
        r["outline"] = outline(page_mapper(size, geometry["page_size_mm"]), field_boxes(field))
    r["extra"] = {k: field[k] for k in ("scheduled", "medication", "format", "digits") if field and k in field}
    if "medication" in r["extra"]:  # the layout names the census line: the clerk reads the drug printed there
        r["extra"]["medication"] = printed_medication(conn, cap.get("form_id"), r["extra"]["medication"])
    r["review"] = current_review(conn, reading_id)
    r["suggestion"] = reading_suggestion(conn, r, field, kit_path)
    r["history"] = review_history(conn, reading_id)
    return r


def printed_medication(conn, form_id: str | None, line: Any) -> Any:
    """The drug and dose pre-printed on a MAR's census line (the form's context), else the line."""
    row = _conn(conn).execute("SELECT context FROM forms WHERE form_id = ?", [form_id]).fetchone() if form_id else None
    try:
        meds = (json.loads(row[0]) or {}).get("medications") or [] if row and row[0] else []
    except (ValueError, AttributeError):
        return line
    med = next((m for m in meds if isinstance(m, dict) and str(m.get("line")) == str(line)), None)
    text = " ".join(str(med[k]) for k in ("medication", "dose") if med and med.get(k)) if med else ""
    return text or line


def reading_suggestion(conn, r: dict[str, Any], field: dict | None, kit_path: Path | None
                       ) -> dict[str, Any] | None:
    """The digit suggestion of a comb reading (re-decided from its stored cell measures), with each
    cell's place on the crop (fractions) so that unsure digits can be highlighted there."""
    from ..scan.read import CROP_MARGIN_MM
    from ..scan.suggest import SuggestionContext, prefill_pattern
    from ..templates.layout import comb_groups
    if field is None or not r["raw"].get("cells"):
        return None
    hints = SuggestionContext(conn, kit_path / "form_templates" if kit_path else None)
    got = hints.for_reading(r["sheet_id"], r["field"], r["raw"])
    if got is None:
        return None
    x, y, w, h = field["box_mm"]
    cw, ch = w + 2 * CROP_MARGIN_MM, h + 2 * CROP_MARGIN_MM
    for cell, (cx, cy, cwid, chei) in zip(got["cells"], field["cells_mm"]):
        cell["crop"] = [round((cx - x + CROP_MARGIN_MM) / cw, 4), round((cy - y + CROP_MARGIN_MM) / ch, 4),
                        round(cwid / cw, 4), round(chei / ch, 4)]
    got["prefill"] = bool(got["prefill"]) and r["review"] is None
    got["partial"] = bool(got.get("partial")) and r["review"] is None
    got["blank"] = bool(got.get("blank")) and r["review"] is None
    got["pattern"] = prefill_pattern(got, field)  # what the station puts in the box (None: nothing)
    groups = comb_groups(field["type"], field.get("format"), int(field.get("digits") or 0),
                         int(field.get("decimals") or 0))
    got["groups"] = [list(g) for g in groups] if sum(n for _, n in groups) == len(got["cells"]) else None
    return got


def page_overlay(conn, capture_id: int, kit_path: Path | None = None) -> dict[str, Any]:
    """A captured page with every field's reading (effective value) placed over it."""
    from ..store.readings import effective_readings
    conn = _conn(conn)
    cap = capture_info(conn, capture_id)
    geometry = cap.pop("geometry")
    fields = []
    size = page_view_size(conn, kit_path, capture_id)
    cap["img_w"], cap["img_h"] = size or (None, None)
    cap["image_problem"] = page_view_problem(kit_path, capture_id, cap["image_path"], cap.pop("archive_path"))
    if geometry and size:
        mapper = page_mapper(size, geometry["page_size_mm"])
        by_name = {f["name"]: f for f in geometry["fields"]}
        for eff in effective_readings(conn, capture_ids=[capture_id], order="reading"):
            rid, name = eff.reading_id, eff.field
            f = by_name.get(name)
            if not f:
                continue
            boxes = field_boxes(f)
            pts = outline(mapper, boxes, pad_mm=0.5)
            x0 = min(b[0] for b in boxes)
            y0 = min(b[1] for b in boxes)
            lx, ly = mapper(x0, y0 - 0.8)
            fields.append({"reading_id": rid, "field": name, "value": eff.value, "resolved": eff.resolved,
                           "source": eff.source, "points": pts, "label_x": round(lx, 1), "label_y": round(ly, 1)})
    return {"capture": {k: v for k, v in cap.items() if k != "transform"}, "fields": fields}


def field_crop_from_page(conn, kit_path: Path, reading_id: int, pad_mm: float = 3.0) -> bytes | None:
    """PNG of a field cut from its capture's page image (readings the machine accepted keep no crop)."""
    import io

    from PIL import Image
    conn = _conn(conn)
    row = conn.execute("SELECT capture_id, field FROM readings WHERE reading_id = ?", [reading_id]).fetchone()
    if row is None:
        return None
    cap = capture_info(conn, row[0])
    geometry = cap["geometry"]
    field = next((f for f in geometry["fields"] if f["name"] == row[1]), None) if geometry else None
    if field is None or not cap["image_path"]:
        return None
    boxes = field_boxes(field)
    try:
        with Image.open(kit_file(kit_path, cap["image_path"])) as im:
            mapper = page_mapper(im.size, geometry["page_size_mm"])
            x0, y0 = mapper(min(b[0] for b in boxes) - pad_mm, min(b[1] for b in boxes) - pad_mm)
            x1, y1 = mapper(max(b[0] + b[2] for b in boxes) + pad_mm, max(b[1] + b[3] for b in boxes) + pad_mm)
            crop = im.crop((max(0, int(x0)), max(0, int(y0)), min(im.width, int(x1) + 1), min(im.height, int(y1) + 1)))
            out = io.BytesIO()
            crop.save(out, format="PNG")
            return out.getvalue()
    except (NotFound, OSError):
        return None


IMAGE_FOLDERS = ("pages", "crops")  # page images (cached by scan/pageview.py) and crops kept at scan time


def kit_file(kit_path: Path, relative: str | None) -> Path:
    """A stored image: a file under the kit's pages/ or crops/ folder, symlinks resolved.

    Anything else (../, an absolute path, secret.key, store.sqlite, a symlink out of those folders)
    is NotFound, whatever path a store row holds."""
    if not relative:
        raise NotFound("no image was stored for this item")
    kit_path = Path(kit_path)
    try:
        target = (kit_path / relative).resolve()
        roots = [(kit_path / folder).resolve() for folder in IMAGE_FOLDERS]
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        raise NotFound("image not found in the kit") from None
    if not any(root in target.parents for root in roots) or not target.is_file():
        raise NotFound("image not found in the kit")
    return target


# --- what a clerk may decide on a reading ---------------------------------------------------------
DECISIONS = ("confirm", "correct", "transcribe", "illegible")
TYPED_MAX = 500  # characters of a typed value


def decision_value(detail: dict[str, Any], decision: Any, value: Any) -> Any:
    """The value a decision saves; refuses one the field cannot take (fail closed: the clerk sees why)."""
    if decision not in DECISIONS:
        raise BadInput("decision must be confirm, correct, transcribe or illegible")
    if decision in ("confirm", "illegible"):
        return None if decision == "illegible" else detail["value"]
    options = detail["options"]
    if options is not None:
        if not is_option_value(options, detail["type"], value):
            raise BadInput("pick options of this field" if detail["type"] == "multichoice"
                           else "pick one of the options of this field")
        return sorted(set(value)) if detail["type"] == "multichoice" else value
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > TYPED_MAX:
        raise BadInput(f"type the value as text (at most {TYPED_MAX} characters)")
    value = value.strip()
    if detail["type"] == "number" and value and not all(c.isdigit() or c in ".,-" for c in value):
        raise BadInput("a number field takes digits only")
    return value or None


# --- reads the station's screens make of readings, captures and reviews (owned by store/) ---------
def returned_by_undo(conn, reading_id: int) -> dict[str, Any] | None:
    from ..store.reviews import returned_by_undo
    return returned_by_undo(conn, reading_id)


def own_decision_times(conn, actor: str, limit: int = 2000) -> list[str]:
    from ..store.reviews import standing_decision_times
    return standing_decision_times(conn, actor, limit)


def recent_decisions(conn, limit: int = 200) -> list[dict[str, Any]]:
    from ..store.reviews import recent_decisions
    return recent_decisions(conn, limit)


def crop_path(conn, reading_id: int) -> tuple[bool, str | None]:
    from ..store.captures import crop_path
    return crop_path(conn, reading_id)


def page_image_path(conn, capture_id: int) -> tuple[bool, str | None]:
    from ..store.captures import page_image_path
    return page_image_path(conn, capture_id)


def capture_times(conn, capture_ids: list[int]) -> dict[int, str]:
    from ..store.captures import capture_times
    return capture_times(conn, capture_ids)


def quarantine_reason(conn, quarantine_id: int) -> str | None:
    from ..store.quarantine import get_quarantined
    item = get_quarantined(conn, quarantine_id)
    return item.reason if item else None


def form_templates(conn, form_ids: Any = None) -> dict[str, tuple[str, int]]:
    """form id -> (template, version), of every form or of the given ones (by index)."""
    conn = _conn(conn)
    if form_ids is None:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT form_id, template, version FROM forms")}
    wanted, out = sorted(set(form_ids)), {}
    for start in range(0, len(wanted), 500):
        part = wanted[start:start + 500]
        out.update({r[0]: (r[1], r[2]) for r in conn.execute(
            f"SELECT form_id, template, version FROM forms WHERE form_id IN ({','.join('?' * len(part))})", part)})
    return out
