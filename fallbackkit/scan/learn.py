"""Learning the ward's handwriting from its own clerks.

Every comb field a person confirmed, corrected or transcribed becomes labelled cells for this kit:
the cells are cut again from the field's crop (cut from the archived original, as the review
station does, or read from a crop file kept by an older scan), normalised like a scan, and described by the
base model's hidden features; `digits.Memory` then lets later pages by the same hand vote with their
nearest neighbours. The memory is rebuilt from the store (people's decisions are the truth; undone
ones drop out) at the start of each `scan`, written to the kit directory and loaded by the workers.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ..store.kit import Kit
from . import digits
from .crops import field_crop_image
from .read import CROP_MARGIN_MM, CROP_PX_PER_MM

DEFAULT_BLACK = 30.0


def labelled_cells(kit: Kit) -> tuple[list[np.ndarray], list[int]]:
    """Normalised cell images and their digits, from the decided comb readings of the kit."""
    from ..store.readings import current_reviews
    from .suggest import SuggestionContext
    conn = kit.db.conn
    hints = SuggestionContext(conn, None)
    patches: list[np.ndarray] = []
    blacks: list[float] = []
    written_digits: list[int] = []
    rows = conn.execute(
        "SELECT r.reading_id, r.sheet_id, r.field, r.raw, r.crop_path, c.quality FROM readings r"
        " JOIN captures c ON c.capture_id = r.capture_id"
        " WHERE r.type IN ('number', 'datetime')"
        " AND r.reading_id IN (SELECT reading_id FROM reviews) ORDER BY r.capture_id, r.reading_id").fetchall()
    decided = current_reviews(conn, [row[0] for row in rows])
    pages: dict = {}
    for rid, sid, name, raw_json, crop_path, quality in rows:
        raw = json.loads(raw_json or "{}")
        cells = raw.get("cells")
        review = decided.get(rid)
        if not cells or review is None or not isinstance(review.value, str):
            continue
        written = [ch for ch in review.value if ch.isdigit()]
        inked = [i for i, c in enumerate(cells) if c.get("alts")]
        if not written or len(written) != len(inked):
            continue  # the value does not line up with the boxes written in: not a lesson
        field, _ = hints.field(sid, name)
        if field is None:
            continue
        crop = cv2.imread(str(kit.path / crop_path), cv2.IMREAD_GRAYSCALE) if crop_path else \
            field_crop_image(conn, kit.path, rid, pages)
        if crop is None:
            continue
        x, y = field["box_mm"][0], field["box_mm"][1]
        ppm = CROP_PX_PER_MM
        hmat = np.array([[ppm, 0, -(x - CROP_MARGIN_MM) * ppm], [0, ppm, -(y - CROP_MARGIN_MM) * ppm],
                         [0, 0, 1]], float)
        black = float(json.loads(quality or "{}").get("black_level", DEFAULT_BLACK))
        shift = raw.get("shift_mm", [0.0, 0.0])
        for i, ch in zip(inked, written):
            patches.append(digits.cell_patch(crop, hmat, field["cells_mm"][i], shift))
            blacks.append(black)
            written_digits.append(int(ch))
    # all the kit's labelled cells normalised in one batch (one cell alone gives the same pixels)
    images: list[np.ndarray] = []
    labels: list[int] = []
    for (norm, _), ch in zip(digits.normalise_many(patches, blacks), written_digits):
        if norm is not None:
            images.append(norm)
            labels.append(ch)
    return images, labels


def refresh(kit: Kit) -> int:
    """Rebuild the kit's memory file from the decisions; returns the number of labelled cells."""
    images, labels = labelled_cells(kit)
    path = kit.path / digits.MEMORY_FILE
    if not images:
        path.unlink(missing_ok=True)
        return 0
    memory = digits.Memory(digits.embed(images), np.array(labels))
    fd, tmp = tempfile.mkstemp(dir=kit.path, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            memory.save(fh)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return len(labels)


def load(kit_path: Path | str) -> digits.Memory | None:
    path = Path(kit_path) / digits.MEMORY_FILE
    return digits.Memory.load(path) if path.exists() else None


__all__ = ["labelled_cells", "refresh", "load"]
