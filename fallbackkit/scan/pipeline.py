"""The scan pipeline: input files in, captures, readings and quarantine rows out.

Nothing is lost and nothing is doubled:
- every path handed to `scan` is recorded (`input_sightings`), every distinct file by its sha256
  (`input_files`); a file already `done` is a no-op;
- the original bytes are copied into KIT/archive/ before any page is read (the legal record);
- worker processes decode and read pages and return small results; the parent alone writes the
  store, one transaction per page, so a crash loses at most the pages in flight, and a rerun
  skips the pages already stored (UNIQUE(file_sha256, page_index, source));
- a file becomes `done` only once all its pages are stored; a page the engine could not read
  is quarantined as `unreadable` with the error, never dropped.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import resource
import sqlite3
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from .. import ids
from ..errors import BadInput, Conflict, IntegrityFailure, MissingDependency, NotFound, NotPermitted
from ..files import OutputFiles, file_name
from ..payload import parse_cover as payload_parse_cover
from ..store import quarantine as store_quarantine
from ..store.audit import append_audit
from ..store.captures import CaptureSummary, ScannedPage, count_pages_stored, pages_stored, store_page
from ..store.captures import capture_summary as store_capture_summary
from ..store.kit import Kit, now_iso
from ..store.transactions import atomic
from .ingest import KINDS, PageReader, UnreadableFile, count_pages, sniff
from . import digits, learn, read
from .suggest import SuggestionContext

PAGE_IMAGE_DPI = 100
IGNORED_NAMES = {"thumbs.db", "desktop.ini"}  # written into folders by the operating system
IN_FLIGHT_PER_WORKER = 3


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


def format_summary(s: ScanSummary) -> str:
    """The end-of-scan table for a records clerk."""
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


# --- finding and archiving files ----------------------------------------------------------------
def find_files(paths: Iterable[Path | str], kit_path: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    """Files under the given paths (recursive, sorted), skipping hidden files and the kit itself."""
    kit_path = Path(kit_path).resolve()
    found: list[Path] = []
    problems: list[dict[str, Any]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        r = p.resolve()
        if r in seen:
            return
        seen.add(r)
        found.append(p)

    for raw in paths:
        p = Path(raw)
        if not p.exists():
            problems.append({"path": str(p), "error": f"{p}: no such file or folder — check the path"})
        elif p.is_dir():
            if _inside(p.resolve(), kit_path):
                problems.append({"path": str(p), "error": f"{p}: is the kit's own folder — scan the folder "
                                 "the scanner writes to, not the kit"})
                continue
            for root, dirs, files in os.walk(p):
                rootp = Path(root)
                dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                                 and not _inside((rootp / d).resolve(), kit_path))
                for name in sorted(files):
                    if name.startswith(".") or name.lower() in IGNORED_NAMES:
                        continue
                    add(rootp / name)
        else:
            add(p)
    return found, problems


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def archive_file(kit: Kit, source: Path, sha: str, kind: str) -> str:
    """Copy the original bytes to KIT/archive/ab/<sha><ext> (temp file, then rename); verify the hash."""
    rel = Path("archive") / sha[:2] / f"{sha}{KINDS[kind]}"
    dest = kit.path / rel
    if dest.exists() and sha256_file(dest)[0] == sha:
        return rel.as_posix()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
    h = hashlib.sha256()
    try:
        with open(source, "rb") as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:  # a full disk, an interrupt: no half-written copy stays in archive/
        tmp.unlink(missing_ok=True)
        raise
    if h.hexdigest() != sha:
        tmp.unlink(missing_ok=True)
        raise UnreadableFile(source, "changed while it was being read",
                             "wait until the scanner has finished writing it, then scan again")
    os.replace(tmp, dest)
    return rel.as_posix()


# --- workers ---------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


FAULT_ENV = "FALLBACKKIT_FAULT_KILL_WORKER"  # tests only: "PAGE:DIR" — see _maybe_die


def _maybe_die(index: int) -> None:
    """Fault injection for tests (a worker dying mid-page, as on out-of-memory): with
    FALLBACKKIT_FAULT_KILL_WORKER=PAGE:DIR set when the scan starts, the worker reading page PAGE
    exits at once while DIR still holds a token file, consuming one token per death."""
    fault = _WORKER.get("fault")
    if not fault:
        return
    page, _, folder = fault.partition(":")
    if str(index) != page:
        return
    for token in sorted(Path(folder).glob("*")):
        try:
            token.unlink()
        except FileNotFoundError:
            continue
        os._exit(70)


def _init_worker(kit_path: str, kit_id: str, secret: bytes, fault: str | None = None) -> None:
    """Each worker opens the store read-only for sheet geometry: it never writes the store."""
    # the page and crop images it writes hold patient data: owner only, whatever umask the
    # forkserver was started with (it outlives the command that started it)
    os.umask(0o077)
    import sqlite_utils
    from ..generate import sheet_geometry
    conn = sqlite3.connect(f"file:{Path(kit_path) / 'store.sqlite'}?mode=ro", uri=True, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=30000")
    ro_kit = Kit(Path(kit_path), kit_id, secret, sqlite_utils.Database(conn), read_only=True)
    _WORKER.clear()
    _WORKER.update(kit_path=Path(kit_path), kit_id=kit_id, secret=secret,
                   geometry_for=_geometry_lookup(ro_kit, sheet_geometry), reader=None, fault=fault)
    digits.use_memory(learn.load(kit_path))


def _geometry_lookup(kit: Kit, sheet_geometry: Callable) -> Callable[[str], dict | None]:
    cache: dict[str, dict | None] = {}

    def geometry_for(sheet_id: str) -> dict | None:
        if sheet_id not in cache:
            try:
                cache[sheet_id] = sheet_geometry(kit, sheet_id)
            except NotFound:
                cache[sheet_id] = None
        return cache[sheet_id]
    return geometry_for


def _in_process_worker(kit: Kit) -> None:
    from ..generate import sheet_geometry
    _WORKER.clear()
    _WORKER.update(kit_path=Path(kit.path), kit_id=kit.kit_id, secret=kit.secret,
                   geometry_for=_geometry_lookup(kit, sheet_geometry), reader=None)
    digits.use_memory(learn.load(kit.path))


def _reader_for(path: Path, kind: str) -> PageReader:
    """Keep the last file open: consecutive pages of a PDF or TIFF do not reopen it."""
    current = _WORKER.get("reader")
    if current is not None and current.path == path:
        return current
    if current is not None:
        current.close()
        _WORKER["reader"] = None
    reader = PageReader(path, kind)
    _WORKER["reader"] = reader
    return reader


def read_task(task: tuple[str, str, str, int]) -> dict[str, Any]:
    """Decode and read one page; write its page image; return a small, picklable result."""
    sha, archive_rel, kind, index = task
    kit_path: Path = _WORKER["kit_path"]
    t0 = time.perf_counter()
    try:
        page = _reader_for(kit_path / archive_rel, kind).page(index)
    except UnreadableFile as exc:
        return {"sha": sha, "index": index, "kind": "file_error", "error": f"{exc.problem} — {exc.hint}"}
    except Exception as exc:  # a decoder bug must not stop the batch: the file is reported
        return {"sha": sha, "index": index, "kind": "file_error",
                "error": f"page {index} cannot be decoded ({type(exc).__name__}: {exc})"}
    _maybe_die(index)
    t1 = time.perf_counter()
    image = page.image
    notes = list(getattr(page, "notes", ()))
    try:
        from .engine import read_page
        result = read_page(image, kit_id=_WORKER["kit_id"], secret=_WORKER["secret"],
                           geometry_for=_WORKER["geometry_for"])
        out = _result_dict(result, page.dpi)
    except Exception as exc:  # an engine bug: the page goes to a person, it is never lost
        out = _unreadable(exc, page.dpi)
        result = None
    t2 = time.perf_counter()
    stem = f"{sha}-p{index}"
    page_image = getattr(result, "page_image", None) if result is not None else None
    if page_image is None:
        page_image = _preview(image, page.dpi)
    out["image_path"] = _save_png(kit_path, Path("pages") / sha[:2] / f"{stem}.png", page_image)
    _save_crops(kit_path, Path("crops") / sha[:2] / stem, out)
    out.update(sha=sha, index=index, kind="page", width_px=int(image.shape[1]), height_px=int(image.shape[0]),
               decoder_notes=notes, decode_ms=round((t1 - t0) * 1000, 2), read_ms=round((t2 - t1) * 1000, 2),
               rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    return out


def _result_dict(result: Any, file_dpi: float | None) -> dict[str, Any]:
    # Crops: the review station cuts them on demand from the archived original (crops.py); only inked
    # comb fields keep theirs, which learn.py cuts the ward's digits from, and inked fields nobody
    # types (signatures, ink-only and image-only fields: the crop is what stays of the writing).
    readings, crops = [], []
    for r in result.readings or []:
        readings.append({"field": r.field, "type": r.type, "raw": _raw_json(r.raw), "value": _jsonable(r.value),
                         "confidence": float(r.confidence), "status": r.status, "reason": r.reason,
                         "ink": None if r.ink is None else bool(r.ink), "crop_path": None})
        kept = r.type in COMB_TYPES or (r.type in read.HANDWRITTEN and read.transcribe_mode(r.raw, r.type) != "yes")
        crops.append(r.crop if kept and r.ink else None)
    transform = result.transform
    if transform is not None:
        transform = np.asarray(transform, dtype=float).tolist()
    return {"status": result.status, "reason": result.reason, "detail": result.detail,
            "payload_text": result.payload_text, "sheet_id": result.sheet_id, "template": result.template,
            "version": result.version, "page": result.page, "pages": result.pages,
            "orientation": result.orientation, "transform": transform,
            "fit_error_mm": None if result.fit_error_mm is None else float(result.fit_error_mm),
            "dpi": float(result.dpi) if result.dpi else file_dpi, "quality": _jsonable(result.quality or {}),
            "readings": readings, "_crops": crops}


def _unreadable(exc: BaseException, dpi: float | None) -> dict[str, Any]:
    tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return {"status": "quarantined", "reason": "unreadable", "detail": f"the reader failed on this page: {tb}",
            "payload_text": None, "sheet_id": None, "template": None, "version": None, "page": None,
            "pages": None, "orientation": None, "transform": None, "fit_error_mm": None, "dpi": dpi,
            "quality": {"error": tb}, "readings": [], "_crops": []}


COMB_TYPES = ("number", "datetime")


def _save_crops(kit_path: Path, folder: Path, out: dict[str, Any]) -> None:
    """The crops kept at scan time: inked comb fields (the kit learns its ward's digits from them,
    scan/learn.py) and inked fields nobody types (transcribe ink-only or no). Every other field is
    cut when a person opens it (scan/crops.py)."""
    outputs = OutputFiles()
    for reading, crop in zip(out["readings"], out.pop("_crops")):
        if crop is not None:
            rel = outputs.claim(folder / file_name("", reading["field"], ".png"), f"field {reading['field']}")
            reading["crop_path"] = _save_png(kit_path, rel, crop)


def _preview(image: np.ndarray, dpi: float | None) -> np.ndarray:
    """The page as stored in the file, shrunk to about 100 dpi, for a person to look at."""
    h, w = image.shape[:2]
    scale = PAGE_IMAGE_DPI / dpi if dpi else 1170 / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


_MADE_DIRS: set[Path] = set()
# Measured on a 100 dpi page image: 2.2 ms and 33 KiB, against 9 ms for OpenCV's default filters.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def _save_png(kit_path: Path, rel: Path, image: np.ndarray) -> str:
    dest = kit_path / rel
    if dest.parent not in _MADE_DIRS:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _MADE_DIRS.add(dest.parent)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image), PNG_PARAMS)
    if not ok:
        raise RuntimeError(f"could not encode {rel}")
    tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
    try:
        try:
            tmp.write_bytes(buf.tobytes())
        except FileNotFoundError:  # the folder went away since we made it (a restore, a cleanup)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(buf.tobytes())
        os.replace(tmp, dest)
    except BaseException:  # a full disk: no half-written image stays behind
        tmp.unlink(missing_ok=True)
        raise
    return rel.as_posix()


def _raw_json(raw: Any) -> str:
    """The raw measurements as JSON text, made in the worker (numpy scalars and arrays allowed)."""
    return json.dumps(raw if raw is not None else {}, ensure_ascii=False, sort_keys=True, default=_numpy_default)


def _numpy_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


# --- storing (the rows themselves: store/captures.py) ------------------------------------------
def _cover_pack(conn, payload_text: str) -> dict[str, Any]:
    """Which printed pack a scanned cover belongs to (by the pack's first sheet)."""
    first = payload_parse_cover(payload_text).first_sheet_id
    row = conn.execute("SELECT b.id, b.ward FROM sheets s JOIN print_batches b ON b.id = s.batch_id"
                       " WHERE s.sheet_id = ?", [first]).fetchone()
    return {"first_sheet_id": first, "batch_id": row[0] if row else None, "ward": row[1] if row else None}


def _where(path: Path | str) -> str:
    """Paths are recorded absolute: the store outlives the folder the command was run from."""
    return str(Path(path).absolute())


def _sighting(conn, sha: str | None, path: Path | str, outcome: str) -> int:
    with conn:
        return conn.execute("INSERT INTO input_sightings (sha256, path, seen_at, outcome) VALUES (?,?,?,?)",
                            [sha, _where(path), now_iso(), outcome]).lastrowid


def _fail_file(conn, sha: str, error: str) -> None:
    with conn:
        conn.execute("UPDATE input_files SET status = 'failed', error = ?, finished_at = ? WHERE sha256 = ?",
                     [error, now_iso(), sha])


@dataclass
class _FileJob:
    path: Path
    sha: str
    kind: str
    pages: int
    archive_rel: str
    sighting_id: int
    todo: set[int]
    error: str | None = None
    finished: bool = False


# --- the scan ----------------------------------------------------------------------------------
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

    def handle(result: dict[str, Any]) -> None:
        job = by_sha[result["sha"]]
        if result["kind"] == "file_error":
            if job.error is None:
                job.error = f"{job.path}: {result['error']}"
            job.todo.discard(result["index"])
            bar.step(False)
            return
        summary.peak_worker_rss_mib = max(summary.peak_worker_rss_mib, result.get("rss_mib", 0.0))
        for note in result.get("decoder_notes") or ():
            summary.decoder_notes.append({"path": str(job.path), "page": result["index"], "note": note})
        stored = store_page(conn, ScannedPage.from_result(result))
        job.todo.discard(result["index"])
        bar.step(result["status"] not in ("read", "cover", "blank"))
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
                                        "page": result["index"], "reason": result["reason"]})
        else:
            summary.pages_read += 1
            summary.readings_accepted += stored.accepted
            summary.readings_review += stored.review
            if stored.duplicate_of is not None:
                summary.pages_duplicate += 1
                summary.duplicates.append({"sheet_id": stored.sheet_id, "capture_id": stored.capture_id,
                                           "duplicate_of": stored.duplicate_of, "path": str(job.path),
                                           "page": result["index"]})
        if not job.todo:
            _finish(conn, job, summary)

    if tasks:
        if workers == 0:
            _run_in_process(kit, tasks, handle)
        else:
            _run_pool(kit, tasks, handle, workers or os.cpu_count() or 1)
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


