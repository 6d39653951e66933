"""Real handwritten digits (the writer-disjoint test split of data/handwriting/) written into the comb
boxes of real printed sheets, for the digit tests and the handwriting benchmark."""
from __future__ import annotations

import numpy as np

from fallbackkit.scan import digits_synth
from fallbackkit.scan.simulate import page_transform

_IMAGES, _LABELS = digits_synth.load_mnist()
TEST_START = digits_synth.VALID_END


def real_digit(digit: str, k: int = 0) -> np.ndarray:
    """The k-th image of `digit` in the test split (never trained on)."""
    idx = np.nonzero(_LABELS[TEST_START:] == int(digit))[0]
    return _IMAGES[TEST_START + idx[k % len(idx)]]


def write_comb(page: np.ndarray, dpi: float, field: dict, text: str, seed: int = 0, k: int = 0,
               images: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Write text (digits, spaces for empty boxes) into the field's comb cells, one per cell; images
    overrides what goes into a cell (by index), e.g. a letter or a crossed-out digit."""
    rng = np.random.default_rng(seed)
    hmat = page_transform(dpi)
    out = page.copy()
    for i, (cell, ch) in enumerate(zip(field["cells_mm"], text)):
        if images and i in images:
            digits_synth.write_digit(out, hmat, cell, images[i], rng)
        elif ch.strip():
            digits_synth.write_digit(out, hmat, cell, real_digit(ch, k + i), rng)
    return out
