"""Scanner output in, grey page images out: PDF, TIFF, PNG, JPEG, detected by their first bytes.

Every problem with a file becomes an `UnreadableFile` that names the file, says what is wrong and
what to do, so that one bad file in a batch is reported and the rest of the batch goes on.

Speed matters (a records office scans thousands of pages after an outage): scanner PDFs hold one
image per page, and extracting that image is several times faster than rendering the page, so we
extract when the page is exactly one upright image and render (200 dpi, grey) otherwise.
"""
from __future__ import annotations

import contextlib
import os
import re
import struct
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from PIL import Image, ImageOps

from ..errors import BadInput

# 600 dpi A3 is ~70 MP. Anything bigger than this is not a page: refuse before decoding it.
MAX_PAGE_PIXELS = 80_000_000
# Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; we check sizes ourselves
# first, and keep Pillow's guard at our cap so a file that lies in its header is still stopped.
Image.MAX_IMAGE_PIXELS = MAX_PAGE_PIXELS
RENDER_DPI = 200
MIN_DPI_TRUSTED = 50  # files written with 1 or 72 "dpi" as a placeholder say nothing useful
# A page image narrower or shorter than this cannot hold a sheet's marks and boxes (a 300-pixel
# A4 side is ~36 dpi): a thumbnail, an icon, a crop. Refused as a file error, never read.
MIN_PAGE_SIDE_PX = 300

KINDS = {"pdf": ".pdf", "tiff": ".tif", "png": ".png", "jpeg": ".jpg"}
EXIF_ORIENTATION = 0x0112


class UnreadableFile(BadInput):
    """An input file that cannot be read as scanned pages. The message names the file."""

    def __init__(self, path: Path | str, problem: str, hint: str):
        super().__init__(f"{path}: {problem}", hint=hint)
        self.path = str(path)
        self.problem = problem


@dataclass
class Page:
    index: int          # 1-based page number within the file
    image: np.ndarray   # 2-D uint8 grey, upright as stored in the file (EXIF applied)
    dpi: float | None   # as recorded in the file (None when unknown)
    kind: str           # pdf | tiff | png | jpeg
    how: str = "decode"  # decode | extract (scanner PDF image) | render (vector PDF)
    notes: tuple[str, ...] = ()  # what the image decoder said while decoding it (libtiff warnings)


RESCAN = "scan the paper again, or export the file again from the scanner software"
SAVE_AS = ("save as PDF, PNG, JPEG, or TIFF in grey, black-and-white or RGB colour with no, LZW, Deflate, "
           "JPEG or G4 compression (the scanner's file settings, or convert the file), then scan that file")


def sniff(path: Path | str, head: bytes | None = None) -> str:
    """The file type from its first bytes (an extension says nothing about what is inside).
    head: the file's first bytes (at least 1024 of them, or all), when the caller has read them."""
    path = Path(path)
    if head is None:
        try:
            with open(path, "rb") as fh:
                head = fh.read(1024)
        except IsADirectoryError:
            raise UnreadableFile(path, "is a folder", "pass the folder itself to scan, it is searched") from None
        except OSError as exc:
            raise UnreadableFile(path, f"cannot be opened ({exc.strerror})",
                                 "check that the file exists and that you may read it") from None
    head = head[:1024]
    if not head:
        raise UnreadableFile(path, "is empty (0 bytes)", "the copy from the scanner did not finish: copy it again")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if b"%PDF-" in head:  # the PDF header may follow some junk bytes
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        what = "an office document or zip archive, not a scan"
    elif head.startswith(b"\xd0\xcf\x11\xe0"):
        what = "an old office document, not a scan"
    elif _looks_like_text(head):
        what = "a text file, not a scan"
    else:
        what = "not a PDF, TIFF, PNG or JPEG file"
    raise UnreadableFile(path, f"is {what}",
                         "scan to PDF, TIFF, PNG or JPEG; remove this file from the scan folder")


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def count_pages(path: Path | str, kind: str | None = None) -> int:
    """Open the file and count its pages, checking what can be checked without decoding them all."""
    path = Path(path)
    kind = kind or sniff(path)
    if kind == "pdf":
        pdf = _open_pdf(path)
        try:
            n = len(pdf)
        finally:
            pdf.close()
    else:
        with _open_image(path, kind) as img:
            n = _frames(path, img, kind)
    if n < 1:
        raise UnreadableFile(path, "has no pages", RESCAN)
    return n