def _prepare(kit: Kit, path: Path, summary: ScanSummary, seen_in_batch: dict[str, Path]) -> _FileJob | None:
    """Hash, record, check and archive one file; return the pages still to read (None: nothing to do)."""
    conn = kit.db.conn
    try:
        sha, size = sha256_file(path)
    except OSError as exc:
        error = f"{path}: cannot be read ({exc.strerror}) — check that the file exists and that you may read it"
        _sighting(conn, None, path, "failed: " + error)
        summary.files_failed += 1
        summary.failed.append({"path": str(path), "error": error})
        return None
    row = conn.execute("SELECT status, pages, archive_path, kind FROM input_files WHERE sha256 = ?", [sha]).fetchone()
    if sha in seen_in_batch or (row is not None and row[0] == "done"):
        first = seen_in_batch.get(sha)
        outcome = f"already scanned (same content as {first})" if first else "already scanned"
        _sighting(conn, sha, path, outcome)
        summary.files_already_scanned += 1
        summary.already_scanned.append({"path": str(path), "sha256": sha})
        return None
    resumed = row is not None and row[0] == "started"
    try:
        kind = sniff(path)
        pages = count_pages(path, kind)
        archive_rel = archive_file(kit, path, sha, kind)
    except UnreadableFile as exc:
        error = str(exc)
        with conn:
            conn.execute(
                "INSERT INTO input_files (sha256, size, kind, pages, status, error, first_path, started_at, finished_at)"
                " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(sha256) DO UPDATE SET status='failed', error=excluded.error,"
                " finished_at=excluded.finished_at",
                [sha, size, "unknown", None, "failed", error, _where(path), now_iso(), now_iso()])
            conn.execute("INSERT INTO input_sightings (sha256, path, seen_at, outcome) VALUES (?,?,?,?)",
                         [sha, _where(path), now_iso(), "failed: " + exc.problem])
        summary.files_failed += 1
        summary.failed.append({"path": str(path), "error": error})
        return None
    with conn:
        conn.execute(
            "INSERT INTO input_files (sha256, size, kind, pages, status, archive_path, first_path, started_at)"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(sha256) DO UPDATE SET status='started', error=NULL,"
            " kind=excluded.kind, pages=excluded.pages, archive_path=excluded.archive_path, finished_at=NULL",
            [sha, size, kind, pages, "started", archive_rel, _where(path), now_iso()])
    seen_in_batch[sha] = path  # only a usable file: a copy of a bad file fails on its own
    sighting = _sighting(conn, sha, path, "resumed" if resumed else "new")
    stored = pages_stored(conn, sha)
    todo = set(range(1, pages + 1)) - stored
    summary.files_new += 1
    summary.files_resumed += int(resumed)
    summary.pages_skipped += len(stored)
    return _FileJob(path, sha, kind, pages, archive_rel, sighting, todo)


