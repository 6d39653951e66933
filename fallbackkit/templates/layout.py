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
from collections.abc import Callable
from typing import Any

from ..errors import BadInput
from ..fonts import BOLD, REGULAR, text_width_mm
from .contract import BOX, LINE_PITCH, MARK_HOLE, MARK_INSET, MARK_SIZE, QR_SIZE
from .model import LANGS, FieldSpec, Medications, Option, Section, Template, default_transcribe

PAPER_SIZES_MM = {"a4": (210.0, 297.0), "letter": (215.9, 279.4)}

# Page furniture, mm. What the scan engine relies on (marks, hole, QR and box sizes, line pitch) is
# in contract.py, shared with scan/.
MARGIN = 18.0             # content starts here
QR_TOP = 17.0
HEADER_BOTTOM = 54.0      # body starts here (under the QR zone), or lower for a tall header:
HEADER_MAX = 64.0         # a two-line title and a wrapped patient header end above this
FOOTER_HEIGHT = 16.0

CELL_W, CELL_H = 5.5, 8.0  # comb cell for handwritten digits
LABEL_SIZE = 7.5
LABEL_H = 3.6
GAP_X, GAP_Y = 5.0, 3.5
OPTION_GAP = 3.5
SECTION_H = 6.5
SIGNATURE_H = 13.0


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
    header_top: float = MARGIN + 5.5  # where the per-sheet header starts, under the (wrapped) title

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


def qr_zone(size_mm: tuple[float, float]) -> list[float]:
    """The QR code with its quiet zone and the sheet id and page printed under it: no other ink."""
    x, y, s, _ = qr_box(size_mm)
    return [x - 3.0, y - 3.0, s + 6.0, s + 3.0 + 10.0]


def header_right(size_mm: tuple[float, float]) -> float:
    """The right edge of the header column: header text wraps here, clear of the QR zone."""
    return qr_zone(size_mm)[0] - 1.0


def wrap_text(text: str, width: float, size: float, font: str = REGULAR, max_lines: int | None = None,
              first_width: float | None = None, suffix: str = "") -> tuple[list[str], bool]:
    """Break text into lines no wider than width (first line: first_width), at spaces, or inside a
    word too long for a line. With max_lines, the last kept line ends with suffix (or an ellipsis)
    and True is returned when text was left out. Parts joined by " · " (the header's "MRN … ·
    born … · Ward 3B") break between the parts when that takes no more lines; a "·" never starts a line."""
    lines = _wrap_words(text, width, size, font, first_width)
    groups = text.split(" · ")
    if len(groups) > 1:
        by_part = _wrap_parts(groups, width, size, font, first_width)
        if by_part is not None and len(by_part) <= len(lines):
            lines = by_part
    if max_lines is None or len(lines) <= max_lines:
        return lines, False
    kept = lines[:max_lines]
    last_room = first_width if (first_width is not None and max_lines == 1) else width
    if suffix:
        kept[-1] = _clip(kept[-1] + " " + suffix, last_room, size, font, keep_end=suffix)
    else:
        kept[-1] = _clip(kept[-1] + " …", last_room, size, font)
    return kept, True


def _wrap_parts(groups: list[str], width: float, size: float, font: str,
                first_width: float | None) -> list[str] | None:
    """Whole parts a line, the separator ending a line where it fits; None when a part is wider than a line."""
    lines: list[str] = []
    current = ""
    for group in groups:
        room = first_width if (first_width is not None and not lines) else width
        if text_width_mm(group, size, font) > min(room, width):
            return None
        candidate = f"{current} · {group}" if current else group
        if text_width_mm(candidate, size, font) <= room:
            current = candidate
            continue
        lines.append(current + " ·" if text_width_mm(current + " ·", size, font) <= room else current)
        current = group
    return lines + [current]


def _wrap_words(text: str, width: float, size: float, font: str, first_width: float | None) -> list[str]:
    lines: list[str] = []
    current = ""

    def room() -> float:
        return first_width if (first_width is not None and not lines) else width

    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if text_width_mm(candidate, size, font) <= room():
            current = candidate
            continue
        if current and word == "·":
            # a separator ends its line rather than start the next one; where it does not fit,
            # the line break separates ("… E2000001" / "Unité 3B …", never "· Unité 3B")
            if text_width_mm(current + " ·", size, font) <= room():
                current += " ·"
            else:
                lines.append(current)
                current = ""
            continue
        if current:
            lines.append(current)
            current = ""
        while text_width_mm(word, size, font) > room():
            cut = len(word)
            while cut > 1 and text_width_mm(word[:cut], size, font) > room():
                cut -= 1
            joint = max(word.rfind("/", 0, cut), word.rfind("-", 0, cut))
            if joint > 0:  # "Amoxicillin/" + "clavulanic", not "Amoxicillin/clavulan" + "ic"
                cut = joint + 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines


@dataclass
class HeaderLine:
    """One line of a sheet's per-sheet header; wraps inside the header column. An alert line
    (allergies) is drawn in a highlighted box with a bold label."""
    text: str
    size: float = 9.0
    bold: bool = False
    alert_label: str | None = None
    max_lines: int | None = None


def line_pitch(size: float) -> float:
    return size * 0.42 + 1.2


def place_header(size_mm: tuple[float, float], top: float, lines: list[HeaderLine]) -> list[tuple]:
    """Drawing items for a sheet's header: every line wraps inside the header column, and the
    type gets smaller (to 75 %) rather than run into the body."""
    return _fit_header(size_mm, top, lines)[0]


def header_bottom(size_mm: tuple[float, float], top: float, lines: list[HeaderLine]) -> float:
    """Where the placed header's last line ends (mm from the top)."""
    return _fit_header(size_mm, top, lines)[1]


