"""The print/scan contract: the sizes the printed sheet has and the scan engine relies on, in one place.

`templates/layout.py` draws sheets with these sizes and records the resulting geometry of every
sheet (corner marks, QR zone, boxes, cells) in `layouts.geometry`; the scan engine reads positions
and sizes from that recorded geometry where it has it (`marks_mm`, `box_mm`, `cells_mm`, `lines`)
and imports the rest from here (the hole of the bottom-right mark, the pitch of ruled lines, the dpi
of the stored page image), so that a change is made once and both sides follow.
"""
from __future__ import annotations

MARK_SIZE = 6.0         # corner mark side, mm (recorded per sheet in geometry["marks_mm"])
MARK_INSET = 8.0        # page edge to the mark's outer edge, mm
MARK_HOLE = 2.6         # side of the white square hole of the bottom-right mark, mm (orientation)
QR_SIZE = 25.0          # the sheet code's side, mm (recorded per sheet in geometry["qr_mm"])
BOX = 5.0               # checkbox side, mm: big enough for a pen
LINE_PITCH = 9.0        # ruled lines of a multi-line text field, mm apart (the first at the top of the box)
PAGE_IMAGE_DPI = 100    # the page image stored for people to look at (KIT/pages/), and the engine's page copy

__all__ = ["BOX", "LINE_PITCH", "MARK_HOLE", "MARK_INSET", "MARK_SIZE", "PAGE_IMAGE_DPI", "QR_SIZE"]