def iter_pages(path: Path | str, kind: str | None = None) -> Iterator[Page]:
    """Every page of a file, in order, as a grey image."""
    path = Path(path)
    kind = kind or sniff(path)
    reader = PageReader(path, kind)
    try:
        for i in range(1, reader.pages + 1):
            yield reader.page(i)
    finally:
        reader.close()


def load_page(path: Path | str, index: int, kind: str | None = None) -> Page:
    """One page (1-based) of a file."""
    reader = PageReader(Path(path), kind or sniff(path))
    try:
        return reader.page(index)
    finally:
        reader.close()


class PageReader:
    """An open input file from which pages are decoded one at a time (workers keep one open)."""

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind
        self._pdf = None
        self._img = None
        if kind == "pdf":
            self._pdf = _open_pdf(path)
            self.pages = len(self._pdf)
        else:
            self._img = _open_image(path, kind)
            self.pages = _frames(path, self._img, kind)
        if self.pages < 1:
            self.close()
            raise UnreadableFile(path, "has no pages", RESCAN)

    def close(self) -> None:
        if self._pdf is not None:
            self._pdf.close()
            self._pdf = None
        if self._img is not None:
            self._img.close()
            self._img = None

    def page(self, index: int) -> Page:
        if not 1 <= index <= self.pages:
            raise UnreadableFile(self.path, f"has no page {index} (it has {self.pages})", RESCAN)
        if self.kind == "pdf":
            return _pdf_page(self.path, self._pdf, index)
        return _image_page(self.path, self._img, self.kind, index)


# --- PDF ---------------------------------------------------------------------------------------
def _open_pdf(path: Path):
    import pypdfium2 as pdfium
    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError:
        # PDFium's error code can be left over from an earlier failure: look at the file itself
        problem = _pdf_problem(path)
        raise UnreadableFile(path, problem, _PDF_HINTS.get(problem, RESCAN)) from None


_PDF_HINTS = {"is a password-protected PDF":
              "save it again without a password (or scan the paper again) and rescan",
              "is a PDF with no pages": "export it again from the scanner software, or scan the paper again"}


def _pdf_problem(path: Path) -> str:
    data = path.read_bytes()
    if b"/Encrypt" in data:
        return "is a password-protected PDF"
    if re.search(rb"/Count\s*0\b", data) and not re.search(rb"/Type\s*/Page\b", data):
        return "is a PDF with no pages"
    return "is a damaged or incomplete PDF"


def _pdf_page(path: Path, pdf, index: int) -> Page:
    import pypdfium2 as pdfium
    try:
        page = pdf[index - 1]
    except pdfium.PdfiumError as exc:
        raise UnreadableFile(path, f"page {index} is damaged ({exc})", RESCAN) from None
    try:
        width_pt, height_pt = page.get_size()
        if width_pt <= 0 or height_pt <= 0:
            raise UnreadableFile(path, f"page {index} has no size", RESCAN)
        extracted = _extract_scanned_image(path, page, index, width_pt, height_pt)
        if extracted is not None:
            return extracted
        scale = RENDER_DPI / 72
        _check_pixels(path, index, width_pt * scale, height_pt * scale)
        try:
            bitmap = page.render(scale=scale, grayscale=True)
        except pdfium.PdfiumError as exc:
            raise UnreadableFile(path, f"page {index} cannot be rendered ({exc})", RESCAN) from None
        image = _bitmap_to_grey(bitmap)
        return Page(index, image, float(RENDER_DPI), "pdf", "render")
    finally:
        page.close()