def header_body_top(size_mm: tuple[float, float], top: float, lines: list[HeaderLine]) -> float:
    """Where the body must start under this header: HEADER_BOTTOM, or lower (whole mm) when the
    header is taller; layout_form takes it as context 'body_top'."""
    bottom = _fit_header(size_mm, top, lines)[1]
    return max(HEADER_BOTTOM, float(-(-(bottom + 2.0) // 1)))


def _fit_header(size_mm, top, lines) -> tuple[list[tuple], float]:
    items: list[tuple] = []
    bottom = top
    for scale in (1.0, 0.95, 0.9, 0.85, 0.8, 0.75):
        scaled = [HeaderLine(ln.text, round(ln.size * scale, 2), ln.bold, ln.alert_label, ln.max_lines)
                  for ln in lines]
        items, bottom = _place_header(size_mm, top, scaled)
        if bottom <= HEADER_MAX - 2.0:
            break
    return items, bottom


def _place_header(size_mm: tuple[float, float], top: float, lines: list[HeaderLine]) -> tuple[list[tuple], float]:
    left, right = MARGIN, header_right(size_mm)
    items: list[tuple] = []
    y = top
    for line in lines:
        font = BOLD if line.bold else REGULAR
        if line.alert_label is not None:
            label = line.alert_label + ":"
            label_w = text_width_mm(label + " ", line.size, BOLD)
            inner = right - left - 3.0
            wrapped, _ = wrap_text(line.text, inner, line.size, font, line.max_lines, inner - label_w)
            pitch = line_pitch(line.size) - 0.6
            height = len(wrapped) * pitch + 1.6
            items.append(("rect", _r(left), _r(y), _r(right - left), _r(height), 0, 0.86))
            items.append(("rect", _r(left), _r(y), _r(right - left), _r(height), 0.8, None))
            by = y + 0.6 + line.size * 0.3
            items.append(("text", _r(left + 1.5), _r(by), line.size, BOLD, label, "left"))
            for k, text in enumerate(wrapped):
                x = left + 1.5 + (label_w if k == 0 else 0)
                items.append(("text", _r(x), _r(by + k * pitch), line.size, font, text, "left"))
            y += height + 1.2
            continue
        wrapped, _ = wrap_text(line.text, right - left, line.size, font, line.max_lines)
        for text in wrapped:
            y += line.size * 0.3
            items.append(("text", _r(left), _r(y), line.size, font, text, "left"))
            y += line_pitch(line.size) - line.size * 0.3
    return items, y


def text_box(item: tuple) -> list[float]:
    """The box [x0, y0, x1, y1] (mm) a drawn text item covers: for checks that text stays clear
    of the QR zone, the marks and the margins."""
    _, x, y, size, font, text, align = item
    w = text_width_mm(text, size, font)
    x0 = x - w if align == "right" else x - w / 2 if align == "center" else x
    return [x0, y - size * 0.3528 * 0.76, x0 + w, y + size * 0.3528 * 0.24]


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
            return (width or avail), LABEL_H + spec.lines * LINE_PITCH
        if t == "initials":
            return (width or max(label_w, 20.0)), LABEL_H + 10.0
        return (width or max(label_w, 60.0)), LABEL_H + SIGNATURE_H  # signature: 60 x 13 mm

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
        extra = dict(extra or {})
        if spec.transcribe != default_transcribe(spec.type):
            # how the reader decides the field (scan/read.py); recorded only when it is not the
            # type's default, so the geometry of forms that keep the defaults stays as it was
            extra["transcribe"] = spec.transcribe
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
            h = spec.lines * LINE_PITCH
            page.box(x, top, w, h, 0.3)
            for i in range(1, spec.lines):
                page.line(x + 1, top + i * LINE_PITCH, x + w - 1, top + i * LINE_PITCH, 0.15)
            page.geom({"name": name, "type": t, "box_mm": _box_mm(x, top, w, h), "lines": spec.lines, **extra})
        else:
            h = 10.0 if t == "initials" else SIGNATURE_H
            page.box(x, top, w, h, 0.3)
            page.geom({"name": name, "type": t, "box_mm": _box_mm(x, top, w, h), **extra})


CONTINUED = {"en": "continued", "fr": "suite", "nl": "vervolg"}
SPACINGS = ((GAP_Y, SECTION_H), (1.8, 6.0))  # normal; compact, tried when a form would spill over
DENSE = (1.0, 4.6)  # a MAR only: tried last, when compact spacing still needs another sheet


class _Flow:
    """Fills pages top to bottom; opens a new page when the next block does not fit. A section that
    must break goes on with its heading repeated, marked "(continued)"."""

    def __init__(self, template: Template, paper: str, langs: tuple[str, ...],
                 spacing: tuple[float, float] = SPACINGS[0], top: float = HEADER_BOTTOM):
        self.template, self.paper, self.langs, self.top = template, paper, langs, top
        self.gap_y, self.section_h = spacing
        self.dense = spacing == DENSE
        # a two-sided MAR (layout_form's last try): every medication row on the front, the rest on
        # the back (page 2, printed on the reverse); codes_back: the codes' legend goes there too
        self.two_sided = False
        self.codes_back = False
        self.size = PAPER_SIZES_MM[paper]
        self.left, self.right = MARGIN, self.size[0] - MARGIN
        self.bottom = self.size[1] - MARGIN - FOOTER_HEIGHT
        self.pages: list[PageLayout] = []
        self.title: dict[str, str] | None = None
        self.title_of_legend: dict[str, str] | None = None
        self.new_page()

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def page_room(self) -> float:
        return self.bottom - self.top

    def new_page(self) -> None:
        self.layout = PageLayout(self.template.name, self.template.version, len(self.pages) + 1, 0,
                                 self.paper, self.size)
        self.pages.append(self.layout)
        self.page = _Page(self.layout)
        self.y = self.top

    def ensure(self, height: float) -> None:
        if self.y + height > self.bottom:
            if self.y == self.top or height + (self.section_h if self.title else 0) > self.page_room:
                raise BadInput(f"template {self.template.ref}: a block of {height:.0f} mm does not fit on a page")
            self.new_page()
            if self.title is not None:
                self._heading(self.title, continued=True)

    def _heading(self, title: dict[str, str], continued: bool = False) -> None:
        text = label_text(title, self.langs)
        if continued:
            text += f" ({' / '.join(dict.fromkeys(CONTINUED[lang] for lang in self.langs))})"
        bar = min(5.2, self.section_h - 0.6)  # the dense MAR's bars are a little lower
        size = 8.5 if bar >= 5.2 else 7.5
        self.page.fill(self.left, self.y, self.width, bar, 0.88)
        self.page.text(self.left + 1.5, self.y + bar - 1.3, _clip(text, self.width - 3, size, BOLD), size, BOLD)
        self.y += self.section_h

    @property
    def bar_note_y(self) -> float:
        """Baseline of a note in the last heading bar (right side), from the flow's y after it."""
        return -self.section_h + (3.8 if not self.dense else self.section_h - 0.6 - 1.2)

    def section_title(self, title: dict[str, str], following: float, whole: float | None = None) -> None:
        """A section heading with at least `following` mm under it; the whole section (`whole` mm)
        moves to the next page when it fits there but not here."""
        self.title = None
        if whole is not None and self.y + self.section_h + whole > self.bottom \
                and self.section_h + whole <= self.page_room and self.y > self.top:
            self.new_page()
        self.ensure(self.section_h + following)
        self._heading(title)
        self.title = title


def _inline_title(flow: _Flow, placer: Placer, section: Section) -> float:
    """A dense flow (the MAR's last try at one sheet) prints a one-row section's title left of its
    fields instead of in a bar; the width it takes, or 0 when the section keeps its bar."""
    if not flow.dense:
        return 0.0
    title_w = max(text_width_mm(section.title[lang], 8.0, BOLD) for lang in placer.langs) + 3.0
    rows = _field_rows(flow.width - title_w, placer, section)
    return title_w if len(rows) == 1 else 0.0


def _flow_fields(flow: _Flow, placer: Placer, section: Section, prefix: str = "") -> None:
    inline = _inline_title(flow, placer, section)
    rows = _field_rows(flow.width - inline, placer, section)
    heights = [max(h for _, _, h in row) for row in rows]
    whole = sum(heights) + flow.gap_y * (len(rows) - 1)
    if inline:
        flow.title = None
        flow.ensure(heights[0])
        for k, lang in enumerate(dict.fromkeys(section.title[lang] for lang in placer.langs)):
            flow.page.text(flow.left, flow.y + LABEL_H + 3.0 + k * 3.4, lang, 8.0, BOLD)
    else:
        flow.section_title(section.title, heights[0], whole)
    for row, height in zip(rows, heights):
        flow.ensure(height)
        x = flow.left + inline
        for spec, w, _ in row:
            placer.draw(flow.page, spec, prefix + spec.name, x, flow.y, w)
            x += w + GAP_X
        flow.y += height + flow.gap_y


def _field_rows(width: float, placer: Placer, section: Section) -> list[list[tuple[FieldSpec, float, float]]]:
    rows: list[list[tuple[FieldSpec, float, float]]] = [[]]
    used = 0.0
    for spec in section.fields:
        w, h = placer.size(spec, width)
        w = min(w, width)
        if rows[-1] and used + GAP_X + w > width:
            rows.append([])
            used = 0.0
        used += (GAP_X if rows[-1] else 0) + w
        rows[-1].append((spec, w, h))
    return rows


def _fields_height(flow: _Flow, placer: Placer, section: Section) -> float:
    inline = _inline_title(flow, placer, section)
    heights = [max(h for _, _, h in row) for row in _field_rows(flow.width - inline, placer, section)]
    return (0.0 if inline else flow.section_h) + sum(heights) + flow.gap_y * len(heights)


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
            label_lines = [line for text in dict.fromkeys(spec.label[lang] for lang in placer.langs)
                           for line in wrap_text(text, label_w - 2, 6.5)[0]]
            fit = max(1, int((rh - 1.0) // 3.0))
            if len(label_lines) > fit:
                label_lines = label_lines[:fit - 1] + [_clip(" ".join(label_lines[fit - 1:]), label_w - 2, 6.5)]
            for k, text in enumerate(label_lines):
                page.text(flow.left + 1, y + 3.6 + k * 3.0, text, 6.5)
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
        flow.y = y + flow.gap_y + 2


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
                prefix: str, caption: str | None, status: bool, extra: dict, dense: bool = False) -> None:
    """One administration slot: caption (scheduled time), status marks, actual time, initials and,
    when the template has held codes, the box for the code of why a dose was held. A PRN slot
    (no status marks) has a "given" box, and under its time the reason and the effect."""
    langs = placer.langs
    # 2 mm clear of the row line and of the time boxes (the reader looks for the outline); 1.5 mm on
    # a dense MAR, still clear of the reader's 0.7 mm outline search plus its 0.8 mm spill strips
    top, gap = SLOT_DENSE if dense else SLOT_NORMAL
    sy = y + top
    sx = x
    if caption:
        # the scheduled time sits left of the marks, on their line: a compact slot, so that a
        # day's MAR for up to 8 medications is one sheet
        page.text(x, sy + BOX - 1.2, caption, 7.5, BOLD)
        sx = x + CAPTION_W
    if status:
        options = []
        ox = sx
        pitch = (w - 2 - (sx - x)) / len(meds.status.options)
        shorts = status_letters(meds, langs)
        # each mark's letter(s) end 1 mm before the next box (the reader checks a ring around it)
        room = pitch - BOX - 1.0 - 1.0
        size = 7.5
        while size > 5.5 and max(text_width_mm(t, size, BOLD) for t in shorts) > room:
            size -= 0.25
        for opt, short in zip(meds.status.options, shorts):
            page.box(ox, sy, BOX, BOX)
            page.text(ox + BOX + 1.0, sy + BOX - 1.2, short, size, BOLD)
            options.append({"value": opt.value, "box_mm": _box_mm(ox, sy, BOX, BOX)})
            ox += pitch
        page.geom({"name": f"{prefix}.status", "type": "choice", "options": options, **extra})
    else:
        page.box(x, sy, BOX, BOX)
        page.geom({"name": f"{prefix}.given", "type": "checkbox", "box_mm": _box_mm(x, sy, BOX, BOX), **extra})
        effect = meds.prn_effect
        marks_w = ((len(effect.options) - 1) * EFFECT_PITCH + BOX + 0.8
                   + max(text_width_mm(placer.label(o.label), 7.5, BOLD) for o in effect.options)) if effect else 0.0
        ex = x + w - 2.5 - marks_w  # the last mark's sign ends 2.5 mm before the next slot's box
        given = label_text(meds.labels["given"], langs)
        if text_width_mm(given, 6.5) <= ex - x - BOX - 3.0:
            page.text(x + BOX + 1, sy + BOX - 1.3, given, 6.5)
        else:  # the given mark's letter(s), as on the scheduled rows
            page.text(x + BOX + 1, sy + BOX - 1.2, status_letters(meds, langs)[0], 7.5, BOLD)
        if effect is not None:
            options = []
            for k, opt in enumerate(effect.options):
                ox = ex + k * EFFECT_PITCH
                page.box(ox, sy, BOX, BOX)
                page.text(ox + BOX + 0.8, sy + BOX - 1.2, placer.label(opt.label), 7.5, BOLD)
                options.append({"value": opt.value, "box_mm": _box_mm(ox, sy, BOX, BOX)})
            page.geom({"name": f"{prefix}.effect", "type": "choice", "options": options, **extra})
    ty = sy + BOX + gap
    time_spec = FieldSpec("time", "datetime", meds.labels["time"], format="time")
    placer.draw(page, time_spec, f"{prefix}.time", x, ty, 0, show_label=False, extra=extra)
    ix = x + placer.comb_width(time_spec) + 1.5
    right = x + w - 1.0
    parts = meds.part_specs()
    code = "held" if status else "reason"
    if code in parts:
        # the code (why held; why a PRN dose was given): one digit box at the slot's right end,
        # its label ("H?") just before it
        label = held_label(meds, langs) if status else code_label(meds.labels["prn_reason"], langs)
        cx = right - CELL_W
        lx = cx - 1.2 - text_width_mm(label, HELD_LABEL_SIZE, BOLD)
        page.text(lx, ty + CELL_H / 2 + 1.0, label, HELD_LABEL_SIZE, BOLD)
        placer.draw(page, parts[code], f"{prefix}.{code}", cx, ty, CELL_W, show_label=False, extra=extra)
        right = lx - 1.2
    iw = max(7.0, right - ix)
    page.box(ix, ty, iw, CELL_H, 0.3)
    page.geom({"name": f"{prefix}.initials", "type": "initials", "box_mm": _box_mm(ix, ty, iw, CELL_H), **extra})


def code_label(label: dict[str, str], langs: tuple[str, ...]) -> str:
    return "/".join(dict.fromkeys(label[lang].rstrip("?") for lang in langs)) + "?"


def status_letters(meds: Medications, langs: tuple[str, ...]) -> list[str]:
    return ["/".join(dict.fromkeys(opt.label[lang] for lang in langs)) for opt in meds.status.options]


def held_label(meds: Medications, langs: tuple[str, ...]) -> str:
    return "/".join(dict.fromkeys(meds.labels["held"][lang].rstrip("?") for lang in langs)) + "?"


CAPTION_W = 10.0  # the time, then 2 mm before the first box: the reader checks for ink spilling in
SLOT_NORMAL = (1.5, 2.0)  # the slot's top padding (the row line 0.5 mm above it) and the marks-to-time gap, mm
SLOT_DENSE = (1.0, 1.5)
SLOT_H = SLOT_NORMAL[0] + BOX + SLOT_NORMAL[1] + CELL_H + 1.0


def slot_height(dense: bool) -> float:
    top, gap = SLOT_DENSE if dense else SLOT_NORMAL
    return top + BOX + gap + CELL_H + 1.0
EFFECT_PITCH = 9.0
HELD_LABEL_SIZE = 7.5
MORE_ROWS = {"en": "more PRN or new orders: use a blank MAR", "fr": "autres « si nécessaire » ou prescriptions : "
             "feuille vierge", "nl": "meer 'indien nodig' of voorschriften: blanco blad"}
PANEL_W = 36.0


def _legend_lines(meds: Medications, langs: tuple[str, ...], width: float, size: float = 6.5,
                  run_on: bool = False) -> list[str]:
    """The marking legend under the section heading: the status letters, then the held codes and
    the PRN effect marks, wrapped to the section width, one language after the other."""
    lines: list[str] = []
    texts = []
    for lang in langs:
        text = meds.labels["legend"][lang]
        if meds.held_codes:
            codes = " ".join(f"{o.value} {o.label[lang]}" for o in meds.held_codes)
            text += f". {meds.labels['held_codes'][lang]}: {codes}"
        if meds.prn_reasons:
            codes = " ".join(f"{o.value} {o.label[lang]}" for o in meds.prn_reasons)
            text += f". {meds.labels['prn_reasons'][lang]}: {codes}"
        if meds.prn_effect is not None:
            text += f"; {meds.labels['prn_effect'][lang]}"
        texts.append(text)
    if run_on:  # the dense MAR: one language runs on after the other (" / "), no half-empty line between
        return wrap_text(" / ".join(texts), width, size)[0]
    for text in texts:
        lines += wrap_text(text, width, size)[0]
    return lines


LEGEND_SIZE = 6.5


def _flow_medications(flow: _Flow, placer: Placer, section: Section, context: dict[str, Any],
                      reserve: float = 0.0) -> None:
    """reserve: the height the sections after this one need (the legend), kept on the sheet."""
    meds = section.medications
    langs = placer.langs
    panel_w = PANEL_W
    slot_h = slot_height(flow.dense)
    legend_size, legend_pitch = (6.0, 2.6) if flow.dense else (LEGEND_SIZE, 2.9)
    slot_w = (flow.width - panel_w - 2) / meds.slots_per_line
    parts = meds.part_specs()
    order_extra = "prescriber" in parts

    def row(kind: str, index: int, info: list[str], slot_captions: list[str | None],
            order_field: bool, status: bool, med_ref: int | None) -> None:
        lines = max(1, -(-len(slot_captions) // meds.slots_per_line))
        height = row_height(lines, info_height(info), order_field)
        flow.ensure(height)
        page, y0 = flow.page, flow.y
        page.line(flow.left, y0, flow.right, y0, 0.4)
        prefix = f"{kind}{index}"
        extra = {"row": prefix}
        if med_ref is not None:
            extra["medication"] = med_ref
        if order_field:
            spec = FieldSpec("order", "text", meds.labels["order"], lines=2)
            label = order_label()
            for k, text in enumerate(label):
                page.text(flow.left, y0 + 3.0 + k * 2.7, text, 6.5)
            placer.draw(page, spec, f"{prefix}.order", flow.left, y0 + 1.0 + len(label) * 2.7 + 0.8,
                        panel_w - 3, show_label=False, extra=extra)
            if order_extra:
                _order_by(placer, page, meds, flow.left + panel_w, y0 + 0.5 + lines * slot_h + 0.5,
                          flow.right - flow.left - panel_w - 1, prefix, extra)
        else:
            ty = y0 + 4.0
            for text, size, font in info:
                page.text(flow.left + 1, ty, text, size, font)
                ty += info_pitch(size)
        for s, caption in enumerate(slot_captions):
            line, col = divmod(s, meds.slots_per_line)
            sx = flow.left + panel_w + col * slot_w
            sy = y0 + 0.5 + line * slot_h
            slot_extra = dict(extra)
            if caption and kind == "m":
                slot_extra["scheduled"] = caption
            _slot_block(placer, page, meds, sx, sy, slot_w, f"{prefix}.s{s + 1}", caption, status, slot_extra,
                        flow.dense)
        flow.y = y0 + height

    def order_label() -> list[str]:
        """The new-order box's label, wrapped inside the drug panel (not under the slots)."""
        return wrap_text(label_text(meds.labels["order"], langs), panel_w - 3, 6.5, REGULAR, 4)[0]

    def row_height(lines: int, info_h: float, order_field: bool) -> float:
        order_h = 1.0 + len(order_label()) * 2.7 + 0.8 + 18.0 + 0.5
        slots_h = lines * slot_h + (ORDER_BY_H if order_field and order_extra else 0.0)
        return max(slots_h, info_h, order_h if order_field else 14.0) + 0.4

    scheduled = [m for m in context.get("medications", []) if not m.get("prn")]
    prn = [m for m in context.get("medications", []) if m.get("prn")]
    legend = _legend_lines(meds, langs, flow.width - 2, legend_size, run_on=flow.dense)

    def print_legend() -> None:
        for text in legend:
            flow.page.text(flow.left + 1, flow.y + 2.3, text, legend_size)
            flow.y += legend_pitch
        flow.y += 1.0

    flow.section_title(section.title, slot_h + 4 + 8)
    if flow.codes_back:  # a two-sided MAR whose front has no room for the codes: the bar says where they are
        flow.page.text(flow.right - 1.5, flow.y + flow.bar_note_y, " / ".join(
            dict.fromkeys(CODES_ON_BACK[lang] for lang in langs)), 6.5, REGULAR, "right")
        flow.y += 1.0
    else:
        print_legend()
    for i, med in enumerate(scheduled, 1):
        times = [t for t in (med.get("scheduled_times") or "").split(";") if t.strip()][: meds.max_slots]
        captions = times or [None] * meds.slots_per_line
        room = -(-len(captions) // meds.slots_per_line) * slot_h
        info = _med_info(med, panel_w - 2, "", flow.dense, room)
        row("m", i, info, captions, False, True, med.get("line"))
    # Blank PRN and new-order rows fill the sheet, up to the template's numbers: when all of them
    # would open another sheet for a few empty rows, as many as fit stay on this one.
    blank_prn = max(0, meds.prn_rows - len(prn))
    blank_new = meds.blank_rows_stock if context.get("blank_stock") else meds.blank_rows
    prn_slots = [meds.prn_slot_count(m.get("frequency")) for m in prn]
    prn_info = [_med_info(m, panel_w - 2, "PRN", flow.dense, -(-n // meds.slots_per_line) * slot_h)
                for m, n in zip(prn, prn_slots)]
    blank_prn_lines = max(1, -(-meds.prn_slots // meds.slots_per_line))
    order_h = row_height(1, 0, True)

    def needed(n_prn: int, n_new: int) -> float:
        h = 0.0
        if prn or n_prn:
            h += flow.section_h + sum(row_height(-(-n // meds.slots_per_line),
                                                 2.0 + sum(info_pitch(z) for _, z, _ in inf), False)
                                      for inf, n in zip(prn_info, prn_slots))
            h += n_prn * row_height(blank_prn_lines, 0, True)
        if n_new:
            h += flow.section_h + n_new * order_h
        return h

    if flow.two_sided:
        _two_sided_rest(flow, meds, prn, prn_info, prn_slots, blank_prn, blank_new, row, print_legend,
                        order_h, reserve, slot_h)
        return
    room = flow.bottom - flow.y - reserve
    note_h = 0.0 if prn else 3.4  # the "use a blank MAR" note: in the PRN heading, or a line of its own
    shortened = False
    # (blank stock keeps all its rows: for a new patient every order is a new one)
    # A census MAR keeps at least one blank new-order row on its sheet: an order written during the
    # outage must have a row (when even one does not fit, the rows go to a second sheet, all of them).
    keep_new = min(1, blank_new)
    if len(flow.pages) == 1 and not context.get("blank_stock") and needed(blank_prn, blank_new) > room:
        fit_prn, fit_new = 0, keep_new
        while True:
            grew = False
            for which in ("new", "prn"):
                n_prn, n_new = fit_prn + (which == "prn"), fit_new + (which == "new")
                if n_prn <= blank_prn and n_new <= blank_new and needed(n_prn, n_new) + note_h <= room:
                    fit_prn, fit_new, grew = n_prn, n_new, True
            if not grew:
                break
        if needed(0, keep_new) + note_h <= room:
            blank_prn, blank_new, shortened = fit_prn, fit_new, True
    note = " / ".join(dict.fromkeys(MORE_ROWS[lang] for lang in langs))
    if shortened and not (prn or blank_prn):
        flow.page.text(flow.left + 1, flow.y + 2.5, note, 7, BOLD)
        flow.y += 3.4
    if prn or blank_prn:
        flow.section_title({lang: meds.labels["prn"][lang] for lang in LANGS}, slot_h + 4)
        if shortened:
            flow.page.text(flow.right - 1.5, flow.y + flow.bar_note_y, note, 6.5, REGULAR, "right")
        for i, med in enumerate(prn + [None] * blank_prn, 1):
            if med:
                row("p", i, prn_info[i - 1], [None] * prn_slots[i - 1], False, False, med.get("line"))
            else:
                row("p", i, [], [None] * meds.prn_slots, True, False, None)
    if blank_new:
        flow.section_title({lang: meds.labels["new_order"][lang] for lang in LANGS}, slot_h + 4)
        for i in range(1, blank_new + 1):
            row("n", i, [], [None] * meds.slots_per_line, True, True, None)


CODES_ON_BACK = {"en": "codes for the ? boxes: on the back", "fr": "codes des cases ? : au verso",
                 "nl": "codes voor de vakjes ?: op de achterkant"}
CODES = {"en": "Codes", "fr": "Codes", "nl": "Codes"}


def _two_sided_rest(flow: _Flow, meds: Medications, prn: list[dict], prn_info: list, prn_slots: list[int],
                    blank_prn: int, blank_new: int, row: Callable, print_legend: Callable[[], None],
                    order_h: float, reserve: float, slot_h: float) -> None:
    """A two-sided MAR after its scheduled rows: the census's PRN rows end the front; the back
    (page 2) holds the codes when the front had no room for them, the blank PRN rows, the new-order
    rows (as many as the back holds, up to the blank stock's number) and, after them, the sections
    that follow (the nurses' legend: `reserve` mm)."""
    prn_title = {lang: meds.labels["prn"][lang] for lang in LANGS}
    if prn:
        flow.section_title(prn_title, slot_h + 4)
        for i, med in enumerate(prn, 1):
            row("p", i, prn_info[i - 1], [None] * prn_slots[i - 1], False, False, med.get("line"))
    flow.title = None
    flow.new_page()
    if flow.codes_back:
        flow.section_title(CODES, 8)
        print_legend()
        flow.title = None
    if blank_prn:
        flow.section_title(prn_title, slot_h + 4)
        for i in range(len(prn) + 1, len(prn) + blank_prn + 1):
            row("p", i, [], [None] * meds.prn_slots, True, False, None)
    room = flow.bottom - flow.y - reserve - flow.section_h
    new = max(blank_new, min(meds.blank_rows_stock, int(room // order_h)))
    if new:
        flow.section_title({lang: meds.labels["new_order"][lang] for lang in LANGS}, slot_h + 4)
        for i in range(1, new + 1):
            row("n", i, [], [None] * meds.slots_per_line, True, True, None)
    flow.title = None


ORDER_BY_H = 1.0 + CELL_H + 1.0


def _order_by(placer: Placer, page: _Page, meds: Medications, x: float, y: float, w: float,
              prefix: str, extra: dict) -> None:
    """Under a new order's slots: who prescribed it (written, transcribed) and at what time."""
    parts = meds.part_specs()
    by = label_text(meds.labels["prescriber"], placer.langs)
    at = label_text(meds.labels["ordered"], placer.langs)
    time_w = placer.comb_width(parts["ordered"])
    at_w = text_width_mm(at, 6.5)
    tx = x + w - time_w
    by_w = text_width_mm(by, 6.5)
    page.text(x, y + CELL_H / 2 + 1.0, by, 6.5)
    bx = x + by_w + 1.5
    bw = tx - at_w - 4.0 - bx
    page.box(bx, y, bw, CELL_H, 0.3)
    page.geom({"name": f"{prefix}.prescriber", "type": "text", "box_mm": _box_mm(bx, y, bw, CELL_H), "lines": 1,
               **extra})
    page.text(tx - 1.5, y + CELL_H / 2 + 1.0, at, 6.5, REGULAR, "right")
    placer.draw(page, parts["ordered"], f"{prefix}.ordered", tx, y, time_w, show_label=False, extra=extra)


LEGEND_ENTRY = (3.5, 14.0, 30.0)  # row number, initials box, signature box (mm); the name takes the rest
LEGEND_GAP = 4.0
LEGEND_PITCH = CELL_H + 1.2


def _legend_layout(flow: _Flow, placer: Placer, legend) -> tuple[str | None, list[str], int, float]:
    """(note in the heading bar or None, note lines under it, column label lines, name box width)."""
    langs = placer.langs
    num_w, init_w, sig_w = LEGEND_ENTRY
    entry_w = (flow.width - LEGEND_GAP) / 2
    name_w = entry_w - num_w - init_w - sig_w - 3.0
    joined = " / ".join(dict.fromkeys(legend.labels["note"][lang] for lang in langs))
    title_w = text_width_mm(label_text(flow.title_of_legend, langs), 8.5, BOLD) if flow.title_of_legend else 0.0
    in_bar = joined if title_w + 8.0 + text_width_mm(joined, 6.5) <= flow.width - 3.0 else None
    note = [] if in_bar else list(dict.fromkeys(
        line for lang in langs for line in wrap_text(legend.labels["note"][lang], flow.width - 2, 6.5)[0]))
    if flow.dense and len(note) > 1 and text_width_mm(joined, 6.5) <= flow.width - 2:
        note = [joined]  # the dense MAR: both languages on one line
    label_lines = max(len(_column_label(lab, langs, w)) for lab, w in (
        (legend.labels["initials"], init_w), (legend.labels["name"], name_w), (legend.labels["signature"], sig_w)))
    return in_bar, note, label_lines, name_w


def _flow_legend(flow: _Flow, placer: Placer, section: Section) -> None:
    """The initials legend: numbered rows of initials, name and signature, two rows side by side.
    The row number is what the review station's keys 1-9 pick."""
    legend = section.legend
    langs = placer.langs
    flow.title_of_legend = section.title
    in_bar, note, label_lines, name_w = _legend_layout(flow, placer, legend)
    per_line = 2
    lines = -(-legend.rows // per_line)
    entry_w = (flow.width - LEGEND_GAP) / 2
    num_w, init_w, sig_w = LEGEND_ENTRY
    box_h = CELL_H
    head_h = len(note) * 2.8 + 3.2 + 2.5 * (label_lines - 1)
    whole = head_h + lines * LEGEND_PITCH
    flow.section_title(section.title, whole, whole)
    page, y = flow.page, flow.y
    if in_bar:
        page.text(flow.right - 1.5, y + flow.bar_note_y, in_bar, 6.5, REGULAR, "right")
    for k, text in enumerate(note):
        page.text(flow.left + 1, y + 2.3 + k * 2.8, text, 6.5)
    y += len(note) * 2.8 + (0.4 if note else 0.0)
    columns = ((legend.labels["initials"], num_w, init_w), (legend.labels["name"], num_w + init_w + 1.5, name_w),
               (legend.labels["signature"], num_w + init_w + name_w + 3.0, sig_w))
    for c in range(per_line):
        ex = flow.left + c * (entry_w + LEGEND_GAP)
        for label, off, width in columns:  # one language a line when both do not fit the column
            for k, text in enumerate(_column_label(label, langs, width)):
                page.text(ex + off, y + 2.3 + k * 2.5, text, 6.0)
    y += 3.2 + 2.5 * (label_lines - 1)
    for r in range(legend.rows):
        line, c = divmod(r, per_line)
        ex = flow.left + c * (entry_w + LEGEND_GAP)
        ry = y + line * LEGEND_PITCH
        row_name = f"l{r + 1}"
        extra = {"row": row_name, "legend": r + 1}
        page.text(ex, ry + box_h / 2 + 1.3, str(r + 1), 8, BOLD)
        ix = ex + num_w
        page.box(ix, ry, init_w, box_h, 0.3)
        page.geom({"name": f"{row_name}.initials", "type": "initials", "box_mm": _box_mm(ix, ry, init_w, box_h),
                   **extra})
        nx = ix + init_w + 1.5
        page.box(nx, ry, name_w, box_h, 0.3)
        page.geom({"name": f"{row_name}.name", "type": "text", "box_mm": _box_mm(nx, ry, name_w, box_h), "lines": 1,
                   **extra})
        sx = nx + name_w + 1.5
        page.box(sx, ry, sig_w, box_h, 0.3)
        page.geom({"name": f"{row_name}.signature", "type": "signature", "box_mm": _box_mm(sx, ry, sig_w, box_h),
                   "transcribe": "ink-only", **extra})
    flow.y = y + lines * LEGEND_PITCH + flow.gap_y


def _column_label(label: dict[str, str], langs: tuple[str, ...], width: float) -> list[str]:
    text = label_text(label, langs)
    if text_width_mm(text, 6.0) <= width - 0.5:
        return [text]
    return [_clip(label[lang], width - 0.5, 6.0) for lang in dict.fromkeys(langs)]


def _legend_height(flow: _Flow, placer: Placer, section: Section) -> float:
    flow.title_of_legend = section.title
    _, note, label_lines, _ = _legend_layout(flow, placer, section.legend)
    return flow.section_h + len(note) * 2.8 + 3.2 + 2.5 * (label_lines - 1) \
        + -(-section.legend.rows // 2) * LEGEND_PITCH + flow.gap_y


def info_pitch(size: float) -> float:
    """Line pitch of a medication panel's text (the drug name at 8.5 pt; the dense MAR's 6.5 and 6 pt)."""
    return 3.8 if size > 8 else 3.2 if size >= 7 else 2.8 if size >= 6.5 else 2.55


def info_height(info: list[tuple[str, float, str]]) -> float:
    return 2.0 + sum(info_pitch(size) for _, size, _ in info)


def _med_info(med: dict[str, Any], width: float, default_frequency: str,
              dense: bool = False, room: float | None = None) -> list[tuple[str, float, str]]:
    """A medication's pre-printed panel: drug name, dose and route, frequency, wrapped (not cut)
    so that a long name or dose is read in full; lines as (text, size, font). The dense MAR sets
    dose and frequency a size smaller, so that a long order needs no taller row than its slots;
    with room (mm, the height of the row's slots) a dense panel that is still taller runs dose,
    route and frequency on as one text, then sets the name and that text smaller (6.5 and 6 pt)."""
    dose = " ".join(p for p in (med.get("dose"), med.get("route")) if p)
    frequency = med.get("frequency") or default_frequency
    sizes = (8.5, 8.0, 7.5, 7.0) if not dense else (8.5, 8.0, 7.5, 7.0, 6.5)
    long_name = text_width_mm(med["medication"], 7.0, BOLD) > width
    name_size = next((z for z in sizes if text_width_mm(med["medication"], z, BOLD) <= width),
                     7.0 if dense and long_name else 8.5)
    small = 6.5 if dense else 7.0

    def panel(name_size: float, small: float, parts: tuple[tuple[str, int], ...]) -> list[tuple[str, float, str]]:
        info: list[tuple[str, float, str]] = []
        for text, size, font, most in ((med["medication"], name_size, BOLD, 3),
                                       *((t, small, REGULAR, n) for t, n in parts)):
            if text:
                info += [(line, size, font) for line in wrap_text(text, width, size, font, most)[0]]
        return info

    info = panel(name_size, small, ((dose, 3), (frequency, 2)))
    if not dense or room is None or info_height(info) <= room:
        return info
    run_on = (" · ".join(p for p in (dose, frequency) if p), 6)  # never cut: up to 6 lines
    for name_z, small_z in ((name_size, 6.5), (min(name_size, 6.5), 6.5), (min(name_size, 6.5), 6.0)):
        info = panel(name_z, small_z, (run_on,))
        if info_height(info) <= room:
            break
    return info


def _clip(text: str, width: float, size: float, font: str = REGULAR, keep_end: str = "") -> str:
    """Cut text to width with an ellipsis; keep_end (already at the end of text) is kept whole."""
    if text_width_mm(text, size, font) <= width:
        return text
    if keep_end and text.endswith(keep_end):
        head = text[: -len(keep_end)].rstrip()
        while head and text_width_mm(head + "… " + keep_end, size, font) > width:
            head = head[:-1]
        return (head + "… " + keep_end) if head else keep_end
    while text and text_width_mm(text + "…", size, font) > width:
        text = text[:-1]
    return text + "…"


def title_lines(template: Template, langs: tuple[str, ...], size_mm) -> tuple[list[str], float]:
    """The form title in the header column: smaller type first, then two lines (between the
    languages when it can), never cut."""
    title = label_text(template.title, langs)
    room = header_right(size_mm) - MARGIN
    size = 12.0
    while size > 10.5 and text_width_mm(title, size, BOLD) > room:
        size -= 0.5
    if text_width_mm(title, size, BOLD) <= room:
        return [title], size
    parts = title.split(" / ")
    half = max(1, len(parts) // 2)
    lines = [" / ".join(parts[:half]) + " /", " / ".join(parts[half:])]
    if len(parts) < 2 or any(text_width_mm(t, size, BOLD) > room for t in lines):
        lines, _ = wrap_text(title, room, size, BOLD, 2)
    return lines, size


def header_top(template: Template, langs: tuple[str, ...], size_mm) -> float:
    """Where the per-sheet header starts: under the title's last line."""
    lines, size = title_lines(template, langs, size_mm)
    return _r(MARGIN + 3.5 + (len(lines) - 1) * line_pitch(size) + 2.0)


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
    lines, size = title_lines(template, langs, layout.size_mm)
    y = MARGIN + 3.5
    for text in lines:
        page.text(MARGIN, y, text, size, BOLD)
        y += line_pitch(size)
    layout.header_top = header_top(template, langs, layout.size_mm)
    fy = h - MARGIN - 9.0  # the last line's descenders stay inside the margin
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
    # The form code sits on the first footer line, right: the instruction below has the full width.
    page.text(w - MARGIN, fy, f"{template.ref} · {layout.page}/{layout.pages}", 6.5, REGULAR, "right")
    write = " / ".join(WRITE[lang] for lang in langs)
    write_size = 6.5
    while write_size > 5.5 and text_width_mm(write, write_size) > w - 2 * MARGIN:
        write_size -= 0.25
    page.text(MARGIN, fy + 8.3, write, write_size)


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


def _opt(value: str, en: str, fr: str, nl: str) -> Option:
    return Option(value, {"en": en, "fr": fr, "nl": nl})


# Blank stock for a new patient: what the nurse writes so that the downtime MRN can be linked to the
# real patient and the sheet is safe to act on (sex, where the patient lies, allergies).
BLANK_PATIENT = Section(
    {"en": "New patient (no census record)", "fr": "Nouveau patient (pas dans le recensement)",
     "nl": "Nieuwe patiënt (niet in de patiëntenlijst)"},
    fields=(
        FieldSpec("patient_sex", "choice", {"en": "Sex", "fr": "Sexe", "nl": "Geslacht"},
                  options=(_opt("female", "F", "F", "V"), _opt("male", "M", "M", "M"), _opt("other", "X", "X", "X"),
                           _opt("unknown", "unknown", "inconnu", "onbekend"))),
        FieldSpec("patient_ward", "text", {"en": "Ward", "fr": "Unité", "nl": "Afdeling"}, width=0.17),
        FieldSpec("patient_bed", "number", {"en": "Bed", "fr": "Lit", "nl": "Bed"}, digits=3),
        FieldSpec("patient_allergies_known", "choice", {"en": "ALLERGIES", "fr": "ALLERGIES", "nl": "ALLERGIEËN"},
                  options=(_opt("yes", "yes", "oui", "ja"), _opt("no", "no", "non", "nee"),
                           _opt("unknown", "unknown", "inconnu", "onbekend"))),
        FieldSpec("patient_allergies", "text", {"en": "Allergies (substance, reaction)",
                                                "fr": "Allergies (substance, réaction)",
                                                "nl": "Allergieën (stof, reactie)"}, width=1.0),
    ))


def _blank_identity_fields(layout: PageLayout, placer: Placer, top: float | None = None) -> None:
    """Blank stock is not bound to a known patient: the nurse writes name and birth date in the
    header, so the downtime MRN can later be linked to the real one."""
    page = _Page(layout)
    y = max(layout.header_top + 7.5, top or 0.0)  # under the downtime identifiers line(s)
    name_w = 88.0
    placer.draw(page, BLANK_NAME, BLANK_NAME.name, MARGIN, y, name_w)
    # the birth date's label wraps inside the header column, clear of the QR zone
    bx = MARGIN + name_w + 5
    lines = wrap_text(placer.field_label(BLANK_BIRTH), header_right(layout.size_mm) - bx, 6.5)[0][:2]
    for k, text in enumerate(lines):
        page.text(bx, y + 2.6 - (len(lines) - 1 - k) * 2.8, text, 6.5)
    placer.draw(page, BLANK_BIRTH, BLANK_BIRTH.name, bx, y + LABEL_H, placer.comb_width(BLANK_BIRTH),
                show_label=False)


ALLERGIES = {"en": "ALLERGIES", "fr": "ALLERGIES", "nl": "ALLERGIEËN"}
ALLERGIES_FULL = {"en": "full list", "fr": "liste complète", "nl": "volledige lijst"}
SEE_LIST = {"en": "see list below", "fr": "voir liste ci-dessous", "nl": "zie lijst hieronder"}
ALERT_SIZE = 8.5


def allergy_label(langs: tuple[str, ...]) -> str:
    return " / ".join(dict.fromkeys(ALLERGIES[lang] for lang in langs))


def allergy_header(text: str, langs: tuple[str, ...], paper: str = "a4") -> tuple[HeaderLine, bool]:
    """The header's allergy box, at most two lines; True when the list does not fit there and the
    sheet must carry the full list (layout_form's context 'allergy_list')."""
    label = allergy_label(langs)
    suffix = "→ " + " / ".join(SEE_LIST[lang] for lang in langs)
    size = PAPER_SIZES_MM[paper]
    inner = header_right(size) - MARGIN - 3.0
    label_w = text_width_mm(label + ": ", ALERT_SIZE, BOLD)
    _, overflow = wrap_text(text, inner, ALERT_SIZE, BOLD, 2, inner - label_w)
    if overflow:
        lines, _ = wrap_text(text, inner, ALERT_SIZE, BOLD, 2, inner - label_w, suffix)
        text = " ".join(lines)
    return HeaderLine(text, ALERT_SIZE, True, alert_label=label, max_lines=2), overflow


def _flow_allergy_list(flow: _Flow, text: str) -> None:
    """The full allergy list, boxed and bold, first on the sheet, when the header has no room."""
    label = f"{allergy_label(flow.langs)} — {' / '.join(ALLERGIES_FULL[lang] for lang in flow.langs)}"
    items = [part.strip() for part in text.split(";") if part.strip()] or [text]
    inner = flow.width - 4.0
    lines = [line for item in items for line in wrap_text("• " + item, inner, ALERT_SIZE, BOLD)[0]]
    height = 5.0 + len(lines) * 3.9 + 1.5
    flow.ensure(height)
    page, y = flow.page, flow.y
    page.fill(flow.left, y, flow.width, height, 0.86)
    page.box(flow.left, y, flow.width, height, 0.8)
    page.text(flow.left + 2, y + 4.0, label, 9, BOLD)
    for k, line in enumerate(lines):
        page.text(flow.left + 2, y + 8.2 + k * 3.9, line, ALERT_SIZE, BOLD)
    flow.y = y + height + flow.gap_y


def _flow_form(template: Template, paper: str, langs: tuple[str, ...], context: dict[str, Any],
               spacing: tuple[float, float], two_sided: bool = False, codes_back: bool = False) -> _Flow:
    flow = _Flow(template, paper, langs, spacing, max(HEADER_BOTTOM, context.get("body_top", HEADER_BOTTOM)))
    flow.two_sided, flow.codes_back = two_sided, codes_back
    placer = Placer(langs)
    if context.get("allergy_list"):
        _flow_allergy_list(flow, context["allergy_list"])
    if context.get("blank_stock") and template.patient_bound and "last_name" not in template.field_names():
        _flow_fields(flow, placer, BLANK_PATIENT)
    for k, section in enumerate(template.sections):
        if section.fields:
            _flow_fields(flow, placer, section)
        elif section.grid:
            _flow_grid(flow, placer, section)
        elif section.legend:
            _flow_legend(flow, placer, section)
        else:
            reserve = sum(_fields_height(flow, placer, after) if after.fields else
                          _legend_height(flow, placer, after) if after.legend else 0.0
                          for after in template.sections[k + 1:])
            _flow_medications(flow, placer, section, context, reserve)
    return flow


def _medication_rows_on_front(pages: list[PageLayout], context: dict[str, Any]) -> bool:
    """Every census medication's row (m1.., and p1.. for the PRN ones) on page 1 and only there."""
    medications = context.get("medications", [])
    scheduled = sum(not m.get("prn") for m in medications)
    rows = {f"m{i}" for i in range(1, scheduled + 1)} | {f"p{i}" for i in range(1, len(medications) - scheduled + 1)}
    on = [{f.get("row") for f in page.fields} for page in pages]
    return rows <= on[0] and not any(rows & later for later in on[1:])


def layout_form(template: Template, paper: str = "a4", langs: tuple[str, ...] = ("en",),
                context: dict[str, Any] | None = None) -> list[PageLayout]:
    """Lay out one form; context carries pre-printed data that changes the layout (MAR rows)."""
    if paper not in PAPER_SIZES_MM:
        raise BadInput(f"unknown paper size {paper!r}", hint=f"use one of {', '.join(PAPER_SIZES_MM)}")
    context = context or {}
    # Normal spacing first; compact spacing when that saves a sheet (no near-empty second page).
    flow = _flow_form(template, paper, langs, context, SPACINGS[0])
    if len(flow.pages) > 1:
        compact = _flow_form(template, paper, langs, context, SPACINGS[1])
        if len(compact.pages) < len(flow.pages):
            flow = compact
    if len(flow.pages) > 1 and template.medications is not None:
        dense = _flow_form(template, paper, langs, context, DENSE)
        if len(dense.pages) < len(flow.pages):
            flow = dense
    if len(flow.pages) > 1 and template.medications is not None and context.get("medications"):
        # Still more than one sheet: a two-sided MAR, printed on both sides of one sheet. Every
        # medication row (scheduled and the census's PRN) on the front, the new orders and the
        # nurses' legend on the back; the least dense spacing that keeps them there, the codes'
        # legend on the back as the last resort. More drugs than a front holds: as before. (Blank
        # stock has no census rows: its rows flow over both sides as they come.)
        for spacing, codes_back in ((SPACINGS[0], False), (SPACINGS[1], False), (DENSE, False), (DENSE, True)):
            sided = _flow_form(template, paper, langs, context, spacing, two_sided=True, codes_back=codes_back)
            if len(sided.pages) == 2 and _medication_rows_on_front(sided.pages, context):
                flow = sided
                break
    placer = Placer(langs)
    for layout in flow.pages:
        layout.pages = len(flow.pages)
    for layout in flow.pages:
        _furniture(layout, template, langs)
    if context.get("blank_stock") and template.patient_bound and "last_name" not in template.field_names():
        _blank_identity_fields(flow.pages[0], placer, context.get("blank_fields_top"))
    return flow.pages
