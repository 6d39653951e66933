"""Fonts shipped with the package (DejaVu: covers ł, ễ, ë and most scripts), registered once."""
from __future__ import annotations

from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT_DIR = Path(__file__).parent
REGULAR, BOLD, MONO = "FKSans", "FKSans-Bold", "FKMono"
_FILES = {REGULAR: "DejaVuSans.ttf", BOLD: "DejaVuSans-Bold.ttf", MONO: "DejaVuSansMono.ttf"}
_registered = False
PT_TO_MM = 25.4 / 72


def register() -> None:
    global _registered
    if _registered:
        return
    for name, filename in _FILES.items():
        pdfmetrics.registerFont(TTFont(name, str(FONT_DIR / filename)))
    _registered = True


def text_width_mm(text: str, size: float, font: str = REGULAR) -> float:
    register()
    return pdfmetrics.stringWidth(text, font, size) * PT_TO_MM
