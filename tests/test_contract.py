"""Issue 14.4: the print/scan contract has one owner (templates/contract.py); the layout draws with
it, the recorded geometry says it, the scan engine reads it."""
from __future__ import annotations

from fallbackkit.generate import sheet_geometry
from fallbackkit.scan import engine, locate, pipeline, read
from fallbackkit.templates import contract, layout


def test_layout_and_scan_share_the_contract(kit, ward_pack):
    assert (layout.MARK_SIZE, layout.MARK_HOLE, layout.QR_SIZE, layout.BOX) == (
        contract.MARK_SIZE, contract.MARK_HOLE, contract.QR_SIZE, contract.BOX)
    assert locate.MARK_SIZE_MM == contract.MARK_SIZE
    assert read.LINE_PITCH == contract.LINE_PITCH
    assert engine.PAGE_DPI == pipeline.PAGE_IMAGE_DPI == contract.PAGE_IMAGE_DPI
    # the hole probes lie inside the printed hole, the ring between the hole's edge and the mark's
    assert locate.HOLE_PROBE_MM < contract.MARK_HOLE / 2 < locate.RING_MM < contract.MARK_SIZE / 2
    assert locate.RING_DIAGONAL_MM < contract.MARK_SIZE / 2
    for sheet in ward_pack.sheets[:4]:
        geometry = sheet_geometry(kit, sheet["sheet_id"])
        assert all(m[2] == m[3] == contract.MARK_SIZE for m in geometry["marks_mm"].values())
        assert geometry["qr_mm"][2] == contract.QR_SIZE
        boxes = [o["box_mm"] for f in geometry["fields"] for o in f.get("options", [])]
        assert boxes and all(b[2] == b[3] == contract.BOX for b in boxes)
