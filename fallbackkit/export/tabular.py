"""CSV and JSON exports: the re-entry worklist and every reading with its status, reviewer and source.

CSV goes to a directory (`worklist.csv`, `readings.csv`), JSON to one file holding both. Values are
written as JSON text in CSV cells (a list of ticked tests stays one cell and reads back exactly).
Text cells that a spreadsheet would run as a formula get a leading ' (see `_cell`).
"""
from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from .. import jsontext
from ..errors import BadInput
from ..files import OutputFiles, outside_kit, private_writer
from ..store.kit import Kit, now_iso
from ..store.settings import get_setting
from .collect import Store, _aware, iter_stores, parse_since, snapshot

READING_COLUMNS = ["reading_id", "form_id", "template", "ward", "bed", "patient_mrn", "downtime_mrn", "real_mrn",
                   "sheet_id", "page", "field", "type", "machine_value", "value", "machine_status", "confidence",
                   "reason", "resolved", "decision", "reviewer", "reviewed_at", "field_settled", "field_problem",
                   "capture_id", "duplicate_of", "source_file", "source_page", "archive_path", "image_path",
                   "captured_at"]
WORKLIST_COLUMNS = ["item_id", "kind", "form_id", "ward", "patient_mrn", "downtime_mrn", "care_time", "summary",
                    "values", "status", "resolved", "entered_by", "entered_at", "remarks"]


def iter_worklist_rows(kit: Kit, ward: str | None = None) -> Iterator[dict[str, Any]] | None:
    """The reconcile stage's worklist rows, streamed, or None when that stage is not installed in this build."""
    try:
        from ..reconcile.worklist import iter_worklist
    except ImportError:
        return None

    def rows() -> Iterator[dict[str, Any]]:
        for row in iter_worklist(kit, ward=ward):  # each item's as_dict(), streamed (no WorkItem per item)
            row["remarks"] = "; ".join(row.get("remarks") or []) or None  # e.g. "c3.avpu: corrected on paper"
            yield {c: row.get(c) for c in WORKLIST_COLUMNS}
    return rows()


def worklist_rows(kit: Kit, ward: str | None = None) -> list[dict[str, Any]] | None:
    """The reconcile stage's worklist, or None when that stage is not installed in this build."""
    rows = iter_worklist_rows(kit, ward)
    return None if rows is None else list(rows)


def reading_rows(store: Store, since: str | None = None, zone: str | None = None) -> list[dict[str, Any]]:
    return list(iter_reading_rows(store, parse_since(since, zone)))


def iter_reading_rows(store: Store, after: Any = None) -> Iterator[dict[str, Any]]:
    """Every reading of STORE's forms as an export row (`reading_rows`, streamed)."""
    for form in store.forms:
        page_of = {s["sheet_id"]: s["page"] for s in form.sheets}
        for name, fv in sorted(form.fields.items()):
            for r in fv.readings:
                cap = store.captures[r.capture_id]
                if after is not None:
                    times = [_aware(cap.get("captured_at")), _aware(r.reviewed_at)]
                    if not any(t and t >= after for t in times):
                        continue
                file = store.files.get(cap["file_sha256"], {})
                yield {
                    "reading_id": r.reading_id, "form_id": form.form_id, "template": form.template,
                    "ward": form.row["ward"], "bed": form.row["bed"], "patient_mrn": form.row["patient_mrn"],
                    "downtime_mrn": form.row["downtime_mrn"], "real_mrn": form.real_mrn,
                    "sheet_id": r.sheet_id, "page": page_of.get(r.sheet_id), "field": r.field, "type": r.type,
                    "machine_value": r.machine_value, "value": r.value, "machine_status": r.status,
                    "confidence": r.confidence, "reason": r.reason, "resolved": r.resolved,
                    "decision": r.source, "reviewer": r.reviewer, "reviewed_at": r.reviewed_at,
                    "field_settled": fv.settled, "field_problem": fv.why,
                    "capture_id": r.capture_id, "duplicate_of": cap.get("duplicate_of"),
                    "source_file": file.get("first_path"), "source_page": cap["page_index"],
                    "archive_path": file.get("archive_path"), "image_path": cap.get("image_path"),
                    "captured_at": cap.get("captured_at")}


def _write_csv(fh: IO[str], rows: Iterable[dict[str, Any]], columns: list[str]) -> int:
    # CRLF (RFC 4180): a CR or LF inside a cell then makes the writer quote it, rows never split
    # csv.writer with the columns in order: what csv.DictWriter writes, without a second dict per row
    writer = csv.writer(fh, lineterminator="\r\n")
    writer.writerow(columns)
    n = 0
    cell = _cell
    for row in rows:
        get = row.get
        writer.writerow([cell(get(c)) for c in columns])
        n += 1
    return n


