"""A scanned page's image for people, made when someone asks for it, from the archived original.

The scan used to warp every page to 100 dpi and PNG-encode it into KIT/pages/ (about 9 ms of CPU a
page, a fifth of the page path) for an image most pages never show. The original file is archived
byte for byte before a page is read (the legal record) and each capture keeps the page's transform,
so the same image is made again on demand: the archived page decoded, warped with the stored
transform to the page image's grid (`engine.page_image`, PAGE_IMAGE_DPI) and flattened to the
viewing copy (`page_task.viewing_png`), the very pixels the scan stored before; a page the reader
could not locate is the original shrunk to about 100 dpi (`preview`). The PNG is cached at the
capture's `image_path` (KIT/pages/ab/<sha256>-p<n>.png, written atomically), so a second view is a
file read, and a kit whose page images were written at scan time uses them as they are.

Everyone who shows or exports a page image gets it here (`page_image_png`): the review station's
page, reading and quarantine screens, the FHIR export's Binary and inline attachments.
"""
from __future__ import annotations

import logging
import os
import threading
import uuid
from pathlib import Path

import numpy as np

from ..errors import NotFound
from ..store.captures import PageImageSource, page_image_source
from ..templates.contract import PAGE_IMAGE_DPI

log = logging.getLogger("fallbackkit")

PAGE_FOLDER = "pages"
ARCHIVE_FOLDER = "archive"
PREVIEW_LONG_SIDE = 1170  # an original of unknown dpi: its long side shrunk to this (A4 at 100 dpi)
# PDFium (PDF pages) is not thread-safe and the review station serves requests in threads: one
# archived page decoded at a time per process (a page view costs tens of milliseconds)
DECODE_LOCK = threading.Lock()


class PageImageUnavailable(NotFound):
    """A page image that is not cached and cannot be made: its archived original is missing or
    cannot be decoded. The message names the file and says what to do."""


def page_image_png(conn, kit_path: Path | str, capture_id: int) -> bytes:
    """The PNG of a capture's page image: the cached file, else made from the archived original and
    cached. NotFound: no such capture, or no page image path a kit could have written;
    PageImageUnavailable: the original is missing or damaged (nothing is cached then)."""
    return png_of(kit_path, page_image_source(conn, capture_id))


def png_of(kit_path: Path | str, src: PageImageSource) -> bytes:
    kit_path = Path(kit_path)
    cached = cache_file(kit_path, src.image_path)
    try:
        return cached.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        pass
    except IsADirectoryError:
        raise NotFound("image not found in the kit") from None
    from .page_task import viewing_png
    png = viewing_png(render(kit_path, src))
    _write_cache(cached, png)
    return png


def cache_file(kit_path: Path, image_path: str | None) -> Path:
    """The cached page image's file: a .png under KIT/pages/ (symlinks resolved), whatever path a
    store row holds; anything else (../, an absolute path, secret.key, a link out of pages/) is
    NotFound, and is never read nor written."""
    if not image_path or not str(image_path).endswith(".png"):
        raise NotFound("no page image for this capture")
    try:
        root = (kit_path / PAGE_FOLDER).resolve()
        target = (kit_path / image_path).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        raise NotFound("image not found in the kit") from None
    if root not in target.parents:
        raise NotFound("image not found in the kit")
    return target


def render(kit_path: Path, src: PageImageSource) -> np.ndarray:
    """The page image as the scan would have stored it (uint8, before the viewing copy)."""
    image = archived_page(kit_path, src)
    if src.transform is not None and src.geometry is not None:
        from .engine import page_image
        return page_image(image, np.asarray(src.transform, float), src.geometry)
    return preview(image, src.dpi)


MISSING_HINT = ("restore the kit's archive/ folder from a copy (`fallbackkit check --archive` lists every "
                "original missing or changed), or scan the paper again")


def _original_missing(kit_path: Path, capture_id: int, archive_path: str | None) -> PageImageUnavailable | None:
    what = f"the page image of capture {capture_id}"
    if not archive_path:
        return PageImageUnavailable(f"{what} cannot be made: no archived original is recorded for it",
                                    hint="scan the paper again")
    if not (kit_path / archive_path).is_file():
        return PageImageUnavailable(f"{what} cannot be made: its archived original {archive_path} is missing",
                                    hint=MISSING_HINT)
    return None