def _finish(conn, job: _FileJob, summary: ScanSummary) -> None:
    """Mark a file done once every page is stored, or failed with what went wrong."""
    if job.finished:
        return
    job.finished = True
    if job.error is None:
        stored = count_pages_stored(conn, job.sha)
        if stored < job.pages:  # never call a file done while one of its pages is missing
            job.error = f"{job.path}: only {stored} of {job.pages} pages were stored — scan it again"
    if job.error is not None:
        _fail_file(conn, job.sha, job.error)
        with conn:
            conn.execute("UPDATE input_sightings SET outcome = ? WHERE id = ?",
                         ["failed: " + job.error, job.sighting_id])
        summary.files_failed += 1
        summary.files_new -= 1
        summary.failed.append({"path": str(job.path), "error": job.error})
        return
    with conn:
        conn.execute("UPDATE input_files SET status = 'done', error = NULL, finished_at = ? WHERE sha256 = ?",
                     [now_iso(), job.sha])


def _run_in_process(kit: Kit, tasks: list, handle: Callable[[dict], None]) -> None:
    _in_process_worker(kit)
    try:
        for task in tasks:
            handle(read_task(task))
    finally:
        reader = _WORKER.get("reader")
        if reader is not None:
            reader.close()
        _WORKER.clear()


