"""Helpers for the scan engine tests: real printed sheets rendered, marked, damaged and read in memory."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fallbackkit.generate import sheet_geometry
from fallbackkit.generate.render import qr_matrix
from fallbackkit.scan.engine import PageResult, read_page
from fallbackkit.scan.marks import InkLayer, Pen, draw_box_mark, draw_handwriting
from fallbackkit.scan.read import MARK_TYPES
from fallbackkit.scan.simulate import identify, page_transform, render_pdf

DPI = 200


class Sheets:
    """The printed pages of a PDF, rendered once, with their sheet ids and geometry."""

    def __init__(self, kit, pdf: Path | str, dpi: int = DPI):
        self.kit, self.dpi = kit, dpi
        self.images: list[np.ndarray] = []
        self.sheet_ids: list[str | None] = []
        for img in render_pdf(pdf, dpi):
            sp = identify(img, kit.kit_id, kit.secret)
            self.images.append(img)
            self.sheet_ids.append(sp.sheet_id if sp else None)
        self.geometry = {s: sheet_geometry(kit, s) for s in self.sheet_ids if s}

    def pages(self) -> list[tuple[str, np.ndarray, dict]]:
        return [(s, img, self.geometry[s]) for s, img in zip(self.sheet_ids, self.images) if s]

    def read(self, image: np.ndarray) -> PageResult:
        return read_page(image, kit_id=self.kit.kit_id, secret=self.kit.secret, geometry_for=self.geometry.get)


def field(geometry: dict, name: str) -> dict:
    return next(f for f in geometry["fields"] if f["name"] == name)


def reading(result: PageResult, name: str):
    return next(r for r in result.readings if r.field == name)


def mark(image: np.ndarray, dpi: int, boxes: list[tuple[list[float], str]], seed: int = 0,
         pen: Pen | None = None) -> np.ndarray:
    """Draw the given (box_mm, style) marks on a clean page rendered at dpi."""
    rng = np.random.default_rng(seed)
    layer = InkLayer(image, page_transform(dpi))
    for box, style in boxes:
        draw_box_mark(layer, box, style, rng, pen or Pen(0.45, 20))
    return layer.apply()


def write(image: np.ndarray, dpi: int, fields: list[dict], seed: int = 0, pen: Pen | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    layer = InkLayer(image, page_transform(dpi))
    for f in fields:
        draw_handwriting(layer, f, rng, pen)
    return layer.apply()


def wrong_values(result: PageResult, truth: dict[str, dict[str, Any]]) -> list[str]:
    """Accepted readings whose value differs from the truth, and ink accepted as blank."""
    wrong = []
    for r in result.readings:
        t = truth[r.field]
        if r.status != "accepted":
            continue
        if r.type in MARK_TYPES and r.value != t["value"]:
            wrong.append(f"{r.field}: read {r.value!r}, truth {t['value']!r} ({t['style']})")
        if r.type not in MARK_TYPES and r.value is True and not t["ink"]:
            wrong.append(f"{r.field}: a blank field accepted as signed")
        if r.type not in MARK_TYPES and r.value is not True and t["ink"]:
            wrong.append(f"{r.field}: ink accepted as blank")
    return wrong


def paint_qr(image: np.ndarray, geometry: dict, text: str, dpi: int) -> np.ndarray:
    """Draw a QR code with the given text where the sheet's code is (a forged or re-printed code)."""
    out = image.copy()
    s = dpi / 25.4
    x, y, size, _ = geometry["qr_mm"]
    matrix = qr_matrix(text)
    n = len(matrix)
    x0, y0 = int(round(x * s)), int(round(y * s))
    px = int(round(size * s))
    out[y0 - 4:y0 + px + 4, x0 - 4:x0 + px + 4] = 255
    for r, row in enumerate(matrix):
        for c, on in enumerate(row):
            if on:
                out[y0 + r * px // n:y0 + (r + 1) * px // n, x0 + c * px // n:x0 + (c + 1) * px // n] = 0
    return out


def white_out(image: np.ndarray, box_mm, dpi: int, margin_mm: float = 2.0) -> np.ndarray:
    out = image.copy()
    s = dpi / 25.4
    x, y, w, h = box_mm
    out[max(0, int((y - margin_mm) * s)):int((y + h + margin_mm) * s),
        max(0, int((x - margin_mm) * s)):int((x + w + margin_mm) * s)] = 255
    return out
