"""PDF rendering of sheets with reportlab: vector QR, embedded fonts, atomic output.

What is the same on many sheets (the layout: boxes, labels, corner marks, footer) is drawn once per
document as a form XObject and placed on each page; only the QR, the sheet id and the patient
header are drawn per sheet. That keeps a 500-sheet PDF small and fast to write.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import qrcode
from qrcode.constants import ERROR_CORRECT_Q
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from .. import fonts
from ..ids import pretty_sheet_id
from ..templates.layout import MARGIN, QR_SIZE, PageLayout, qr_box

QR_VERSION = 4  # 33 modules; 64 alphanumeric characters at level Q — our payload is at most 60
QR_MASK = 2     # fixed: the mask search costs ~3 ms per code and gains nothing measurable here


@dataclass
class HeaderLine:
    text: str
    size: float = 9.0
    bold: bool = False


@dataclass
class SheetToRender:
    layout: PageLayout
    sheet_id: str
    payload: str
    header: list[HeaderLine] = field(default_factory=list)


def qr_matrix(payload: str) -> list[list[bool]]:
    code = qrcode.QRCode(version=QR_VERSION, error_correction=ERROR_CORRECT_Q, border=0,
                         mask_pattern=QR_MASK)
    code.add_data(payload, optimize=0)
    code.make(fit=False)
    return code.get_matrix()


def _draw_items(c: canvas.Canvas, items: list[tuple], page_h: float) -> None:
    for item in items:
        kind = item[0]
        if kind == "text":
            _, x, y, size, font, text, align = item
            c.setFont(font, size)
            c.setFillGray(0)
            if align == "center":
                c.drawCentredString(x * mm, (page_h - y) * mm, text)
            elif align == "right":
                c.drawRightString(x * mm, (page_h - y) * mm, text)
            else:
                c.drawString(x * mm, (page_h - y) * mm, text)
        elif kind == "rect":
            _, x, y, w, h, lw, gray = item
            if gray is None:
                c.setLineWidth(lw)
                c.setStrokeGray(0)
                c.rect(x * mm, (page_h - y - h) * mm, w * mm, h * mm, stroke=1, fill=0)
            else:
                c.setFillGray(gray)
                c.rect(x * mm, (page_h - y - h) * mm, w * mm, h * mm, stroke=0, fill=1)
        elif kind == "line":
            _, x1, y1, x2, y2, lw = item
            c.setLineWidth(lw)
            c.setStrokeGray(0)
            c.line(x1 * mm, (page_h - y1) * mm, x2 * mm, (page_h - y2) * mm)


def _draw_qr(c: canvas.Canvas, payload: str, page_w: float, page_h: float) -> None:
    matrix = qr_matrix(payload)
    x0, y0, size, _ = qr_box((page_w, page_h))
    module = size / len(matrix)
    path = c.beginPath()
    for r, row in enumerate(matrix):
        col = 0
        n = len(row)
        while col < n:
            if row[col]:
                start = col
                while col < n and row[col]:
                    col += 1
                path.rect((x0 + start * module) * mm, (page_h - y0 - (r + 1) * module) * mm,
                          (col - start) * module * mm, module * mm)
            else:
                col += 1
    c.setFillGray(0)
    c.drawPath(path, stroke=0, fill=1)


def _draw_sheet(c: canvas.Canvas, sheet: SheetToRender, forms: dict[str, str]) -> None:
    layout = sheet.layout
    page_w, page_h = layout.size_mm
    c.setPageSize((page_w * mm, page_h * mm))
    key = layout.drawing_key()
    if key not in forms:
        name = f"L{len(forms)}"
        c.beginForm(name)
        _draw_items(c, layout.items, page_h)
        c.endForm()
        forms[key] = name
    c.doForm(forms[key])
    _draw_qr(c, sheet.payload, page_w, page_h)
    qx, qy, qs, _ = qr_box((page_w, page_h))
    c.setFillGray(0)
    c.setFont(fonts.MONO, 9.5)
    c.drawCentredString((qx + qs / 2) * mm, (page_h - qy - qs - 4.2) * mm, pretty_sheet_id(sheet.sheet_id))
    c.setFont(fonts.REGULAR, 7)
    c.drawCentredString((qx + qs / 2) * mm, (page_h - qy - qs - 7.6) * mm,
                        f"{layout.page} / {layout.pages}")
    y = MARGIN + 9.0
    for line in sheet.header:
        c.setFont(fonts.BOLD if line.bold else fonts.REGULAR, line.size)
        c.drawString(MARGIN * mm, (page_h - y) * mm, line.text)
        y += line.size * 0.42 + 1.2
    c.showPage()


def draw_cover(c: canvas.Canvas, title: str, lines: list[tuple[str, bool]], size_mm,
               code: str | None = None, code_label: str = "cover") -> None:
    """A pack's cover sheet: plain text, and a code of its own where a sheet has its code, so that
    a cover scanned with its pack is recognised and counted (it is not a form: nothing is read)."""
    page_w, page_h = size_mm

    def start_page() -> None:  # every page of a long cover carries the code: none is quarantined
        c.setPageSize((page_w * mm, page_h * mm))
        if code is not None:
            _draw_qr(c, code, page_w, page_h)
            qx, qy, qs, _ = qr_box((page_w, page_h))
            c.setFillGray(0)
            c.setFont(fonts.REGULAR, 7)
            c.drawCentredString((qx + qs / 2) * mm, (page_h - qy - qs - 4.2) * mm, code_label)

    start_page()
    c.setFont(fonts.BOLD, 16)
    c.drawString(MARGIN * mm, (page_h - MARGIN - 6) * mm, title)
    y = MARGIN + 16
    for text, bold in lines:
        if y > page_h - MARGIN:
            c.showPage()
            start_page()
            c.setFont(fonts.BOLD, 12)
            c.drawString(MARGIN * mm, (page_h - MARGIN - 6) * mm, f"{title} (continued)")
            y = qr_box((page_w, page_h))[1] + QR_SIZE + 10 if code is not None else MARGIN + 16
        c.setFont(fonts.BOLD if bold else fonts.REGULAR, 9.5)
        c.drawString(MARGIN * mm, (page_h - y) * mm, text)
        y += 5.2
    c.showPage()


def write_pdf(out_path: Path | str, pages: list, title: str) -> None:
    """Write pages (SheetToRender, or callables drawing a cover) to out_path atomically."""
    fonts.register()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        c = canvas.Canvas(tmp_name, pageCompression=1, invariant=1)
        c.setTitle(title)
        c.setCreator("fallbackkit")
        forms: dict[str, str] = {}
        for page in pages:
            if isinstance(page, SheetToRender):
                _draw_sheet(c, page, forms)
            else:
                page(c)
        c.save()
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


__all__ = ["HeaderLine", "SheetToRender", "write_pdf", "draw_cover", "qr_matrix", "QR_SIZE"]