def _extract_scanned_image(path: Path, page, index: int, width_pt: float, height_pt: float) -> Page | None:
    """A scanner PDF page is one image filling the page: decode that image instead of rendering.

    Only when it is unambiguous (one image, nothing else drawn, upright, covering the page);
    anything else is rendered, which is always right, only slower.
    """
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c
    if page.get_rotation() != 0:
        return None
    objects = list(page.get_objects(max_depth=1))
    if len(objects) != 1 or objects[0].type != pdfium_c.FPDF_PAGEOBJ_IMAGE:
        return None
    obj = objects[0]
    try:
        a, b, c, d, e, f = obj.get_matrix().get()
        if abs(b) > 1e-6 or abs(c) > 1e-6 or a <= 0 or d <= 0:
            return None
        left, bottom, right, top = obj.get_bounds()
        if (right - left) < 0.9 * width_pt or (top - bottom) < 0.9 * height_pt:
            return None
        px_w, px_h = obj.get_px_size()
        if min(px_w, px_h) < MIN_PAGE_SIDE_PX:
            return None  # a low-resolution image on a page: rendering sizes it to the page
        _check_pixels(path, index, px_w, px_h)
        filters = obj.get_filters()
        image = None
        said: list[str] = []
        if filters == ["DCTDecode"]:
            data = obj.get_data(decode_simple=False)
            buf = np.frombuffer(bytes(data), dtype=np.uint8)
            with decoder_messages(said):  # OpenCV's libjpeg prints "Corrupt JPEG data: ..." on stderr
                image = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
            if any("premature end" in line for line in said):
                # the rest of the page is filled in grey: its marks would read as blank boxes
                raise UnreadableFile(path, f"page {index}: its image is cut short ({_said(said)[2:]})", RESCAN)
            if image is not None and image.shape != (px_h, px_w):
                image = None
        if image is None:
            bitmap = obj.get_bitmap(render=False)
            image = _bitmap_to_grey(bitmap)
            if image.shape != (px_h, px_w):
                return None
    except pdfium.PdfiumError:
        return None  # let the renderer have a go; it reports real damage
    if image[::16, ::16].mean() < 96:
        return None  # mostly dark: an inverted image (a /Decode array the raw bitmap ignores); render it
    dpi = round(px_w / ((right - left) / 72), 1)
    return Page(index, np.ascontiguousarray(image), float(dpi), "pdf", "extract", notes=tuple(said))


def _bitmap_to_grey(bitmap) -> np.ndarray:
    arr = bitmap.to_numpy()
    mode = bitmap.mode if hasattr(bitmap, "mode") else None
    if arr.ndim == 2:
        grey = arr
    elif arr.shape[2] == 1:
        grey = arr[:, :, 0]
    elif mode in ("RGB", "RGBA", "RGBX"):
        grey = cv2.cvtColor(arr[:, :, :3], cv2.COLOR_RGB2GRAY)
    else:  # pdfium's native order is BGR(A)
        grey = cv2.cvtColor(arr[:, :, :3], cv2.COLOR_BGR2GRAY)
    if grey.dtype != np.uint8:
        grey = grey.astype(np.uint8)
    return np.ascontiguousarray(grey)


# --- TIFF, PNG, JPEG ---------------------------------------------------------------------------
def _open_image(path: Path, kind: str) -> Image.Image:
    said: list[str] = []
    try:
        with warnings.catch_warnings(), _tiff_messages(said, kind):
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": the pixels still count
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.size  # noqa: B018 - header parsed
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_big(path, 1, None, None, _bomb_pixels(exc)) from None
    except Exception as exc:  # Pillow raises many types for broken headers
        unsupported = _tiff_unsupported(_tiff_header_tags(path), said) if kind == "tiff" else None
        if unsupported:
            raise UnreadableFile(path, f"unsupported encoding ({unsupported})", SAVE_AS) from None
        raise UnreadableFile(path, f"is a damaged {kind.upper()} file ({_short(exc)}{_said(said)})", RESCAN) from None
    try:
        _check_pixels(path, 1, *img.size)
    except UnreadableFile:
        img.close()
        raise
    return img


def _frames(path: Path, img: Image.Image, kind: str) -> int:
    if kind != "tiff":
        return 1
    said: list[str] = []
    try:
        with warnings.catch_warnings(), _tiff_messages(said, kind):
            warnings.simplefilter("ignore")
            return img.n_frames
    except Exception as exc:  # a page directory points past the end of the file
        img.close()
        raise UnreadableFile(path, f"is cut short or damaged ({_short(exc)}{_said(said)})", RESCAN) from None


