"""Synthetic pen marks drawn on a page image, for `simulate`, the tests and the accuracy benchmark.

Marks are drawn in page millimetres through a transform (page mm -> image px), in varying pen
widths and greys, on an ink layer that is combined with the page by taking the darker pixel (ink
does not lighten the printed outline). Every style says what a careful reader should make of it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .locate import project

# style -> (the box counts as marked?, a person should look?)
BOX_STYLES = {
    "tick": (True, False),
    "cross": (True, False),
    "stroke": (True, False),
    "cancelled": (False, False),   # scribbled solid: the convention printed on the sheet says "not marked"
    "faint": (True, True),
    "half_outside": (True, True),  # the mark's centre near the box edge: which box was meant is unclear
    "spilled": (True, False),      # a big cross centred in the box, its strokes running out of it
}


@dataclass
class Pen:
    width_mm: float
    grey: int


def random_pen(rng: np.random.Generator) -> Pen:
    return Pen(float(rng.uniform(0.3, 0.6)), int(rng.integers(0, 80)))


class InkLayer:
    """Collects strokes for one page and lays them on the image in one pass."""

    def __init__(self, image: np.ndarray, hmat: np.ndarray):
        self.image = image
        self.hmat = np.asarray(hmat, float)
        self.layer = np.full(image.shape, 255, np.uint8)
        j = project(self.hmat, [(0, 0), (1, 0)])
        self.px_per_mm = float(np.hypot(*(j[1] - j[0])))

    def polyline(self, pts_mm, pen: Pen) -> None:
        pts = project(self.hmat, pts_mm)
        thick = max(1, int(round(pen.width_mm * self.px_per_mm)))
        cv2.polylines(self.layer, [np.round(pts * 16).astype(np.int32)], False, int(pen.grey), thick,
                      cv2.LINE_AA, shift=4)

    def polygon(self, pts_mm, grey: int) -> None:
        pts = project(self.hmat, pts_mm)
        cv2.fillPoly(self.layer, [np.round(pts * 16).astype(np.int32)], int(grey), cv2.LINE_AA, shift=4)

    def apply(self) -> np.ndarray:
        return np.minimum(self.image, self.layer)


def _jit(rng, pts, box, amount=0.06):
    x, y, w, h = box
    return [(x + (fx + rng.uniform(-amount, amount)) * w, y + (fy + rng.uniform(-amount, amount)) * h)
            for fx, fy in pts]


def _curve(rng, pts, n=6):
    """A slightly wobbly pen line through pts."""
    out = []
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        for t in np.linspace(0, 1, n, endpoint=False):
            out.append((x0 + (x1 - x0) * t + rng.normal(0, 0.05), y0 + (y1 - y0) * t + rng.normal(0, 0.05)))
    out.append(pts[-1])
    return out


def draw_box_mark(layer: InkLayer, box_mm, style: str, rng: np.random.Generator, pen: Pen | None = None) -> None:
    pen = pen or random_pen(rng)
    x, y, w, h = box_mm
    if style == "tick":
        layer.polyline(_curve(rng, _jit(rng, [(0.18, 0.55), (0.42, 0.82), (0.86, 0.14)], box_mm)), pen)
    elif style == "cross":
        layer.polyline(_curve(rng, _jit(rng, [(0.15, 0.15), (0.85, 0.85)], box_mm)), pen)
        layer.polyline(_curve(rng, _jit(rng, [(0.85, 0.15), (0.15, 0.85)], box_mm)), pen)
    elif style == "stroke":
        pen = Pen(max(pen.width_mm, 0.5), pen.grey)
        layer.polyline(_curve(rng, _jit(rng, [(0.12, 0.82), (0.88, 0.18)], box_mm)), pen)
    elif style == "cancelled":
        # a scribble that fills the box: a dark patch and zigzags overshooting a little
        layer.polygon(_jit(rng, [(0.06, 0.06), (0.94, 0.05), (0.95, 0.94), (0.05, 0.95)], box_mm, 0.03), pen.grey)
        zig = [(0.0 if i % 2 == 0 else 1.0, i / 9) for i in range(10)]
        layer.polyline(_jit(rng, zig, box_mm, 0.04), Pen(0.6, pen.grey))
    elif style == "faint":
        faint = Pen(float(rng.uniform(0.3, 0.45)), int(rng.integers(150, 185)))
        draw_box_mark(layer, box_mm, str(rng.choice(["tick", "cross"])), rng, faint)
    elif style == "half_outside":
        side = str(rng.choice(["left", "top", "bottom"]))
        dx = {"left": -0.6, "top": 0.0, "bottom": 0.0}[side] * w
        dy = {"left": 0.0, "top": -0.6, "bottom": 0.6}[side] * h
        draw_box_mark(layer, (x + dx, y + dy, w, h), str(rng.choice(["tick", "cross"])), rng,
                      Pen(max(pen.width_mm, 0.5), pen.grey))
    elif style == "spilled":
        # a big cross centred on the box (within 8 % of its side), turned up to 30 degrees, its arms
        # 0.65 to 0.95 box sides long from the centre: the strokes run out of the box through its
        # sides or corners, up to about 2 mm on a 5 mm box
        cx = x + w / 2 + float(rng.uniform(-0.08, 0.08)) * w
        cy = y + h / 2 + float(rng.uniform(-0.08, 0.08)) * h
        turn = np.radians(float(rng.uniform(-30, 30)))
        wide = Pen(max(pen.width_mm, 0.4), pen.grey)
        for a in (turn + np.pi / 4, turn - np.pi / 4):
            r0, r1 = float(rng.uniform(0.65, 0.95)) * w, float(rng.uniform(0.65, 0.95)) * w
            dx, dy = np.cos(a), np.sin(a)
            layer.polyline(_curve(rng, [(cx - r0 * dx, cy - r0 * dy), (cx + r1 * dx, cy + r1 * dy)]), wide)
    else:
        raise ValueError(f"unknown mark style {style!r}")


def _digit_strokes(rng, x, y, w, h) -> list[list[tuple[float, float]]]:
    """Digit-like strokes in a cell: a loop, a bar, a hook."""
    kind = int(rng.integers(0, 4))
    cx, cy = x + w / 2, y + h / 2
    rx, ry = w * 0.28, h * 0.32
    if kind == 0:  # 0 / 6 / 8-like loop
        t = np.linspace(0, 2 * np.pi, 14)
        return [[(cx + rx * np.cos(a) + rng.normal(0, 0.08), cy + ry * np.sin(a) + rng.normal(0, 0.08)) for a in t]]
    if kind == 1:  # 1 / 7-like
        return [[(cx - rx, cy - ry), (cx + rx, cy - ry), (cx - rx * 0.2, cy + ry)]]
    if kind == 2:  # 2 / z-like
        return [[(cx - rx, cy - ry * 0.6), (cx, cy - ry), (cx + rx, cy - ry * 0.4), (cx - rx, cy + ry),
                 (cx + rx, cy + ry)]]
    return [[(cx - rx, cy - ry), (cx - rx, cy), (cx + rx, cy)], [(cx + rx * 0.6, cy - ry), (cx + rx * 0.6, cy + ry)]]


def draw_handwriting(layer: InkLayer, field: dict, rng: np.random.Generator, pen: Pen | None = None,
                     fill: float = 0.7) -> None:
    """Scribbles in a handwritten field: digit-like strokes in comb cells, a wavy 'word' line in
    text boxes, a loop for initials and signatures."""
    pen = pen or Pen(float(rng.uniform(0.3, 0.6)), int(rng.integers(0, 90)))
    cells = field.get("cells_mm")
    if cells:
        chosen = [c for c in cells if rng.random() < fill] or [cells[int(rng.integers(0, len(cells)))]]
        for c in chosen:
            for stroke in _digit_strokes(rng, *c):
                layer.polyline(_curve(rng, stroke, 3), pen)
        return
    x, y, w, h = field["box_mm"]
    lines = int(field.get("lines") or 1)
    line_h = h / lines
    for i in range(1 if field["type"] != "text" else max(1, int(rng.integers(1, lines + 1)))):
        length = w * float(rng.uniform(0.25, 0.85))
        x0 = x + 2.0
        base = y + line_h * i + line_h * 0.65
        n = max(6, int(length / 1.2))
        pts = [(x0 + length * k / n, base - min(line_h * 0.45, abs(rng.normal(0, line_h * 0.18)) * 2) * (k % 2))
               for k in range(n + 1)]
        layer.polyline(pts, pen)


__all__ = ["BOX_STYLES", "Pen", "InkLayer", "draw_box_mark", "draw_handwriting", "random_pen"]
