"""The layout engine: places a template's fields on pages, so nobody writes coordinates.

Deterministic: the same template, paper, languages and pre-printed context give the same pages,
byte for byte. Output per page: drawing items (for the PDF renderer) and the field geometry (for
the scanner), both in millimetres from the top-left corner of the page.

Every page has the same furniture: four corner marks (solid squares; the bottom-right one has a
white hole, so the marks also tell which way up the page is), the QR code top right with the
sheet id under it, a header band (title, patient identifiers), and a footer with the marking
convention.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadInput
from ..fonts import BOLD, REGULAR, text_width_mm
from .model import LANGS, FieldSpec, Medications, Section, Template

PAPER_SIZES_MM = {"a4": (210.0, 297.0), "letter": (215.9, 279.4)}

# Page furniture, mm.
MARK_SIZE = 6.0
MARK_INSET = 8.0          # page edge to the mark's outer edge
MARK_HOLE = 2.6           # the bottom-right mark's white hole
MARGIN = 18.0             # content starts here
QR_SIZE = 25.0
QR_TOP = 17.0
HEADER_BOTTOM = 54.0      # body starts here
FOOTER_HEIGHT = 16.0

BOX = 5.0                 # checkbox side: big enough for a pen
CELL_W, CELL_H = 5.5, 8.0  # comb cell for handwritten digits
LABEL_SIZE = 7.5
LABEL_H = 3.6
GAP_X, GAP_Y = 5.0, 3.5
OPTION_GAP = 3.5
SECTION_H = 6.5


def parse_langs(text: str) -> tuple[str, ...]:
    langs = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not 1 <= len(langs) <= 2 or any(lang not in LANGS for lang in langs) or len(set(langs)) != len(langs):
        raise BadInput(f"--lang {text!r} is not valid",
                       hint=f"give one or two of {', '.join(LANGS)}, e.g. --lang fr,nl")
    return langs


def label_text(label: dict[str, str], langs: tuple[str, ...]) -> str:
    return " / ".join(dict.fromkeys(label[lang] for lang in langs))


@dataclass
class PageLayout:
    template: str
    version: int
    page: int
    pages: int
    paper: str
    size_mm: tuple[float, float]
    items: list[tuple] = field(default_factory=list)
    fields: list[dict[str, Any]] = field(default_factory=list)

    def geometry(self) -> dict[str, Any]:
        """What a reader needs: page size and field boxes, mm from the top-left corner."""
        w, h = self.size_mm
        return {
            "template": self.template, "version": self.version, "page": self.page,
            "pages": self.pages, "page_size_mm": [w, h],
            "marks_mm": mark_boxes(self.size_mm), "qr_mm": qr_box(self.size_mm),
            "fields": self.fields,
        }

    def geometry_hash(self) -> str:
        blob = json.dumps(self.geometry(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def drawing_key(self) -> str:
        return hashlib.sha256(repr(self.items).encode()).hexdigest()


def mark_boxes(size_mm: tuple[float, float]) -> dict[str, list[float]]:
    """Corner marks as [x, y, w, h]; 'br' is the one with the hole."""
    w, h = size_mm
    far_x, far_y = w - MARK_INSET - MARK_SIZE, h - MARK_INSET - MARK_SIZE
    return {"tl": [MARK_INSET, MARK_INSET, MARK_SIZE, MARK_SIZE],
            "tr": [far_x, MARK_INSET, MARK_SIZE, MARK_SIZE],
            "bl": [MARK_INSET, far_y, MARK_SIZE, MARK_SIZE],
            "br": [far_x, far_y, MARK_SIZE, MARK_SIZE]}


def qr_box(size_mm: tuple[float, float]) -> list[float]:
    return [size_mm[0] - MARGIN - QR_SIZE, QR_TOP, QR_SIZE, QR_SIZE]


def _r(v: float) -> float:
    return round(v, 2)


class _Page:
    def __init__(self, layout: PageLayout):
        self.layout = layout

    def text(self, x, y, s, size=LABEL_SIZE, font=REGULAR, align="left"):
        self.layout.items.append(("text", _r(x), _r(y), size, font, s, align))

    def box(self, x, y, w, h, lw=0.35):
        self.layout.items.append(("rect", _r(x), _r(y), _r(w), _r(h), lw, None))

    def fill(self, x, y, w, h, gray):
        self.layout.items.append(("rect", _r(x), _r(y), _r(w), _r(h), 0, gray))

    def line(self, x1, y1, x2, y2, lw=0.3):
        self.layout.items.append(("line", _r(x1), _r(y1), _r(x2), _r(y2), lw))

    def geom(self, entry: dict[str, Any]):
        self.layout.fields.append(entry)


def _box_mm(x, y, w, h) -> list[float]:
    return [_r(x), _r(y), _r(w), _r(h)]


DATE_HINTS = {
    "en": {"date": "dd/mm/yyyy", "time": "hh:mm", "datetime": "dd/mm/yyyy hh:mm"},
    "fr": {"date": "jj/mm/aaaa", "time": "hh:mm", "datetime": "jj/mm/aaaa hh:mm"},
    "nl": {"date": "dd/mm/jjjj", "time": "uu:mm", "datetime": "dd/mm/jjjj uu:mm"},
}


class Placer:
    """Knows the size of each field type and how to draw it."""

    def __init__(self, langs: tuple[str, ...]):
        self.langs = langs

    def label(self, spec_label: dict[str, str]) -> str:
        return label_text(spec_label, self.langs)

    # --- sizes -----------------------------------------------------------------------------
    def comb_cells(self, spec: FieldSpec) -> list[tuple[str, int]]:
        return comb_groups(spec.type, spec.format, spec.digits, spec.decimals)

    def comb_width(self, spec: FieldSpec) -> float:
        groups = self.comb_cells(spec)
        return sum(n * CELL_W for _, n in groups) + 2.5 * (len(groups) - 1)

    def option_width(self, label: str) -> float:
        return BOX + 1.5 + text_width_mm(label, LABEL_SIZE)

    def field_label(self, spec: FieldSpec) -> str:
        hint = self.comb_hint(spec)
        return f"{self.label(spec.label)} ({hint})" if hint else self.label(spec.label)

    def size(self, spec: FieldSpec, avail: float) -> tuple[float, float]:
        label_w = text_width_mm(self.field_label(spec), LABEL_SIZE)
        if spec.width:
            width = avail * spec.width
        else:
            width = None
        t = spec.type
        if t == "checkbox":
            return (width or BOX + 1.5 + label_w), BOX + 0.5
        if t in ("choice", "multichoice"):
            widths = [self.option_width(self.label(o.label)) for o in spec.options]
            if width is None:
                width = min(avail, max(label_w, sum(widths) + OPTION_GAP * (len(widths) - 1)))
            rows = len(self._option_rows(spec, widths, width))
            return width, LABEL_H + rows * (BOX + 2.5) - 2.5
        if t in ("number", "datetime"):
            return (width or max(label_w, self.comb_width(spec))), LABEL_H + CELL_H
        if t == "text":
            return (width or avail), LABEL_H + spec.lines * 9.0
        if t == "initials":
            return (width or max(label_w, 20.0)), LABEL_H + 10.0
        return (width or max(label_w, 70.0)), LABEL_H + 15.0  # signature

    def comb_hint(self, spec: FieldSpec) -> str:
        if spec.type != "datetime":
            return ""
        return " / ".join(dict.fromkeys(DATE_HINTS[lang][spec.format] for lang in self.langs))

    def option_columns(self, spec: FieldSpec, widths: list[float], width: float) -> int:
        """Options per row for a choice with `columns`: fewer when the labels do not fit."""
        fit = int((width + OPTION_GAP) // (max(widths) + OPTION_GAP))
        return max(1, min(spec.columns, fit))

    def _option_rows(self, spec: FieldSpec, widths: list[float], width: float) -> list[list[int]]:
        rows: list[list[int]] = [[]]
        if spec.columns:
            per_row = self.option_columns(spec, widths, width)
            for i in range(len(widths)):
                if len(rows[-1]) == per_row:
                    rows.append([])
                rows[-1].append(i)
            return rows
        used = 0.0
        for i, w in enumerate(widths):
            if rows[-1] and used + OPTION_GAP + w > width:
                rows.append([])
                used = 0.0
            used += (OPTION_GAP if rows[-1] else 0) + w
            rows[-1].append(i)
        return rows

    # --- drawing ---------------------------------------------------------------------------
    def draw(self, page: _Page, spec: FieldSpec, name: str, x: float, y: float, w: float,
             show_label: bool = True, extra: dict[str, Any] | None = None) -> None:
        extra = extra or {}
        t = spec.type
        if t == "checkbox":
            page.box(x, y, BOX, BOX)
            page.text(x + BOX + 1.5, y + BOX - 1.3, self.label(spec.label))
            page.geom({"name": name, "type": t, "box_mm": _box_mm(x, y, BOX, BOX), **extra})
            return
        top = y
        if show_label:
            page.text(x, y + LABEL_H - 1.0, self.field_label(spec))
            top = y + LABEL_H
        if t in ("choice", "multichoice"):
            labels = [self.label(o.label) for o in spec.options]
            widths = [self.option_width(lab) for lab in labels]
            rows = self._option_rows(spec, widths, w)
            col_w = w / self.option_columns(spec, widths, w) if spec.columns else None
            options = []
            for r, row in enumerate(rows):
                ox = x
                oy = top + 0.5 + r * (BOX + 2.5)
                for i in row:
                    page.box(ox, oy, BOX, BOX)
                    page.text(ox + BOX + 1.5, oy + BOX - 1.3, labels[i])
                    options.append({"value": spec.options[i].value, "box_mm": _box_mm(ox, oy, BOX, BOX)})
                    ox += col_w if col_w else widths[i] + OPTION_GAP
            page.geom({"name": name, "type": t, "options": options, **extra})
        elif t in ("number", "datetime"):
            cx = x
            cells = []
            for sep, count in self.comb_cells(spec):
                if cx > x:
                    if sep.strip():
                        page.text(cx + 1.25, top + CELL_H - 1.5, sep, 9, BOLD, "center")
                    cx += 2.5
                for _ in range(count):
                    page.box(cx, top, CELL_W, CELL_H, 0.3)
                    cells.append(_box_mm(cx, top, CELL_W, CELL_H))
                    cx += CELL_W
            entry = {"name": name, "type": t, "box_mm": _box_mm(x, top, cx - x, CELL_H), "cells_mm": cells}
            if t == "datetime":
                entry["format"] = spec.format
            else:
                entry["digits"], entry["decimals"] = spec.digits, spec.decimals
            page.geom({**entry, **extra})
        elif t == "text":
            h = spec.lines * 9.0
            page.box(x, top, w, h, 0.3)
            for i in range(1, spec.lines):
                page.line(x + 1, top + i * 9.0, x + w - 1, top + i * 9.0, 0.15)
            page.geom({"name": name, "type": t, "box_mm": _box_mm(x, top, w, h), "lines": spec.lines, **extra})
        else:
            h = 10.0 if t == "initials" else 15.0
            page.box(x, top, w, h, 0.3)
            page.geom({"name": name, "type": t, "box_mm": _box_mm(x, top, w, h), **extra})


class _Flow:
    """Fills pages top to bottom; opens a new page when the next block does not fit."""

    def __init__(self, template: Template, paper: str, langs: tuple[str, ...]):
        self.template, self.paper, self.langs = template, paper, langs
        self.size = PAPER_SIZES_MM[paper]
        self.left, self.right = MARGIN, self.size[0] - MARGIN
        self.bottom = self.size[1] - MARGIN - FOOTER_HEIGHT
        self.pages: list[PageLayout] = []
        self.new_page()

    @property
    def width(self) -> float:
        return self.right - self.left

    def new_page(self) -> None:
        self.layout = PageLayout(self.template.name, self.template.version, len(self.pages) + 1, 0,
                                 self.paper, self.size)
        self.pages.append(self.layout)
        self.page = _Page(self.layout)
        self.y = HEADER_BOTTOM

    def ensure(self, height: float) -> None:
        if self.y + height > self.bottom:
            if self.y == HEADER_BOTTOM:
                raise BadInput(f"template {self.template.ref}: a block of {height:.0f} mm does not fit on a page")
            self.new_page()

    def section_title(self, title: dict[str, str], following: float) -> None:
        self.ensure(SECTION_H + following)
        self.page.fill(self.left, self.y, self.width, 5.2, 0.88)
        self.page.text(self.left + 1.5, self.y + 3.9, label_text(title, self.langs), 8.5, BOLD)
        self.y += SECTION_H


def _flow_fields(flow: _Flow, placer: Placer, section: Section, prefix: str = "") -> None:
    rows: list[list[tuple[FieldSpec, float, float]]] = [[]]
    used = 0.0
    for spec in section.fields:
        w, h = placer.size(spec, flow.width)
        w = min(w, flow.width)
        if rows[-1] and used + GAP_X + w > flow.width:
            rows.append([])
            used = 0.0
        used += (GAP_X if rows[-1] else 0) + w
        rows[-1].append((spec, w, h))
    first = max(h for _, _, h in rows[0])
    flow.section_title(section.title, first)
    for row in rows:
        height = max(h for _, _, h in row)
        flow.ensure(height)
        x = flow.left
        for spec, w, _ in row:
            placer.draw(flow.page, spec, prefix + spec.name, x, flow.y, w)
            x += w + GAP_X
        flow.y += height + GAP_Y


GRID_OPTION_W = 12.0


def _grid_option_columns(cell_w: float) -> int:
    return max(1, int((cell_w - 3) // GRID_OPTION_W))


def _grid_row_height(spec: FieldSpec, cell_w: float) -> float:
    if spec.type == "choice":
        rows = -(-len(spec.options) // _grid_option_columns(cell_w))
        return rows * (BOX + 2.0) + 2.0
    if spec.type == "initials":
        return 11.0
    if spec.type == "checkbox":
        return BOX + 3.0
    return CELL_H + 3.0


def _flow_grid(flow: _Flow, placer: Placer, section: Section) -> None:
    grid = section.grid
    label_w = 42.0
    cell_w = (flow.width - label_w) / grid.per_band
    band_h = 7.0 + sum(_grid_row_height(r, cell_w) for r in grid.rows)
    for band_start in range(0, grid.columns, grid.per_band):
        if band_start == 0:
            flow.section_title(section.title, band_h)
        else:
            flow.ensure(band_h)
        page, y0 = flow.page, flow.y
        cols = range(band_start, min(grid.columns, band_start + grid.per_band))
        page.text(flow.left + 1, y0 + 4.5, placer.label(grid.column_label), LABEL_SIZE, BOLD)
        for j, col in enumerate(cols):
            cx = flow.left + label_w + j * cell_w
            page.text(cx + cell_w / 2, y0 + 4.5, f"#{col + 1}", LABEL_SIZE, BOLD, "center")
        y = y0 + 7.0
        for spec in grid.rows:
            rh = _grid_row_height(spec, cell_w)
            page.line(flow.left, y, flow.right, y, 0.2)
            for k, lang in enumerate(dict.fromkeys(spec.label[lang] for lang in placer.langs)):
                page.text(flow.left + 1, y + 3.6 + k * 3.0, _clip(lang, label_w - 2, 6.5), 6.5)
            for j, col in enumerate(cols):
                cx = flow.left + label_w + j * cell_w + 1.5
                name = f"c{col + 1}.{spec.name}"
                if spec.type == "choice":
                    options = []
                    per_row = _grid_option_columns(cell_w)
                    for k, opt in enumerate(spec.options):
                        r, c = divmod(k, per_row)
                        ox, oy = cx + c * GRID_OPTION_W, y + 2.0 + r * (BOX + 2.0)
                        page.box(ox, oy, BOX, BOX)
                        page.text(ox + BOX + 1.0, oy + BOX - 1.2, placer.label(opt.label), 7.5, BOLD)
                        options.append({"value": opt.value, "box_mm": _box_mm(ox, oy, BOX, BOX)})
                    page.geom({"name": name, "type": "choice", "options": options, "column": col + 1})
                elif spec.type == "initials":
                    page.box(cx, y + 1.5, cell_w - 3, 8.0, 0.3)
                    page.geom({"name": name, "type": "initials",
                               "box_mm": _box_mm(cx, y + 1.5, cell_w - 3, 8.0), "column": col + 1})
                elif spec.type == "checkbox":
                    page.box(cx, y + 1.5, BOX, BOX)
                    page.geom({"name": name, "type": "checkbox", "box_mm": _box_mm(cx, y + 1.5, BOX, BOX),
                               "column": col + 1})
                else:
                    placer.draw(page, spec, name, cx, y + 1.5, cell_w - 3, show_label=False,
                                extra={"column": col + 1})
            y += rh
        page.line(flow.left, y, flow.right, y, 0.2)
        for j in range(len(cols) + 1):
            x = flow.left + label_w + j * cell_w
            page.line(x, y0, x, y, 0.2)
        flow.y = y + GAP_Y + 2


def comb_groups(type: str, format: str | None = None, digits: int = 0, decimals: int = 0
                ) -> list[tuple[str, int]]:
    """Groups of comb cells with the separator printed before each group (the printed sheet and the
    digit suggestions both follow it; a field's geometry carries type, format, digits, decimals)."""
    if type == "number":
        groups = [("", digits)]
        if decimals:
            groups.append((".", decimals))
        return groups
    if format == "date":
        return [("", 2), ("/", 2), ("/", 4)]
    if format == "time":
        return [("", 2), (":", 2)]
    return [("", 2), ("/", 2), ("/", 4), (" ", 2), (":", 2)]


def _slot_block(placer: Placer, page: _Page, meds: Medications, x: float, y: float, w: float,
                prefix: str, caption: str | None, status: bool, extra: dict) -> None:
    """One administration slot: caption (scheduled time), status marks, actual time, initials."""
    langs = placer.langs
    if caption:
        page.text(x, y + 3.0, caption, 8, BOLD)
    sy = y + 4.0
    if status:
        options = []
        ox = x
        for opt in meds.status.options:
            short = "/".join(dict.fromkeys(opt.label[lang] for lang in langs))
            page.box(ox, sy, BOX, BOX)
            page.text(ox + BOX + 1.0, sy + BOX - 1.2, short, 7.5, BOLD)
            options.append({"value": opt.value, "box_mm": _box_mm(ox, sy, BOX, BOX)})
            ox += (w - 2) / len(meds.status.options)
        page.geom({"name": f"{prefix}.status", "type": "choice", "options": options, **extra})
    else:
        page.box(x, sy, BOX, BOX)
        page.text(x + BOX + 1, sy + BOX - 1.3, label_text(meds.labels["given"], langs), 6.5)
        page.geom({"name": f"{prefix}.given", "type": "checkbox", "box_mm": _box_mm(x, sy, BOX, BOX), **extra})
    ty = sy + BOX + 2.0
    time_spec = FieldSpec("time", "datetime", meds.labels["time"], format="time")
    placer.draw(page, time_spec, f"{prefix}.time", x, ty, 0, show_label=False, extra=extra)
    ix = x + placer.comb_width(time_spec) + 2.0
    iw = max(8.0, w - (ix - x) - 2.0)
    page.box(ix, ty, iw, CELL_H, 0.3)
    page.geom({"name": f"{prefix}.initials", "type": "initials", "box_mm": _box_mm(ix, ty, iw, CELL_H), **extra})


SLOT_H = 4.0 + BOX + 2.0 + CELL_H + 2.5


def _flow_medications(flow: _Flow, placer: Placer, section: Section, context: dict[str, Any]) -> None:
    meds = section.medications
    langs = placer.langs
    panel_w = 42.0
    slot_w = (flow.width - panel_w - 2) / meds.slots_per_line

    def row(kind: str, index: int, info: list[str], slot_captions: list[str | None],
            order_field: bool, status: bool, med_ref: int | None) -> None:
        lines = max(1, -(-len(slot_captions) // meds.slots_per_line))
        height = max(lines * SLOT_H, 22.0 if order_field else 14.0) + 2.0
        flow.ensure(height)
        page, y0 = flow.page, flow.y
        page.line(flow.left, y0, flow.right, y0, 0.4)
        prefix = f"{kind}{index}"
        extra = {"row": prefix}
        if med_ref is not None:
            extra["medication"] = med_ref
        if order_field:
            spec = FieldSpec("order", "text", meds.labels["order"], lines=2)
            placer.draw(page, spec, f"{prefix}.order", flow.left, y0 + 1.0, panel_w - 3, extra=extra)
        else:
            ty = y0 + 4.0
            for k, text in enumerate(info):
                page.text(flow.left + 1, ty, text, 8.5 if k == 0 else 7, BOLD if k == 0 else REGULAR)
                ty += 3.8
        for s, caption in enumerate(slot_captions):
            line, col = divmod(s, meds.slots_per_line)
            sx = flow.left + panel_w + col * slot_w
            sy = y0 + 1.0 + line * SLOT_H
            slot_extra = dict(extra)
            if caption and kind == "m":
                slot_extra["scheduled"] = caption
            _slot_block(placer, page, meds, sx, sy, slot_w, f"{prefix}.s{s + 1}", caption, status, slot_extra)
        flow.y = y0 + height

    scheduled = [m for m in context.get("medications", []) if not m.get("prn")]
    prn = [m for m in context.get("medications", []) if m.get("prn")]
    flow.section_title(section.title, SLOT_H + 4 + 8)
    for lang in langs:
        flow.page.text(flow.left + 1, flow.y + 2.5, meds.labels["legend"][lang], 7)
        flow.y += 3.4
    flow.y += 1.0
    for i, med in enumerate(scheduled, 1):
        times = [t for t in (med.get("scheduled_times") or "").split(";") if t.strip()][: meds.max_slots]
        info = [_clip(med["medication"], panel_w - 2, 8.5, BOLD),
                _clip(" ".join(p for p in (med.get("dose"), med.get("route")) if p), panel_w - 2, 7),
                _clip(med.get("frequency") or "", panel_w - 2, 7)]
        row("m", i, info, times or [None] * meds.slots_per_line, False, True, med.get("line"))
    prn_meds = prn + [None] * max(0, meds.prn_rows - len(prn))
    if prn_meds:
        flow.section_title({lang: meds.labels["prn"][lang] for lang in LANGS}, SLOT_H + 4)
        for i, med in enumerate(prn_meds, 1):
            if med:
                info = [_clip(med["medication"], panel_w - 2, 8.5, BOLD),
                        _clip(" ".join(p for p in (med.get("dose"), med.get("route")) if p), panel_w - 2, 7),
                        _clip(med.get("frequency") or "PRN", panel_w - 2, 7)]
                row("p", i, info, [None] * meds.prn_slots, False, False, med.get("line"))
            else:
                row("p", i, [], [None] * meds.prn_slots, True, False, None)
    blank = meds.blank_rows_stock if context.get("blank_stock") else meds.blank_rows
    if blank:
        flow.section_title({lang: meds.labels["new_order"][lang] for lang in LANGS}, SLOT_H + 4)
        for i in range(1, blank + 1):
            row("n", i, [], [None] * meds.slots_per_line, True, True, None)


def _clip(text: str, width: float, size: float, font: str = REGULAR) -> str:
    if text_width_mm(text, size, font) <= width:
        return text
    while text and text_width_mm(text + "…", size, font) > width:
        text = text[:-1]
    return text + "…"


def _furniture(layout: PageLayout, template: Template, langs: tuple[str, ...]) -> None:
    """Corner marks, title, footer with the marking convention. Same on every sheet of a layout."""
    page = _Page(layout)
    w, h = layout.size_mm
    marks = mark_boxes(layout.size_mm)
    for key, (mx, my, mw, mh) in marks.items():
        page.fill(mx, my, mw, mh, 0.0)
        if key == "br":
            off = (MARK_SIZE - MARK_HOLE) / 2
            page.fill(mx + off, my + off, MARK_HOLE, MARK_HOLE, 1.0)
    title = label_text(template.title, langs)
    room = w - 2 * MARGIN - QR_SIZE - 6
    size = 12.0
    while size > 9 and text_width_mm(title, size, BOLD) > room:
        size -= 0.5
    page.text(MARGIN, MARGIN + 3.5, _clip(title, room, size, BOLD), size, BOLD)
    fy = h - MARGIN - 8.5
    page.line(MARGIN, fy - 4.5, w - MARGIN, fy - 4.5, 0.2)
    # Marking convention, drawn: a ticked box, a crossed box, a filled box.
    x = MARGIN
    page.box(x, fy - 3.2, 3.8, 3.8, 0.3)
    page.line(x + 0.6, fy - 1.4, x + 1.6, fy - 0.2, 0.5)
    page.line(x + 1.6, fy - 0.2, x + 3.4, fy - 3.0, 0.5)
    x += 4.8
    page.box(x, fy - 3.2, 3.8, 3.8, 0.3)
    page.line(x + 0.5, fy - 2.7, x + 3.3, fy + 0.1, 0.5)
    page.line(x + 3.3, fy - 2.7, x + 0.5, fy + 0.1, 0.5)
    page.text(x + 5.5, fy, " / ".join(MARKED[lang] for lang in langs), 6.5)
    page.fill(MARGIN + 4.8, fy + 1.2, 3.8, 3.8, 0.0)
    page.text(x + 5.5, fy + 4.3, " / ".join(CANCELLED[lang] for lang in langs), 6.5)
    page.text(MARGIN, fy + 8.3, " / ".join(WRITE[lang] for lang in langs), 6.5)
    page.text(w - MARGIN, fy + 8.3, f"{template.ref} · {layout.page}/{layout.pages}", 6.5, REGULAR, "right")


MARKED = {"en": "tick or cross = marked", "fr": "coche ou croix = marqué", "nl": "vinkje of kruis = aangeduid"}
CANCELLED = {"en": "filled box = cancelled, not marked", "fr": "case noircie = annulée, non marquée",
             "nl": "volgekleurd vakje = geannuleerd, niet aangeduid"}
WRITE = {"en": "Write inside the boxes, one digit per box, in black or blue pen.",
         "fr": "Écrivez dans les cases, un chiffre par case, au stylo noir ou bleu.",
         "nl": "Schrijf in de vakjes, één cijfer per vakje, met zwarte of blauwe pen."}


BLANK_NAME = FieldSpec("patient_name", "text", {"en": "Patient name (LAST, first)", "fr": "Nom du patient (NOM, prénom)",
                                                 "nl": "Naam patiënt (NAAM, voornaam)"}, width=0.0)
BLANK_BIRTH = FieldSpec("patient_birth_date", "datetime", {"en": "Date of birth", "fr": "Date de naissance",
                                                           "nl": "Geboortedatum"}, format="date")


def _blank_identity_fields(layout: PageLayout, placer: Placer) -> None:
    """Blank stock is not bound to a known patient: the nurse writes name and birth date in the
    header, so the downtime MRN can later be linked to the real one."""
    page = _Page(layout)
    y = MARGIN + 13.0
    name_w = 88.0
    placer.draw(page, BLANK_NAME, BLANK_NAME.name, MARGIN, y, name_w)
    placer.draw(page, BLANK_BIRTH, BLANK_BIRTH.name, MARGIN + name_w + 5, y, placer.comb_width(BLANK_BIRTH))


def layout_form(template: Template, paper: str = "a4", langs: tuple[str, ...] = ("en",),
                context: dict[str, Any] | None = None) -> list[PageLayout]:
    """Lay out one form; context carries pre-printed data that changes the layout (MAR rows)."""
    if paper not in PAPER_SIZES_MM:
        raise BadInput(f"unknown paper size {paper!r}", hint=f"use one of {', '.join(PAPER_SIZES_MM)}")
    context = context or {}
    flow = _Flow(template, paper, langs)
    placer = Placer(langs)
    for section in template.sections:
        if section.fields:
            _flow_fields(flow, placer, section)
        elif section.grid:
            _flow_grid(flow, placer, section)
        else:
            _flow_medications(flow, placer, section, context)
    if context.get("blank_stock") and template.patient_bound and "last_name" not in template.field_names():
        _blank_identity_fields(flow.pages[0], placer)
    for layout in flow.pages:
        layout.pages = len(flow.pages)
    for layout in flow.pages:
        _furniture(layout, template, langs)
    return flow.pages
