"""Rendering printed PDFs the way a scanner sees paper (used by many tests)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pypdfium2 as pdfium


def render_pages(pdf_path: Path | str, dpi: int = 200) -> list[np.ndarray]:
    """Render every page of a PDF to a grey image, as a scanner would see the paper."""
    pdf = pdfium.PdfDocument(str(pdf_path))
    try:
        images = []
        for page in pdf:
            bitmap = page.render(scale=dpi / 72, grayscale=True)
            images.append(np.array(bitmap.to_pil().convert("L")))
            page.close()
        return images
    finally:
        pdf.close()