def _context():
    """forkserver where there is one: workers fork from a server that imported the reader once."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["fallbackkit.scan.pipeline", "fallbackkit.scan.engine"])
        return ctx
    return mp.get_context("spawn")


def _run_pool(kit: Kit, tasks: list, handle: Callable[[dict], None], workers: int) -> None:
    """Workers read; this process stores each result as it comes.

    A worker that dies (out of memory, a crash in a decoder) breaks the pool and loses the pages in
    flight. Those pages are then read again one at a time, so that the page that kills a worker is
    told apart from its innocent neighbours; a page that kills a worker twice on its own is reported
    as a failed page of its file, and everything else is read."""
    queue = list(reversed(tasks))  # a stack
    suspects: list[tuple] = []
    deaths: dict[tuple, int] = {}
    fault = os.environ.get(FAULT_ENV)
    fruitless = 0
    while queue or suspects:
        solo = bool(suspects)
        stack = [suspects.pop()] if solo else queue
        broken, handled = _pool_pass(kit, stack, handle, workers, 1 if solo else workers * IN_FLIGHT_PER_WORKER,
                                     fault)
        if not solo:
            suspects.extend(reversed(broken))
        for task in broken if solo else []:
            deaths[task] = deaths.get(task, 0) + 1
            if deaths[task] >= 2:
                handle({"sha": task[0], "index": task[3], "kind": "file_error",
                        "error": f"page {task[3]} made the reader process crash twice — scan that page again, "
                                 "or tell IT"})
                handled += 1
            else:
                suspects.append(task)
        fruitless = 0 if handled or (solo and broken) else fruitless + 1
        if fruitless >= 3:
            raise IntegrityFailure("the reader processes keep failing to start",
                                   hint="run the same command again with --workers 0 (slower, one process)")


def _pool_pass(kit: Kit, stack: list, handle: Callable[[dict], None], workers: int, cap: int,
               fault: str | None) -> tuple[list[tuple], int]:
    """Read tasks off the stack with a pool until it is empty or the pool breaks.
    Returns the tasks lost with a broken pool and how many results were handled."""
    broken: list[tuple] = []
    handled = 0
    with ProcessPoolExecutor(max_workers=min(workers, cap), mp_context=_context(), initializer=_init_worker,
                             initargs=(str(kit.path), kit.kit_id, kit.secret, fault)) as pool:
        pending: dict = {}

        def refill() -> None:
            while stack and len(pending) < cap:
                future = pool.submit(read_task, stack[-1])  # raises BrokenProcessPool when broken
                pending[future] = stack.pop()

        try:
            refill()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken.append(task)
                        continue
                    handle(result)
                    handled += 1
                if broken:
                    break
                refill()
        except BrokenProcessPool:
            pass
        broken.extend(pending.values())  # in flight when the pool broke: their results never came
    return broken, handled


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


# --- quarantine --------------------------------------------------------------------------------
def list_quarantine(kit: Kit, include_assigned: bool = False) -> list[dict[str, Any]]:
    """The quarantine listing (`store.quarantine.list_quarantine`) as `quarantine list --json` shows
    it: the record's names, and the two older names scripts may read (page, image)."""
    return [{**item.as_dict(), "page": item.page_index, "image": item.image_path}
            for item in store_quarantine.list_quarantine(kit.db.conn, include_assigned)]


