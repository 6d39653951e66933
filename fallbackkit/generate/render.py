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
from reportlab import rl_config
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from .. import fonts
from ..ids import pretty_sheet_id
from ..templates.layout import MARGIN, QR_SIZE, HeaderLine, PageLayout, qr_box, wrap_text

QR_VERSION = 4  # 33 modules; 64 alphanumeric characters at level Q — our payload is at most 60
QR_MASK = 2     # fixed: the mask search costs ~3 ms per code and gains nothing measurable here


@dataclass
class SheetToRender:
    layout: PageLayout
    sheet_id: str
    payload: str
    header: list[tuple] = field(default_factory=list)  # drawing items, from layout.place_header


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


def _qr_operators(matrix: list[list[bool]]) -> str:
    """The code's dark modules as PDF rectangles in module units (one rectangle per run of dark
    modules in a row), as one operator string: formatting ~300 rectangles per sheet through
    reportlab's path object was most of the time a 500-sheet print took."""
    ops = []
    for r, row in enumerate(matrix):
        col, n = 0, len(row)
        while col < n:
            if row[col]:
                start = col
                while col < n and row[col]:
                    col += 1
                ops.append(f"{start} {r} {col - start} 1 re")
            else:
                col += 1
    return "\n".join(ops)


def _draw_qr(c: canvas.Canvas, payload: str, page_w: float, page_h: float) -> None:
    matrix = qr_matrix(payload)
    x0, y0, size, _ = qr_box((page_w, page_h))
    module = size / len(matrix)
    c.saveState()
    c.setFillGray(0)
    # module grid: origin at the code's top-left corner, y going down, one unit per module
    c.transform(module * mm, 0, 0, -module * mm, x0 * mm, (page_h - y0) * mm)
    c._code.append(_qr_operators(matrix) + "\nf")  # reportlab's raw content stream (see docstring)
    c.restoreState()


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
    _draw_items(c, sheet.header, page_h)
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

    qx, qy, qs, _ = qr_box((page_w, page_h))
    code_bottom = qy + qs + 6  # the code and its label
    start_page()
    title_room = (qx - 3 if code is not None else page_w - MARGIN) - MARGIN
    title_lines = [title] if fonts.text_width_mm(title, 16, fonts.BOLD) <= title_room \
        else wrap_text(title, title_room, 16, fonts.BOLD)[0]
    c.setFont(fonts.BOLD, 16)
    for k, line in enumerate(title_lines):  # the title wraps clear of the code
        c.drawString(MARGIN * mm, (page_h - MARGIN - 6 - 7 * k) * mm, line)
    y = MARGIN + 16 + 7 * (len(title_lines) - 1)
    for text, bold in lines:
        font = fonts.BOLD if bold else fonts.REGULAR
        indent = len(text) - len(text.lstrip(" "))
        pad = fonts.text_width_mm(" " * indent, 9.5, font)
        # beside the code (top right) a line stops short of it; below it, at the right margin
        right = qx - 3 if code is not None and y < code_bottom else page_w - MARGIN
        room = right - MARGIN - pad
        wrapped = [text.strip()] if fonts.text_width_mm(text.strip(), 9.5, font) <= room \
            else wrap_text(text.strip(), room, 9.5, font)[0]
        for line in wrapped:  # long lines wrap inside the margins
            if y > page_h - MARGIN:
                c.showPage()
                start_page()
                c.setFont(fonts.BOLD, 12)
                c.drawString(MARGIN * mm, (page_h - MARGIN - 6) * mm, f"{title} (continued)")
                y = code_bottom + 4 if code is not None else MARGIN + 16
            c.setFont(font, 9.5)
            c.drawString((MARGIN + pad) * mm, (page_h - y) * mm, line)
            y += 5.2
    c.showPage()


def write_pdf(out_path: Path | str, pages: list, title: str, duplex: bool = False) -> None:
    """Write pages (SheetToRender, or callables drawing a cover) to out_path atomically.

    duplex: the PDF asks to be printed on both sides, turned on the long edge (a form's page 2 on
    the back of its page 1), and every form and cover starts on a front: a blank back follows a
    form or cover that ends on a front, so that no sheet of paper holds two forms (a lab request
    goes to the lab on its own). The blank backs read as blank pages when scanned."""
    fonts.register()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    a85, rl_config.useA85 = rl_config.useA85, 0  # binary streams: ASCII85 cost time and 40 % of the size
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        c = canvas.Canvas(tmp_name, pageCompression=1, invariant=1)
        c.setTitle(title)
        c.setCreator("fallbackkit")
        forms: dict[str, str] = {}
        if duplex:
            c.setViewerPreference("Duplex", "DuplexFlipLongEdge")
        for page in pages:
            starts = not isinstance(page, SheetToRender) or page.layout.page == 1
            if duplex and starts and c.getPageNumber() % 2 == 0:  # the next page would be a back
                c.showPage()
            if isinstance(page, SheetToRender):
                _draw_sheet(c, page, forms)
            else:
                page(c)
        c.save()
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    finally:
        rl_config.useA85 = a85


__all__ = ["HeaderLine", "SheetToRender", "write_pdf", "draw_cover", "qr_matrix", "QR_SIZE"]
