"""Writing rendered pages the way scanners and phones store them, and the bad files they also produce."""
from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
from PIL import Image
from reportlab.lib import pdfencrypt
from reportlab.pdfgen import canvas


def write_png(path: Path, page: np.ndarray, dpi: int = 200) -> Path:
    Image.fromarray(page).save(path, format="PNG", dpi=(dpi, dpi))
    return path


def write_jpeg(path: Path, page: np.ndarray, dpi: int = 200, exif_orientation: int | None = None,
               colour: bool = False) -> Path:
    """A JPEG as a phone or scanner writes it. With exif_orientation, the pixels are stored turned
    and the EXIF tag says how to turn them back (6: stored 90 degrees clockwise from upright...)."""
    img = Image.fromarray(page)
    if colour:
        img = img.convert("RGB")
    exif = None
    if exif_orientation is not None:
        # store pixels so that applying the tag gives back the upright page
        inverse = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
        img = img.transpose(inverse[exif_orientation])
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
    img.save(path, format="JPEG", quality=88, dpi=(dpi, dpi), **({"exif": exif} if exif is not None else {}))
    return path


def bilevel(page: np.ndarray) -> Image.Image:
    return Image.fromarray(np.where(page > 160, 255, 0).astype(np.uint8)).convert("1")


def write_tiff_g4(path: Path, pages: list[np.ndarray], dpi: int = 300) -> Path:
    """Multi-page 1-bit CCITT G4, as office scanners write it."""
    frames = [bilevel(p) for p in pages]
    frames[0].save(path, compression="group4", save_all=True, append_images=frames[1:], dpi=(dpi, dpi))
    return path


def write_scanner_pdf(path: Path, pages: list[np.ndarray], dpi: int = 200) -> Path:
    """A scanner's PDF: one embedded JPEG image per page and nothing else."""
    frames = [Image.fromarray(p) for p in pages]
    frames[0].save(path, save_all=True, append_images=frames[1:], resolution=dpi)
    return path


def white_out(page: np.ndarray, box_mm: list[float], dpi: int, margin_mm: float = 2.0) -> np.ndarray:
    """Paint over a region of a rendered page (e.g. the QR code: a torn or smudged code)."""
    out = page.copy()
    s = dpi / 25.4
    x, y, w, h = box_mm
    out[max(0, int((y - margin_mm) * s)):int((y + h + margin_mm) * s),
        max(0, int((x - margin_mm) * s)):int((x + w + margin_mm) * s)] = 255
    return out


# --- bad files ---------------------------------------------------------------------------------
def write_bad_files(folder: Path, good_pdf: Path, good_png: Path) -> dict[str, str]:
    """Each kind of bad file, with a phrase its error message must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    (folder / "empty.pdf").write_bytes(b"")
    expected["empty.pdf"] = "is empty"
    (folder / "notes.pdf").write_text("Ward 3B handover notes\nnot a scan\n")
    expected["notes.pdf"] = "is a text file"
    with zipfile.ZipFile(folder / "letter.docx", "w") as z:
        z.writestr("word/document.xml", "<w:document/>")
    expected["letter.docx"] = "office document"
    data = good_pdf.read_bytes()
    (folder / "truncated.pdf").write_bytes(data[: len(data) // 3])
    expected["truncated.pdf"] = "damaged or incomplete PDF"
    rng = np.random.default_rng(7)
    garbled = bytearray(data)
    garbled[200:] = rng.integers(0, 256, len(data) - 200, dtype=np.uint8).tobytes()
    (folder / "corrupt.pdf").write_bytes(bytes(garbled))
    expected["corrupt.pdf"] = "damaged or incomplete PDF"
    png = good_png.read_bytes()
    (folder / "cut.png").write_bytes(png[: len(png) // 2])
    expected["cut.png"] = "cut short"
    c = canvas.Canvas(str(folder / "locked.pdf"), encrypt=pdfencrypt.StandardEncryption("s3cret", canPrint=1))
    c.drawString(100, 100, "locked")
    c.save()
    expected["locked.pdf"] = "password-protected"
    empty_pdf = pdfium.PdfDocument.new()
    empty_pdf.save(str(folder / "nopages.pdf"))
    empty_pdf.close()
    expected["nopages.pdf"] = "no pages"
    write_png_bomb(folder / "bomb.png", 30000, 30000)
    expected["bomb.png"] = "too large to be a scanned page"
    return expected


def write_png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit white PNG of width x height pixels: 900 megapixels compress to ~100 kB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    z = zlib.compressobj(1)
    block = row * 1000
    body = b"".join(z.compress(block) for _ in range(height // 1000)) + z.compress(row * (height % 1000))
    body += z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path