def capture_summary(kit: Kit, capture_id: int) -> CaptureSummary:
    """What a capture holds (`store.captures.capture_summary`)."""
    return store_capture_summary(kit.db.conn, capture_id)


# A page whose code was forged or signed by another kit is not read in on a clerk's word alone.
UNTRUSTED_REASONS = {"bad_signature": "its sheet code is not signed by this kit (forged, altered or damaged)",
                     "foreign_kit": "its sheet code belongs to another kit"}


def assign_quarantined(kit: Kit, quarantine_id: int, sheet_id: str, actor: str, supervisor: bool = False) -> int:
    """A clerk read the sheet id printed on a quarantined page: read the page as that sheet.

    Returns the new capture id (source 'assigned'). The archived original is read again, so the
    result does not depend on any earlier, failed attempt. A page quarantined as bad_signature or
    foreign_kit is assigned only by a supervisor (supervisor=True), and its audit row says so.
    """
    from ..generate import sheet_geometry
    from .engine import read_page_as
    conn = kit.db.conn
    typed = sheet_id
    sheet_id = ids.normalize(sheet_id)
    if not ids.is_valid(sheet_id, 8):
        raise BadInput(f"{typed!r} is not a valid sheet id",
                       hint="a sheet id is 9 characters printed under the QR code; the last one is a check "
                            "character: read it again")
    item = store_quarantine.require_quarantined(conn, quarantine_id)
    sha, page_index, archive_rel, kind, reason = item.sha256, item.page_index, item.archive_path, item.kind, item.reason
    if reason in UNTRUSTED_REASONS and not supervisor:
        raise NotPermitted(f"quarantined page {quarantine_id} is {reason}: {UNTRUSTED_REASONS[reason]}; "
                           "only a supervisor may read it in",
                           hint="ask a supervisor to check the paper and identify it (in the review station, "
                                "or `fallbackkit --user SUPERVISOR quarantine assign`)")
    if item.assigned_sheet_id is not None:
        raise Conflict(f"quarantined page {quarantine_id} is already assigned to sheet {item.assigned_sheet_id} "
                       f"(capture {item.assigned_capture_id})")
    geometry = sheet_geometry(kit, sheet_id)
    if not archive_rel or not (kit.path / archive_rel).exists():
        raise NotFound(f"the archived original of quarantined page {quarantine_id} is missing ({archive_rel})",
                       hint="restore the kit's archive folder from a backup")
    reader = PageReader(kit.path / archive_rel, kind)
    try:
        page = reader.page(page_index)
    finally:
        reader.close()
    try:
        result = read_page_as(page.image, geometry)
    except Exception as exc:  # an engine bug: say so plainly, store nothing
        raise IntegrityFailure(f"the reader failed on quarantined page {quarantine_id}: "
                               f"{type(exc).__name__}: {exc}",
                               hint="nothing was stored; tell IT (run with --verbose for details)") from exc
    if result.status != "read":
        raise BadInput(f"page {quarantine_id} cannot be read as sheet {sheet_id}: "
                       f"{result.reason}{' (' + result.detail + ')' if result.detail else ''}",
                       hint="check the sheet id; if it is right, the page must be entered by hand")
    out = _result_dict(result, page.dpi)
    stem = f"{sha}-p{page_index}-assigned"
    page_image = result.page_image if result.page_image is not None else _preview(page.image, page.dpi)
    out["image_path"] = _save_png(kit.path, Path("pages") / sha[:2] / f"{stem}.png", page_image)
    _save_crops(kit.path, Path("crops") / sha[:2] / stem, out)
    out.update(sha=sha, index=page_index, width_px=int(page.image.shape[1]), height_px=int(page.image.shape[0]),
               template=geometry["template"], version=geometry["version"], page=geometry["page"],
               pages=geometry["pages"])
    # the capture, its readings, the assignment and the audit row: one transaction
    with atomic(conn):
        stored = store_page(conn, ScannedPage.from_result(out), source="assigned", sheet_id=sheet_id)
        if stored is None:
            raise Conflict(f"quarantined page {quarantine_id} is already assigned")
        store_quarantine.record_assignment(conn, item, sheet_id, stored.capture_id, actor)
        append_audit(conn, actor, "quarantine.assign", f"quarantine:{quarantine_id}", None,
                     {"sheet_id": sheet_id, "capture_id": stored.capture_id,
                      "duplicate_of": stored.duplicate_of, "readings": stored.accepted + stored.review,
                      "quarantine_reason": reason,
                      **({"supervisor_override": UNTRUSTED_REASONS[reason]} if reason in UNTRUSTED_REASONS else {})})
    return stored.capture_id


__all__ = ["ScanSummary", "scan_paths", "format_summary", "find_files", "list_readings", "list_quarantine",
           "assign_quarantined", "capture_summary", "read_task"]
