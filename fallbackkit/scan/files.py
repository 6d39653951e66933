"""The scan's input files: find them, hash them, archive the original, record every sighting.

Every path handed to `scan` is recorded (`input_sightings`), every distinct file by its sha256
(`input_files`); a file already `done` is a no-op; the original bytes are copied into
KIT/archive/ before any page is read (the legal record); a file becomes `done` only once all its
pages are stored.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable


from ..store.captures import count_pages_stored, pages_stored
from ..store.kit import Kit, now_iso
from ..store.transactions import atomic
from .ingest import KINDS, UnreadableFile, count_pages, sniff
if TYPE_CHECKING:
    from .pipeline import ScanSummary


IGNORED_NAMES = {"thumbs.db", "desktop.ini"}  # written into folders by the operating system


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


# A file up to this size is read once: hashed, told apart by its first bytes and archived from the
# bytes in memory (the copy is then the very bytes hashed: nothing to hash again). A bigger file (a
# long scanner PDF) is hashed, then copied and hashed again in 1 MiB pieces.
WHOLE_FILE_BYTES = 64 << 20


def read_file(path: Path) -> tuple[str, int, bytes | None]:
    """(sha256, size, the bytes or None for a file bigger than WHOLE_FILE_BYTES)."""
    with open(path, "rb", buffering=0) as fh:
        # read() sizes its buffer by the file's size (read(n) would make an n-byte buffer first)
        data = fh.read() if os.fstat(fh.fileno()).st_size <= WHOLE_FILE_BYTES else None
    if data is None or len(data) > WHOLE_FILE_BYTES:  # (or it grew meanwhile)
        del data
        return (*sha256_file(path), None)
    return hashlib.sha256(data).hexdigest(), len(data), data


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


_MADE_DIRS: set[Path] = set()


def archive_file(kit: Kit, source: Path, sha: str, kind: str, data: bytes | None = None) -> str:
    """Copy the original bytes to KIT/archive/ab/<sha><ext> (temp file, fsync, then rename); verify
    the hash. data: the file's bytes, already hashed to sha (read_file), written as they are."""
    rel = Path("archive") / sha[:2] / f"{sha}{KINDS[kind]}"
    dest = kit.path / rel
    if dest.exists() and sha256_file(dest)[0] == sha:
        return rel.as_posix()
    if dest.parent not in _MADE_DIRS:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _MADE_DIRS.add(dest.parent)
    tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
    h = hashlib.sha256() if data is None else None
    try:
        try:
            out = open(tmp, "wb")
        except FileNotFoundError:  # the folder went away since we made it (a restore, a cleanup)
            dest.parent.mkdir(parents=True, exist_ok=True)
            out = open(tmp, "wb")
        with out:
            if data is not None:
                out.write(data)
            else:
                with open(source, "rb") as src:
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:  # a full disk, an interrupt: no half-written copy stays in archive/
        tmp.unlink(missing_ok=True)
        raise
    if h is not None and h.hexdigest() != sha:
        tmp.unlink(missing_ok=True)
        raise UnreadableFile(source, "changed while it was being read",
                             "wait until the scanner has finished writing it, then scan again")
    os.replace(tmp, dest)
    return rel.as_posix()


def _where(path: Path | str) -> str:
    """Paths are recorded absolute: the store outlives the folder the command was run from."""
    return str(Path(path).absolute())


def _sighting(conn, sha: str | None, path: Path | str, outcome: str) -> int:
    with atomic(conn):
        return conn.execute("INSERT INTO input_sightings (sha256, path, seen_at, outcome) VALUES (?,?,?,?)",
                            [sha, _where(path), now_iso(), outcome]).lastrowid


def _fail_file(conn, sha: str, error: str) -> None:
    with atomic(conn):
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


def _prepare(kit: Kit, path: Path, summary: ScanSummary, seen_in_batch: dict[str, Path]) -> _FileJob | None:
    """Hash, record, check and archive one file; return the pages still to read (None: nothing to do)."""
    conn = kit.db.conn
    try:
        sha, size, data = read_file(path)
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
        kind = sniff(path, data[:1024] if data is not None else None)
        pages = count_pages(path, kind)
        archive_rel = archive_file(kit, path, sha, kind, data)
    except UnreadableFile as exc:
        error = str(exc)
        with atomic(conn):
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
    with atomic(conn):  # the file and this sighting of it: one transaction
        conn.execute(
            "INSERT INTO input_files (sha256, size, kind, pages, status, archive_path, first_path, started_at)"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(sha256) DO UPDATE SET status='started', error=NULL,"
            " kind=excluded.kind, pages=excluded.pages, archive_path=excluded.archive_path, finished_at=NULL",
            [sha, size, kind, pages, "started", archive_rel, _where(path), now_iso()])
        sighting = _sighting(conn, sha, path, "resumed" if resumed else "new")
        stored = pages_stored(conn, sha)
    seen_in_batch[sha] = path  # only a usable file: a copy of a bad file fails on its own
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
        with atomic(conn):
            _fail_file(conn, job.sha, job.error)
            conn.execute("UPDATE input_sightings SET outcome = ? WHERE id = ?",
                         ["failed: " + job.error, job.sighting_id])
        summary.files_failed += 1
        summary.files_new -= 1
        summary.failed.append({"path": str(job.path), "error": job.error})
        return
    with atomic(conn):
        conn.execute("UPDATE input_files SET status = 'done', error = NULL, finished_at = ? WHERE sha256 = ?",
                     [now_iso(), job.sha])
