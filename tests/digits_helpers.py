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


def clear_digit(digit: str, k: int = 0) -> np.ndarray:
    """The k-th test-split image of `digit` that the model reads as that digit at 99 % or more in
    three office-scanned boxes (three draws of position, pen and damage: one draw can be lucky): for
    tests of what the station does with a sure suggestion (accuracy itself is measured by
    bench/bench_handwriting.py, on every image)."""
    from fallbackkit.scan import digits
    rng = np.random.default_rng(0)
    found = -1
    for j in range(200):
        img = real_digit(digit, j)
        cells = [digits_synth.training_cell(img, rng, "office") for _ in range(3)]
        if all(c is not None for c in cells):
            p = digits.classify(cells)
            if (p.argmax(axis=1) == int(digit)).all() and p.max(axis=1).min() >= 0.99:
                found += 1
                if found == k:
                    return img
    raise AssertionError(f"no clear {digit} in the test split")


def write_comb(page: np.ndarray, dpi: float, field: dict, text: str, seed: int = 0, k: int = 0,
               images: dict[int, np.ndarray] | None = None, clear: bool = False) -> np.ndarray:
    """Write text (digits, spaces for empty boxes) into the field's comb cells, one per cell; images
    overrides what goes into a cell (by index), e.g. a letter or a crossed-out digit; clear: only
    digits the model reads clearly (see clear_digit)."""
    rng = np.random.default_rng(seed)
    hmat = page_transform(dpi)
    out = page.copy()
    for i, (cell, ch) in enumerate(zip(field["cells_mm"], text)):
        if images and i in images:
            digits_synth.write_digit(out, hmat, cell, images[i], rng)
        elif ch.strip():
            img = clear_digit(ch, k + i) if clear else real_digit(ch, k + i)
            digits_synth.write_digit(out, hmat, cell, img, rng)
    return out
