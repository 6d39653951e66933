"""File names and writes for every file a command makes (bundles, ward packs, crops, exports).

One rule, so that two objects can never end up in one file:

- A key made only of capital letters, digits, `.`, `_` and `-` (not starting with `.` or `-`, at
  most 64 characters, not a Windows device name such as `CON`) is used as it is:
  `bundle-100345.json`, `ward-3B.pdf`.
- Any other key keeps a readable, sanitised part and gets `~` plus 10 hex digits of the SHA-256 of
  the raw key: `A/1` -> `A_1~<hash>`, `a1` -> `a1~<hash>`.

Why not always hash: names people read and type (`ward-3B.pdf`) stay as they are, and so do
existing exports. Why these clean-key rules: `~` never occurs in a clean key, so a hashed name can
never equal a clean one (a crafted MRN `A_1~...` is itself hashed); lowercase letters are hashed
because exports go to USB sticks and Windows/macOS disks that fold case, where `ab1` and `AB1`
would be one file. On top of that, `OutputFiles` refuses to write one path twice in one run, so
even a hash collision cannot lose an object silently.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import unicodedata
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import BadInput, Conflict

log = logging.getLogger(__name__)

_CLEAN = re.compile(r"[A-Z0-9_][A-Z0-9._-]{0,63}")
_READABLE_CHAR = re.compile(r"[A-Za-z0-9._-]")
HASH_HEX = 10
# Names Windows keeps for devices, whatever the extension (a kit copied to a USB stick for `merge`)
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
READABLE_MAX = 40
# What names made by `file_stem` look like (used to check names taken from another store).
STEM_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}(?:~[0-9a-f]{%d})?" % HASH_HEX


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:HASH_HEX]


def file_stem(key: str) -> str:
    """A file-name part for KEY that no other key can share (see the module docstring)."""
    key = str(key)
    if _CLEAN.fullmatch(key) and key.split(".")[0] not in _WINDOWS_DEVICES:
        return key
    ascii_key = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode("ascii")
    readable = "".join(ch if _READABLE_CHAR.fullmatch(ch) else "_" for ch in ascii_key)
    readable = readable.lstrip(".-")[:READABLE_MAX] or "_"
    return f"{readable}~{key_hash(key)}"


def file_name(prefix: str, key: str, suffix: str) -> str:
    """`prefix` + a collision-free stem for KEY + `suffix`, e.g. file_name("bundle-", mrn, ".json")."""
    return f"{prefix}{file_stem(key)}{suffix}"


class OutputFiles:
    """The files one run of a command writes: a path is claimed once, a second claim is refused.

    Paths are compared case-folded, as a case-insensitive disk would. Claim every name before
    writing the first file, so a refusal leaves nothing half-written.
    """

    def __init__(self) -> None:
        self._claimed: dict[str, str] = {}

    def claim(self, path: Path | str, what: str | None = None) -> Path:
        path = Path(path)
        key = os.path.normcase(os.path.abspath(path)).casefold()
        label = what if what is not None else path.name
        if key in self._claimed:
            raise Conflict(f"{path}: {label} and {self._claimed[key]} would be written to the same file; "
                           f"nothing was overwritten",
                           hint="this is a bug in fallbackkit's file naming: tell IT, with both names")
        self._claimed[key] = label
        return path

    def write_private(self, path: Path | str, data: bytes | str, what: str | None = None) -> Path:
        return write_private(self.claim(path, what), data)

    def private_writer(self, path: Path | str, what: str | None = None, text: bool = False):
        """`private_writer` of a claimed path."""
        return private_writer(self.claim(path, what), text=text)

    def __contains__(self, path: Path | str) -> bool:
        return os.path.normcase(os.path.abspath(Path(path))).casefold() in self._claimed


def outside_kit(kit_path: Path | str, path: Path | str, what: str) -> Path:
    """An output a person asked for never goes inside the kit folder: there it could replace the
    store, the secret that signs every printed sheet, or an archived original."""
    path = Path(path)
    try:
        inside = path.resolve().is_relative_to(Path(kit_path).resolve())
    except OSError:
        inside = False
    if inside:
        raise BadInput(f"{path} is inside the kit folder {kit_path}: {what} is not written there",
                       hint="give --out a path outside the kit folder (the kit holds the store, its secret "
                            "and the archive)")
    return path


def write_private(path: Path | str, data: bytes | str) -> Path:
    """Write atomically with mode 0600: the file never exists readable by others, even briefly."""
    with private_writer(path) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


# What a command writing into a folder leaves there while it runs: `.NAME.PID.tmp` files
# (private_writer, StagedFiles) and the FHIR export's `.fallbackkit-spool-PID-*` folder. They hold
# patient data (private: 0600 / 0700); a command killed outright (power cut, kill -9) cannot remove
# its own, so the next command writing into that folder does, once the process that made them is gone.
_LEFTOVER = re.compile(r"\..+\.(\d+)\.tmp|\.fallbackkit-spool-(\d+)-.*", re.DOTALL)
_swept: set[str] = set()


def pid_alive(pid: int) -> bool:
    """Whether process PID may still be running (another user's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def sweep_leftovers(folder: Path | str) -> list[Path]:
    """Remove what a killed run of a command left in FOLDER (see _LEFTOVER): only private (0600 /
    0700) entries of this user whose process no longer runs; the files of a run still going on
    are kept. Returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _LEFTOVER.fullmatch(entry.name)
        if not match:
            continue
        pid = int(match.group(1) or match.group(2))
        if pid == os.getpid() or pid_alive(pid):
            continue
        path = Path(entry.path)
        try:
            info = entry.stat(follow_symlinks=False)
            is_dir = entry.is_dir(follow_symlinks=False)
            if info.st_uid != os.geteuid() or (info.st_mode & 0o077) or is_dir != bool(match.group(2)):
                continue  # not a private file or folder of ours: someone else's, left alone
            if is_dir:
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            log.warning("could not remove %s, left by a command that was stopped: %s", path, exc)
            continue
        log.info("removed %s, left by a command that was stopped before it ended", path)
        removed.append(path)
    return removed


def _sweep_once(folder: Path) -> None:
    key = os.path.abspath(folder)
    if key not in _swept:
        _swept.add(key)
        sweep_leftovers(folder)


@contextlib.contextmanager
def private_writer(path: Path | str, text: bool = False) -> Iterator[IO[Any]]:
    """`write_private` for a file written as it is made (an export of millions of rows): the rows
    go into a temporary file next to PATH, created with mode 0600, which replaces PATH only when
    the block ends without an error (synced first). An error or a crash leaves no half file under
    PATH, and an older PATH as it was. text=True: a UTF-8 text handle that translates no newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            if text:
                fh = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                try:
                    yield fh
                except BaseException:
                    fh.detach()
                    raise
                fh.flush()
                fh.detach()  # the file stays open: `raw` closes it
                raw.flush()
                os.fsync(raw.fileno())
                size = raw.tell()
            else:
                yield raw
                raw.flush()
                os.fsync(raw.fileno())
                size = raw.tell()
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.debug("wrote %s (%d bytes, mode 0600)", path, size)


class StagedFiles:
    """The files of one command written as they are made and put in place together at the end
    (`commit`): each goes into a hidden temporary file next to its name, mode 0600 from creation
    and synced; `discard` (an error, a refused name) removes them, leaving the older files as they
    were. Names are claimed as files are opened (OutputFiles): a clash refuses the whole command
    before anything is in place, as claiming every name first did."""

    def __init__(self) -> None:
        self.outputs = OutputFiles()
        self._open: dict[int, tuple[Path, Path, IO[str]]] = {}
        self._done: list[tuple[Path, Path]] = []

    def open(self, path: Path | str, what: str | None = None, claimed: bool = False) -> IO[str]:
        """A UTF-8 text handle (no newline translated) for PATH; `close` it when it is complete.
        claimed: the name was claimed already (`outputs.claim`, to reserve it first)."""
        path = Path(path) if claimed else self.outputs.claim(path, what)
        path.parent.mkdir(parents=True, exist_ok=True)
        _sweep_once(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fh = open(fd, "w", encoding="utf-8", newline="")
        self._open[id(fh)] = (tmp, path, fh)
        return fh

    def close(self, fh: IO[str]) -> Path:
        tmp, path, _ = self._open.pop(id(fh))
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        self._done.append((tmp, path))
        return path

    def write(self, path: Path | str, text: str, what: str | None = None) -> Path:
        fh = self.open(path, what)
        fh.write(text)
        return self.close(fh)

    def commit(self) -> list[Path]:
        """Every complete file put in place, in the order they were closed."""
        placed = []
        for tmp, path in self._done:
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
            log.debug("wrote %s (mode 0600)", path)
            placed.append(path)
        self._done = []
        return placed

    def discard(self) -> None:
        for tmp, _ in self._done:
            tmp.unlink(missing_ok=True)
        self._done = []
        for tmp, _, fh in self._open.values():
            fh.close()
            tmp.unlink(missing_ok=True)
        self._open = {}