def _image_page(path: Path, img: Image.Image, kind: str, index: int) -> Page:
    said: list[str] = []
    try:
        with _tiff_messages(said, kind), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if kind == "tiff":
                img.seek(index - 1)
            _check_pixels(path, index, *img.size)
            dpi = _dpi(img)
            dpi_xy = _dpi_xy(img)
            grey = _plain_grey(path, img, kind) if dpi_xy is None else None
            if grey is not None:
                return Page(index, grey, dpi, kind, notes=tuple(said))
            if kind == "jpeg":
                img.draft("L", img.size)  # let libjpeg produce grey directly
            img.load()
            frame = img
            if kind == "jpeg" and img.getexif().get(EXIF_ORIENTATION, 1) != 1:
                frame = ImageOps.exif_transpose(frame)  # phones store pixels turned and say so in EXIF
            grey = _to_grey(frame)
            if dpi_xy is not None:  # a fax (204 x 98 dpi) and other non-square pixels
                grey, dpi = _square_pixels(grey, dpi_xy)
    except UnreadableFile:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_big(path, index, None, None) from None
    except EOFError:
        raise UnreadableFile(path, f"is cut short: page {index} is missing", RESCAN) from None
    except Exception as exc:  # Pillow's decoders raise assorted errors on damaged data
        unsupported = _tiff_unsupported(getattr(img, "tag_v2", {}), said, exc) if kind == "tiff" else None
        if unsupported:
            raise UnreadableFile(path, f"page {index}: unsupported encoding ({unsupported})", SAVE_AS) from None
        text = str(exc)
        if isinstance(exc, OSError) and ("truncated" in text or "broken data stream" in text
                                         or "unrecognized data" in text):
            raise UnreadableFile(path, f"is cut short or damaged (page {index}: {_short(exc)}{_said(said)})",
                                 RESCAN) from None
        raise UnreadableFile(path, f"page {index} cannot be decoded ({_short(exc)}{_said(said)})", RESCAN) from None
    return Page(index, grey, dpi, kind, notes=tuple(said))


def _plain_grey(path: Path, img: Image.Image, kind: str) -> np.ndarray | None:
    """The pixels of a plain 8-bit grey PNG decoded by OpenCV (libpng): a lossless format, the same
    pixels as Pillow's decoder gives, ~1 ms less per 200-dpi page (~13 -> ~12 ms). None: Pillow decodes it, as any
    other file: a file OpenCV cannot decode whole, or about which libpng said anything, gets
    Pillow's diagnosis. (JPEG stays with Pillow: its draft mode and buffer paste are as fast.)"""
    if kind != "png" or img.mode != "L" or img.info.get("transparency") is not None:
        return None
    said: list[str] = []
    try:
        data = np.fromfile(path, np.uint8)
        if len(data) < 26 or data[24] != 8 or data[25] != 0:
            return None  # IHDR: not 8 bits of grey per pixel (1, 2, 4 or 16 bits, a palette, colour)
        with decoder_messages(said):
            grey = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    except (OSError, cv2.error):
        return None
    if grey is None or said or grey.shape != (img.size[1], img.size[0]):
        return None
    return np.ascontiguousarray(grey)


# --- what C decoders say -----------------------------------------------------------------------
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def decoder_messages(sink: list[str]):
    """Catch what C libraries (libtiff through Pillow) write straight to the process's stderr.

    libtiff prints warnings and errors ("WEBP compression support is not configured") on file
    descriptor 2, under a made-up file name: on a clerk's console that is noise nobody can place.
    They are collected into SINK for the caller to put in its own message, which names the file.
    """
    with _STDERR_LOCK:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            caught = _catch_file()
            saved = os.dup(2)
        except (OSError, ValueError):  # no stderr at all, or no room for a temporary file
            saved = None
        if saved is None:
            yield sink
            return
        try:
            os.dup2(caught, 2)
            try:
                yield sink
            finally:  # also when decoding failed: the messages explain the failure
                os.dup2(saved, 2)
                size = os.lseek(caught, 0, os.SEEK_END)
                if size:
                    text = os.pread(caught, min(size, 64 * 1024), 0)
                    os.ftruncate(caught, 0)
                    os.lseek(caught, 0, os.SEEK_SET)
                    _collect(sink, text.decode("utf-8", "replace"))
        finally:
            os.close(saved)


