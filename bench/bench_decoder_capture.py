"""What catching libtiff's console messages costs per page (scan/ingest.py `decoder_messages`).

Every TIFF, PNG and JPEG page is decoded with file descriptor 2 redirected to a temporary file
(so that a decoder's message is named with its file instead of reaching the console on its own).
This prints the cost of one redirect and of decoding a 200-dpi G4 TIFF page with and without it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fallbackkit.scan import ingest


def _median_us(fn, n: int) -> float:
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    n = 50 if parser.parse_args().quick else 400

    def empty() -> None:
        with ingest.decoder_messages([]):
            pass

    print(f"one redirect of stderr: {_median_us(empty, n):.0f} us (median of 5 x {n})")
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        page = np.full((2339, 1654), 255, np.uint8)
        page[rng.random(page.shape) > 0.97] = 0
        path = Path(tmp) / "page.tif"
        Image.fromarray(page).convert("1").save(path, compression="group4", dpi=(200, 200))

        def decode() -> None:
            ingest.load_page(path, 1, "tiff")

        with_capture = _median_us(decode, max(5, n // 20))
        original = ingest.decoder_messages
        ingest.decoder_messages = lambda sink: __import__("contextlib").nullcontext(sink)
        try:
            without = _median_us(decode, max(5, n // 20))
        finally:
            ingest.decoder_messages = original
    print(f"decode one 200-dpi G4 TIFF page: {with_capture / 1000:.2f} ms with the capture, "
          f"{without / 1000:.2f} ms without ({(with_capture / without - 1) * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