def _write_json(fh: IO[str], doc: dict[str, Any]) -> dict[str, int]:
    """`json.dumps(doc, indent=1, ensure_ascii=False, default=str)`, written as it goes: a value
    that is an iterator is written as a list, an item at a time. Returns each streamed list's length."""
    def dumps(value: Any, pad: str) -> str:  # jsontext: json.dumps's text, without its pure-Python encoder
        return jsontext.dumps(value, indent=1, default=str, level=len(pad))

    counts: dict[str, int] = {}
    for i, (key, value) in enumerate(doc.items()):
        fh.write(("{" if i == 0 else ",") + "\n " + json.dumps(key, ensure_ascii=False) + ": ")
        if isinstance(value, Iterator):
            n = 0
            for item in value:
                fh.write(("[" if n == 0 else ",") + "\n  " + dumps(item, "  "))
                n += 1
            fh.write("\n ]" if n else "[]")
            counts[key] = n
        else:
            fh.write(dumps(value, " "))
    fh.write("\n}" if doc else "{}")
    return counts


# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection"). A
# leading quote is also escaped, so that the rule reads back without guessing: a cell that starts
# with ' had one added by the export; remove exactly one.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def _cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula.

    Numbers the kit itself computed (ids, page numbers, confidences) are int/float and written as
    numbers, negative ones too: a number cannot be a formula. Every text, including a handwritten
    value such as "-2" (text, not a number: the paper says so), is neutralised.
    """
    if value is None:
        return ""
    kind = type(value)
    if kind is str:  # the common cases first (millions of cells): the same answers as below
        return "'" + value if value.startswith(FORMULA_START) else value
    if kind is int or kind is float:
        return value
    if isinstance(value, (dict, list, bool)):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def export_table(kit: Kit, fmt: str, out: Path | str, ward: str | None = None,
                 since: str | None = None, actor: str | None = None) -> dict[str, Any]:
    """Write the CSV or JSON export as it is gathered: a batch of forms at a time (collect.iter_stores),
    rows straight into a private temporary file that replaces the final one at the end, so memory
    stays bounded at any size of kit (issue 16) and a failure leaves no half file (files.private_writer)."""
    if fmt not in ("csv", "json"):
        raise BadInput(f"unknown format {fmt!r}", hint="use csv, json or fhir")
    out = outside_kit(kit.path, out, "an export")
    if fmt == "json" and out.is_dir():
        raise BadInput(f"{out} is a directory", hint="give a file name for --format json, e.g. export.json")
    if fmt == "csv" and out.exists() and not out.is_dir():
        raise BadInput(f"{out} is a file", hint="--format csv writes a directory (worklist.csv, readings.csv)")
    zone = get_setting(kit, "tz")
    after = parse_since(since, zone)
    with snapshot(kit):  # one state of the store, read a batch at a time
        files, n_readings, n_worklist, note = _write_table(kit, fmt, out, ward, since, after)
    from ..store.exports import record_export_if_writable
    from ..store.kit import default_actor
    export_id = record_export_if_writable(kit, actor or default_actor(), fmt, list(files), {}, (), ward, since)
    return {"export_id": export_id, "files": [str(f) for f in files], "readings": n_readings,
            "worklist": n_worklist, "note": note}


def _write_table(kit: Kit, fmt: str, out: Path, ward: str | None, since: str | None,
                 after: Any) -> tuple[list[Path], int, int | None, str | None]:
    readings: Iterator[dict[str, Any]] = (row for store in iter_stores(kit, ward)
                                          for row in iter_reading_rows(store, after))
    worklist = iter_worklist_rows(kit, ward)
    if worklist is not None and since:
        worklist = (w for w in worklist if w["status"] == "pending" or
                    ((_aware(w.get("entered_at")) or after) >= after))
    note = None if worklist is not None else "the re-entry worklist needs the reconcile stage, not installed"
    if fmt == "json":
        doc = {"kit_id": kit.kit_id, "exported_at": now_iso(), "ward": ward, "since": since,
               "worklist": worklist, "readings": readings}
        if note:
            doc["note"] = note
        with private_writer(out, text=True) as fh:
            counts = _write_json(fh, doc)
        files = [out]
        n_readings, n_worklist = counts["readings"], counts.get("worklist")
    else:
        outputs = OutputFiles()
        files = [out / "readings.csv"] + ([out / "worklist.csv"] if worklist is not None else [])
        n_worklist = None
        # both files replace the older ones only once both are written: a failure in either leaves neither
        with contextlib.ExitStack() as stack:
            fhs = [stack.enter_context(outputs.private_writer(f, text=True)) for f in files]
            n_readings = _write_csv(fhs[0], readings, READING_COLUMNS)
            if worklist is not None:
                n_worklist = _write_csv(fhs[1], worklist, WORKLIST_COLUMNS)
    return files, n_readings, n_worklist, note