_CATCH: dict[int, int] = {}  # pid -> descriptor of an unlinked temporary file (a forked worker makes its own)


def _catch_file() -> int:
    fd = _CATCH.get(os.getpid())
    if fd is None:
        with tempfile.TemporaryFile() as fh:
            fd = os.dup(fh.fileno())
        _CATCH.clear()
        _CATCH[os.getpid()] = fd
    return fd


def _tiff_messages(sink: list[str], kind: str):
    """Pillow decodes TIFF through libtiff, which prints; its PNG and JPEG decoders print nothing."""
    return decoder_messages(sink) if kind == "tiff" else contextlib.nullcontext(sink)


def _collect(sink: list[str], text: str) -> None:
    for line in text.splitlines():
        # Pillow hands libtiff an open file under the name "tempfile.tif"
        line = re.sub(r"^\S*tempfile\.tif:\s*", "", line.strip())
        if line and line not in sink:
            sink.append(line)


def _said(said: list[str]) -> str:
    return "; the decoder said: " + _short(Exception(" / ".join(said))) if said else ""


# --- TIFFs that are valid but that this build cannot decode ---------------------------------------
_TIFF_COMPRESSIONS = {6: "old-style JPEG compression", 34712: "JPEG 2000 compression",
                      34713: "Nikon NEF compression", 34887: "LERC compression", 34925: "LZMA compression",
                      50000: "Zstandard compression", 50001: "WebP compression", 50002: "JPEG XL compression",
                      52546: "JPEG XL compression"}
_TIFF_PHOTOMETRIC = {8: "CIELAB colour", 9: "ICC L*a*b* colour", 10: "ITU L*a*b* colour",
                     32844: "LogL colour", 32845: "LogLuv colour"}


def _tiff_unsupported(tags, said: list[str], exc: BaseException | None = None) -> str | None:
    """The encoding, named for a person, when a TIFF is valid but uses one this build cannot decode.

    Called only once decoding failed. Without an exception (Pillow could not even open the file)
    a compression of the table is reason enough; after one, libtiff must have said it lacks it:
    a damaged Zstandard TIFF is damaged, not unsupported.
    """
    try:
        compression, photometric = tags.get(259), tags.get(262)
    except Exception:
        return None
    if photometric in _TIFF_PHOTOMETRIC:
        return _TIFF_PHOTOMETRIC[photometric]
    lacking = any("support is not configured" in line or "not implemented" in line for line in said)
    if lacking or (exc is None and compression in _TIFF_COMPRESSIONS):
        return _TIFF_COMPRESSIONS.get(compression, f"TIFF compression {compression}")
    found = re.search(r"conversion from (\S+) to \S+ not supported", str(exc)) if exc is not None else None
    return f"{found.group(1)} colour" if found else None