def missing_original(kit_path: Path | str, capture_id: int, image_path: str | None,
                     archive_path: str | None) -> str | None:
    """Why a page image cannot be shown, without making it: no cached copy and no archived
    original (the message and what to do), else None (a damaged original is found when it is made)."""
    kit_path = Path(kit_path)
    try:
        if cache_file(kit_path, image_path).is_file():
            return None
    except NotFound:
        return None  # no page image at all: the screens say so themselves
    problem = _original_missing(kit_path, capture_id, archive_path)
    return None if problem is None else str(problem)


def archived_page(kit_path: Path, src: PageImageSource) -> np.ndarray:
    """The capture's page decoded from its archived original, as the reader had it."""
    from .ingest import UnreadableFile, load_page
    what = f"the page image of capture {src.capture_id}"
    if src.archive_path and not (kit_path / src.archive_path).resolve().is_relative_to(
            (kit_path / ARCHIVE_FOLDER).resolve()):
        raise NotFound("image not found in the kit")
    problem = _original_missing(kit_path, src.capture_id, src.archive_path)
    if problem is not None:
        raise problem
    path = kit_path / src.archive_path
    try:
        with DECODE_LOCK:
            return load_page(path, src.page_index, src.kind).image
    except (UnreadableFile, OSError, ValueError) as exc:
        why = exc.problem if isinstance(exc, UnreadableFile) else f"{type(exc).__name__}: {exc}"
        raise PageImageUnavailable(
            f"{what} cannot be made: page {src.page_index} of its archived original {src.archive_path} "
            f"cannot be decoded ({why})",
            hint="the original is damaged: `fallbackkit check --archive` compares every original with its "
                 "SHA-256; restore archive/ from a copy, or scan the paper again") from None


def preview(image: np.ndarray, dpi: float | None) -> np.ndarray:
    """The page as stored in the file, shrunk to about 100 dpi, for a person to look at (a page
    the reader could not locate: quarantined, blank, a cover)."""
    import cv2
    h, w = image.shape[:2]
    scale = PAGE_IMAGE_DPI / dpi if dpi else PREVIEW_LONG_SIDE / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def page_image_size(kit_path: Path | str | None, src: PageImageSource) -> tuple[int, int] | None:
    """(width, height) of the page image without making it: the cached file's header, else what
    render would make (the page grid of the sheet, or the preview of the original)."""
    if kit_path is None:
        return None
    try:
        cached = cache_file(Path(kit_path), src.image_path)
    except NotFound:
        return None
    if cached.is_file():
        try:
            from PIL import Image
            with Image.open(cached) as im:
                return im.size
        except OSError:
            return None
    if src.transform is not None and src.geometry is not None:
        ppm = PAGE_IMAGE_DPI / 25.4
        w, h = src.geometry["page_size_mm"]
        return max(1, int(round(w * ppm))), max(1, int(round(h * ppm)))
    if not src.width_px or not src.height_px:
        return None
    w, h = src.width_px, src.height_px
    scale = PAGE_IMAGE_DPI / src.dpi if src.dpi else PREVIEW_LONG_SIDE / max(h, w)
    return (w, h) if scale >= 1 else (max(1, round(w * scale)), max(1, round(h * scale)))


def _write_cache(dest: Path, png: bytes) -> None:
    """Temp file (mode 0600), then rename (a name of its own per call: the station renders in threads). A kit
    that cannot be written (read-only media, a full disk) still shows the page: it is made again
    next time."""
    from ..store.kit import PRIVATE_FILE, private_dir
    tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:8]}.{os.getpid()}.tmp")
    try:
        if not dest.parent.is_dir():
            private_dir(dest.parent)  # a page of a patient: 0700 / 0600 whatever the umask
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(png)
        os.chmod(tmp, PRIVATE_FILE)
        os.replace(tmp, dest)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        # once per process: an export of a read-only kit would otherwise say it for every page
        (log.debug if _NOT_CACHED else log.warning)("page image not cached at %s: %s (it is made again "
                                                   "next time it is shown)", dest, exc)
        _NOT_CACHED.add(dest.parent)


_NOT_CACHED: set[Path] = set()


__all__ = ["PageImageUnavailable", "page_image_png", "missing_original", "png_of", "render", "preview", "page_image_size",
           "cache_file"]
