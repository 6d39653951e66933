"""The scan pipeline: input files in, captures, readings and quarantine rows out.

Nothing is lost and nothing is doubled:
- every path handed to `scan` is recorded (`input_sightings`), every distinct file by its sha256
  (`input_files`); a file already `done` is a no-op;
- the original bytes are copied into KIT/archive/ before any page is read (the legal record);
- worker processes decode and read pages and return small results; the parent alone writes the
  store, one transaction per group of pages (PAGES_PER_COMMIT, or what came in SECONDS_PER_COMMIT),
  so a crash loses at most the pages in flight and the group not yet committed, and a rerun skips
  the pages already stored (UNIQUE(file_sha256, page_index, source));
- a file becomes `done` only once all its pages are stored; a page the engine could not read
  is quarantined as `unreadable` with the error, never dropped.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable


from .. import ids
from ..errors import MissingDependency
from ..payload import parse_cover as payload_parse_cover
from ..store.audit import append_audit
from ..store.captures import ScannedPage, count_pages_stored, store_page
from ..store.kit import Kit
from . import learn
from .suggest import SuggestionContext
# the pipeline's parts (their names stay importable from here: tests, the CLI and the station use them)
from .assign import UNTRUSTED_REASONS, assign_quarantined, capture_summary, list_quarantine
from .files import _FileJob, _finish, _prepare, _sighting, archive_file, find_files, sha256_file
from ..templates.contract import PAGE_IMAGE_DPI
from .page_task import _save_crops, read_task
from .workers import IN_FLIGHT_PER_WORKER, _geometry_lookup, _run_in_process, _run_pool


# --- summary ---------------------------------------------------------------------------------
@dataclass
class ScanSummary:
    files_new: int = 0
    files_resumed: int = 0           # started by an earlier, interrupted scan
    files_already_scanned: int = 0
    files_failed: int = 0
    pages_read: int = 0
    pages_quarantined: int = 0
    pages_blank: int = 0             # blank pages and backs showing the front through (duplex scans)
    pages_duplicate: int = 0         # a further capture of a sheet captured before
    pages_skipped: int = 0           # stored by an earlier, interrupted scan
    cover_sheets: int = 0            # ward pack covers scanned with their pack: recognised, nothing to read
    readings_accepted: int = 0
    readings_review: int = 0
    seconds: float = 0.0
    peak_worker_rss_mib: float = 0.0  # the largest resident memory a page reader reached
    failed: list[dict[str, Any]] = field(default_factory=list)
    already_scanned: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    unfinished: list[dict[str, Any]] = field(default_factory=list)  # interrupted earlier, not in this batch
    covers: list[dict[str, Any]] = field(default_factory=list)
    decoder_notes: list[dict[str, Any]] = field(default_factory=list)  # what libtiff & co. said, per file

    @property
    def ok(self) -> bool:
        return self.files_failed == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def counts(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not isinstance(v, list)}


def format_summary(s: ScanSummary, lang: str = "en") -> str:
    """The end-of-scan table for a records clerk. lang: the kit's language (setting `language`), in
    which each quarantined page's reason and detail are said."""
    from ..review.i18n import detail_text, reason_text
    rows = [
        ("files", f"{s.files_new} new" + (f" ({s.files_resumed} resumed)" if s.files_resumed else ""),
         f"{s.files_already_scanned} already scanned", f"{s.files_failed} failed"),
        ("pages", f"{s.pages_read} read", f"{s.pages_quarantined} quarantined",
         f"{s.pages_duplicate} duplicates"),
        *([("blank pages", f"{s.pages_blank}", "", "")] if s.pages_blank else []),
        ("fields", f"{s.readings_accepted} accepted", f"{s.readings_review} to review", ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]
    if s.cover_sheets:
        packs = ", ".join(sorted({f"ward {c['ward']}" if c.get("ward") else "a pack not printed here"
                                  for c in s.covers}))
        lines.append(f"cover sheets: {s.cover_sheets} ({packs}; recognised, nothing to read)")
    if s.pages_skipped:
        lines.append(f"{s.pages_skipped} pages were already stored by an interrupted scan and were not read again")
    for n in s.decoder_notes:
        lines.append(f"note: {n['path']} page {n['page']}: the image decoder said: {n['note']}")
    for d in s.duplicates:
        lines.append(f"duplicate: sheet {d['sheet_id']} ({d['path']} page {d['page']}) was captured before "
                     f"(capture {d['duplicate_of']})")
    if s.quarantined:
        lines.append(f"quarantined pages ({len(s.quarantined)}): see `fallbackkit quarantine list`")
        for q in s.quarantined:
            said = detail_text(lang, q.get("detail"))
            lines.append(f"  page {q['quarantine_id']}: {q['path']} page {q['page']}: {reason_text(lang, q['reason'])}"
                         + (f" ({said})" if said else ""))
    for u in s.unfinished:
        lines.append(f"unfinished: {u['path']} ({u['stored']} of {u['pages']} pages stored by an interrupted scan)"
                     " — scan it again to finish it")
    for f in s.failed:
        lines.append(f"FAILED {f['error']}")
    return "\n".join(lines)


# --- progress --------------------------------------------------------------------------------
class Progress:
    """One line on stderr: pages done, pages per second, quarantined so far."""

    def __init__(self, total: int, enabled: bool, stream=None):
        self.total, self.enabled = total, enabled and total > 0
        self.stream = stream or sys.stderr
        self.done = self.quarantined = 0
        self.start = self._last = time.monotonic()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def step(self, quarantined: bool) -> None:
        self.done += 1
        self.quarantined += int(quarantined)
        now = time.monotonic()
        if self.enabled and (now - self._last >= (0.2 if self.tty else 10.0) or self.done == self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-6)
        width = 30
        filled = int(width * self.done / self.total)
        line = (f"scanning [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} pages "
                f"{rate:5.1f} pages/s  quarantined {self.quarantined}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if self.done == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# --- storing (the rows themselves: store/captures.py) ------------------------------------------
def _cover_pack(conn, payload_text: str) -> dict[str, Any]:
    """Which printed pack a scanned cover belongs to (by the pack's first sheet)."""
    first = payload_parse_cover(payload_text).first_sheet_id
    row = conn.execute("SELECT b.id, b.ward FROM sheets s JOIN print_batches b ON b.id = s.batch_id"
                       " WHERE s.sheet_id = ?", [first]).fetchone()
    return {"first_sheet_id": first, "batch_id": row[0] if row else None, "ward": row[1] if row else None}


# --- the scan ----------------------------------------------------------------------------------
# Pages are stored in groups: the pages read, their forms' summaries and the files they complete, in
# one transaction (its fixed cost, ~2 ms of SQLite and summary set-up, once per group rather than per
# page). A crash loses at most the group being gathered: those pages are read again by the next scan,
# as the pages in flight are (their files are not done). At most this many pages, or what came in
# this many seconds, wait for their commit.
PAGES_PER_COMMIT = 8
SECONDS_PER_COMMIT = 1.0


def check_engine() -> None:
    """Check what reading needs before a batch starts, and say how to install what is missing."""
    try:
        from . import engine  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(f"the page reader is not available ({exc})",
                                hint="reinstall fallbackkit (make install)") from None
    try:
        from pyzbar import pyzbar  # noqa: F401  (the second QR decoder needs Debian's libzbar0)
    except (ImportError, OSError) as exc:
        raise MissingDependency(f"the zbar library is missing ({exc})",
                                hint="install it: sudo apt-get install libzbar0 (or run make install)") from None


def scan_paths(kit: Kit, paths: Iterable[Path | str], workers: int | None = None, progress: bool = True,
               actor: str | None = None) -> ScanSummary:
    """Scan files and folders into the kit. workers=0 reads in this process (debugging, small runs)."""
    from ..reconcile.summary import refreshing
    from ..store.kit import default_actor
    check_engine()
    actor = actor or default_actor()
    started = time.monotonic()
    conn = kit.db.conn
    summary = ScanSummary()
    files, problems = find_files(paths, kit.path)
    for p in problems:
        _sighting(conn, None, p["path"], "failed: " + p["error"])
        summary.files_failed += 1
        summary.failed.append(p)

    jobs: list[_FileJob] = []
    seen_in_batch: dict[str, Path] = {}
    for path in files:
        job = _prepare(kit, path, summary, seen_in_batch)
        if job is not None:
            jobs.append(job)

    tasks = [(job.sha, job.archive_rel, job.kind, i) for job in jobs for i in sorted(job.todo)]
    if tasks:
        learn.refresh(kit)  # the clerks' decisions so far teach the workers this kit's handwriting
    by_sha = {job.sha: job for job in jobs}
    bar = Progress(len(tasks), progress)

    pending: list[dict[str, Any]] = []  # pages read, not stored yet (a crash loses them: read again)
    oldest = [0.0]

    def handle(result: dict[str, Any]) -> None:
        job = by_sha[result["sha"]]
        if result["kind"] == "file_error":
            if job.error is None:
                job.error = f"{job.path}: {result['error']}"
            job.todo.discard(result["index"])
            bar.step(False)
            if not job.todo:  # (a page of it still waiting for its commit is still in todo)
                _finish(conn, job, summary)
            return
        summary.peak_worker_rss_mib = max(summary.peak_worker_rss_mib, result.get("rss_mib", 0.0))
        for note in result.get("decoder_notes") or ():
            summary.decoder_notes.append({"path": str(job.path), "page": result["index"], "note": note})
        bar.step(result["status"] not in ("read", "cover", "blank"))
        if not pending:
            oldest[0] = time.monotonic()
        pending.append(result)
        if len(pending) >= PAGES_PER_COMMIT or time.monotonic() - oldest[0] >= SECONDS_PER_COMMIT:
            store_pending()

    def store_pending() -> None:
        """The pages read so far, their forms' summaries, and the files they complete: one transaction."""
        if not pending:
            return
        with refreshing(kit):  # the pages and their forms' summaries commit together: no station view recomputes them
            stored = [store_page(conn, ScannedPage.from_result(result)) for result in pending]
            done = []
            for result in pending:
                job = by_sha[result["sha"]]
                job.todo.discard(result["index"])
                if not job.todo and job not in done:
                    done.append(job)
            for job in done:
                _finish(conn, job, summary)
        for result, page in zip(pending, stored):
            _count(result, page)
        pending.clear()

    def _count(result: dict[str, Any], stored: Any) -> None:
        job = by_sha[result["sha"]]
        if stored is None:
            summary.pages_skipped += 1
            return
        if result["status"] == "cover":
            summary.cover_sheets += 1
            summary.covers.append({"path": str(job.path), "page": result["index"],
                                   **_cover_pack(conn, result["payload_text"])})
        elif stored.blank:
            summary.pages_blank += 1
        elif stored.quarantine_id is not None:
            summary.pages_quarantined += 1
            summary.quarantined.append({"quarantine_id": stored.quarantine_id, "path": str(job.path),
                                        "page": result["index"], "reason": result["reason"],
                                        "detail": result.get("detail")})
        else:
            summary.pages_read += 1
            summary.readings_accepted += stored.accepted
            summary.readings_review += stored.review
            if stored.duplicate_of is not None:
                summary.pages_duplicate += 1
                summary.duplicates.append({"sheet_id": stored.sheet_id, "capture_id": stored.capture_id,
                                           "duplicate_of": stored.duplicate_of, "path": str(job.path),
                                           "page": result["index"]})

    if tasks:
        if workers == 0:
            _run_in_process(kit, tasks, handle)
        else:
            _run_pool(kit, tasks, handle, workers or os.cpu_count() or 1)
        store_pending()
    for job in jobs:
        if not job.todo:
            _finish(conn, job, summary)
    batch = {job.sha for job in jobs}
    for sha, first_path, pages in conn.execute(
            "SELECT sha256, first_path, pages FROM input_files WHERE status = 'started' ORDER BY started_at").fetchall():
        if sha not in batch:
            stored = count_pages_stored(conn, sha)
            summary.unfinished.append({"path": first_path, "sha256": sha, "pages": pages, "stored": stored})
    summary.seconds = round(time.monotonic() - started, 2)
    with conn:
        append_audit(conn, actor, "scan", None, None,
                     {**summary.counts(), "paths": [str(p) for p in paths],
                      "failed": [f["path"] for f in summary.failed]})
    return summary


# --- readings ----------------------------------------------------------------------------------
def list_readings(kit: Kit, status: str | None = None, sheet_id: str | None = None) -> list[dict[str, Any]]:
    """One object per field of each sheet's latest capture, after people's decisions."""
    from ..store.readings import effective_readings
    conn = kit.db.conn
    out = []
    hints = SuggestionContext(conn, kit.templates_dir)
    for r in list(effective_readings(conn, sheet_id=ids.normalize(sheet_id) if sheet_id else None,
                                     latest_capture=True, order="sheet", with_raw=True)):
        reviewed = r.review is not None
        value = r.value
        if r.type == "multichoice" and isinstance(value, list):
            value = sorted(value)
        item = {"sheet_id": r.sheet_id, "field": r.field, "type": r.type, "value": value,
                "status": "accepted" if reviewed else r.status, "confidence": r.confidence, "reason": r.reason,
                "ink": None if r.ink is None else bool(r.ink), "reviewed": reviewed,
                "reading_id": r.reading_id, "capture_id": r.capture_id}
        if r.type in ("number", "datetime"):
            item.update(reading_suggestion(hints, r.sheet_id, r.field, r.raw, reviewed))
        if status and item["status"] != status:
            continue
        out.append(item)
    return out


def reading_suggestion(hints: SuggestionContext, sheet_id: str, field: str, raw: dict[str, Any] | None,
                       decided: bool) -> dict[str, Any]:
    """suggestion, suggestion_confidence, prefill and cells of a comb reading, re-decided from its
    stored cell measures (never a value: a decided reading is not pre-filled again)."""
    got = hints.for_reading(sheet_id, field, raw or {})
    if got is None:
        return {"suggestion": None, "suggestion_confidence": None, "prefill": False}
    return {**got, "prefill": bool(got["prefill"]) and not decided}


__all__ = ["ScanSummary", "scan_paths", "format_summary", "find_files", "list_readings", "list_quarantine",
           "assign_quarantined", "capture_summary", "read_task", "UNTRUSTED_REASONS", "PAGE_IMAGE_DPI",
           "IN_FLIGHT_PER_WORKER", "archive_file", "sha256_file", "_geometry_lookup", "_save_crops"]