def _tiff_header_tags(path: Path) -> dict[int, int]:
    """Compression and photometric tags of a classic TIFF's first page, read by hand: Pillow
    refuses to open a TIFF whose compression it does not know, so it cannot tell us which."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            order = {b"II": "<", b"MM": ">"}.get(head[:2])
            if order is None or struct.unpack(order + "H", head[2:4])[0] != 42:
                return {}
            fh.seek(struct.unpack(order + "I", head[4:8])[0])
            count = struct.unpack(order + "H", fh.read(2))[0]
            tags = {}
            for _ in range(min(count, 512)):
                tag, typ, n, value = struct.unpack(order + "HHI4s", fh.read(12))
                if tag in (259, 262) and n == 1:
                    tags[tag] = struct.unpack(order + ("H" if typ == 3 else "I"), value[:2] if typ == 3 else value)[0]
            return tags
    except (OSError, struct.error):
        return {}


def _l_array(img: Image.Image) -> np.ndarray:
    """A mode-L image as a numpy array. np.array(img) goes through Image.tobytes (encoded in 64 KiB
    chunks, joined, then copied: ~3 ms for a 200-dpi page); pasting into an image that maps a numpy
    buffer costs ~0.3 ms. Used only when the mapping is proven (a sentinel written to the array is
    seen by the image, and sampled pixels agree after the paste); otherwise np.array."""
    w, h = img.size
    try:
        arr = np.empty((h, w), np.uint8)
        target = Image.frombuffer("L", (w, h), arr, "raw", "L", 0, 1)
        for sentinel in (0, 255):
            arr[0, 0] = arr[h - 1, w - 1] = sentinel
            if target.im.getpixel((0, 0)) != sentinel or target.im.getpixel((w - 1, h - 1)) != sentinel:
                raise ValueError("not mapped")
        target.im.paste(img.im, (0, 0, w, h))
        for x, y in ((0, 0), (w - 1, h - 1), (w // 2, h // 2), (w // 3, 2 * h // 3), (w - 1, 0), (0, h - 1)):
            if int(arr[y, x]) != img.im.getpixel((x, y)):
                raise ValueError("paste missed")
        return arr
    except Exception:  # a Pillow that maps buffers differently: the slow, sure way
        return np.array(img)


def _to_grey(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "L":
        return _l_array(img)
    if mode == "1":
        return _l_array(img.convert("L"))
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.array(img).astype(np.uint32)
        top = 65535 if mode.startswith("I;16") or arr.max() > 255 else 255
        return (arr * 255 // top).astype(np.uint8)
    if mode in ("LA", "RGBA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, rgba).convert("L"))
    return np.array(img.convert("L"))


def _dpi(img: Image.Image) -> float | None:
    dpi = img.info.get("dpi")
    if not dpi:
        return None
    try:
        value = float(dpi[0] if isinstance(dpi, (tuple, list)) else dpi)
    except (TypeError, ValueError):
        return None
    return round(value, 1) if value >= MIN_DPI_TRUSTED else None


def _dpi_xy(img: Image.Image) -> tuple[float, float] | None:
    """(x dpi, y dpi) when the file says its pixels are not square (both trusted, 2 % apart)."""
    dpi = img.info.get("dpi")
    if not isinstance(dpi, (tuple, list)) or len(dpi) != 2:
        return None
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError):
        return None
    if min(x, y) < MIN_DPI_TRUSTED or abs(x - y) <= 0.02 * max(x, y):
        return None
    return x, y


def _square_pixels(grey: np.ndarray, dpi_xy: tuple[float, float]) -> tuple[np.ndarray, float]:
    """Resample to square pixels at the finer of the two resolutions (standard fax: 204 x 98 dpi is
    stretched to 204 x 204), so that the page has its true shape before it is read."""
    x, y = dpi_xy
    target = max(x, y)
    h, w = grey.shape
    size = (max(1, round(w * target / x)), max(1, round(h * target / y)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR), round(target, 1)


def _check_pixels(path: Path, index: int, width: float, height: float) -> None:
    if width * height > MAX_PAGE_PIXELS:
        raise _too_big(path, index, width, height)
    if min(width, height) < MIN_PAGE_SIDE_PX:
        raise UnreadableFile(path, f"page {index} is too small to be a scanned page ({int(width)} x {int(height)} "
                                   f"pixels; a page needs at least {MIN_PAGE_SIDE_PX} on each side)",
                             "scan the whole sheet at 150 dpi or more (not a thumbnail or a crop)")


def _bomb_pixels(exc: BaseException) -> int | None:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return int(found.group(1)) if found else None


def _too_big(path: Path, index: int, width: float | None, height: float | None,
             pixels: int | None = None) -> UnreadableFile:
    size = f" ({int(width)} x {int(height)} pixels)" if width else (f" ({pixels} pixels)" if pixels else "")
    return UnreadableFile(path, f"page {index} is too large to be a scanned page{size}; it may be a "
                                f"decompression bomb", "scan at 600 dpi or less; do not scan this file")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 120 else text[:117] + "..."


__all__ = ["Page", "PageReader", "UnreadableFile", "sniff", "count_pages", "iter_pages", "load_page",
           "MAX_PAGE_PIXELS", "MIN_PAGE_SIDE_PX", "KINDS", "decoder_messages"]
