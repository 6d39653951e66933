"""The page image as the scan stored it before page images were made on demand (fallbackkit at
fbb2ed9, 2026-12-02), frozen: engine._page_image (the located page warped to 100 dpi), page_task.
_preview (a page never located, shrunk to about 100 dpi) and page_task.viewing_copy (the paper's
grain flattened to white, greys in steps of 4). tests/test_pageview.py compares the page images
made on demand with these, pixel for pixel, on real scanned files."""
from __future__ import annotations

import cv2
import numpy as np

PAGE_IMAGE_DPI = 100
PAPER_WHITE = 0.08
GREY_STEP = 4
MIN_PAGE_SPAN = 60.0


def page_image(image: np.ndarray, hmat: np.ndarray, geometry: dict) -> np.ndarray:
    ppm = PAGE_IMAGE_DPI / 25.4
    w_mm, h_mm = geometry["page_size_mm"]
    t = np.array([[1 / ppm, 0, 0], [0, 1 / ppm, 0], [0, 0, 1]], float)
    size = (max(1, int(round(w_mm * ppm))), max(1, int(round(h_mm * ppm))))
    return cv2.warpPerspective(image, hmat @ t, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


def preview(image: np.ndarray, dpi: float | None) -> np.ndarray:
    h, w = image.shape[:2]
    scale = PAGE_IMAGE_DPI / dpi if dpi else 1170 / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def viewing_copy(image: np.ndarray) -> np.ndarray:
    sample = image[::8, ::8]
    paper, black = (float(v) for v in np.percentile(sample, [90, 0.5]))
    white_from = paper - PAPER_WHITE * max(paper - black, MIN_PAGE_SPAN)
    grey = np.arange(256)
    lut = np.where(grey >= white_from, 255, np.minimum(grey // GREY_STEP * GREY_STEP + GREY_STEP // 2, 255))
    return cv2.LUT(np.ascontiguousarray(image), lut.astype(np.uint8))


def dark_fraction(image: np.ndarray, hmat: np.ndarray, geometry: dict, threshold: float) -> float:
    """engine._read_located's dark_fraction: on the whole warped page image."""
    page = page_image(image, hmat, geometry)
    return np.count_nonzero(page < threshold) / page.size
