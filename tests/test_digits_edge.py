"""A digit written on a comb box's printed side is not read as a surely empty box (issue 10, fail closed).

A 1 written along the box's side, on the outline or hugging it inside, reaches no further into the
box than the band where the outline is printed: the cut takes it for line or drops it, and the box
read empty with no ink, "surely empty", so that ' 85' could be pre-filled for 185. Each empty box
now carries its edge ink (`digits._edge_ink`: ink along the inside of its outline that the printed
line does not explain), and an empty box with edge ink is an unsure empty, never pre-filled
(`suggest.EMPTY_SURE_EDGE`). Real printed vitals sheets, the real digit that was lost (calibration
split image 3777, found by bench/bench_handwriting.py --split calibrate on a phone photo), office
scans and phone photos (`degrade.py`), read by the engine."""
from __future__ import annotations

import numpy as np
import pytest

from fallbackkit.generate import print_patient
from fallbackkit.scan import degrade, digits, digits_synth, suggest as sg
from fallbackkit.scan.simulate import page_transform
from fallbackkit.scan.suggest import SuggestionContext, suggest
from digits_helpers import write_comb
from kit_helpers import census_kit
from scan_engine_helpers import Sheets, field, reading

DPI = 200
PPM = DPI / 25.4
LOST_ONE = 3777          # the written 1 that read as an empty box (data/handwriting, calibration split)
FIELD = "c1.bp_systolic"


@pytest.fixture(scope="module")
def sheet(tmp_path_factory):
    root = tmp_path_factory.mktemp("edge")
    kit = census_kit(root, {"3B": 1})
    mrn = kit.db.execute("SELECT mrn FROM patients LIMIT 1").fetchone()[0]
    printed = print_patient(kit, "vitals", mrn, root / "vitals.pdf", actor="tester")
    sheets = Sheets(kit, printed.out_path, DPI)
    sid, image, geometry = sheets.pages()[0]
    context = SuggestionContext(kit.db.conn, kit.templates_dir)
    yield sheets, image, geometry, context
    kit.close()


def _read(sheet, page, name: str, tier: str, seed: int) -> tuple[list[dict], dict]:
    sheets, _, geometry, context = sheet
    f = field(geometry, name)
    scan = degrade.degrade(page, tier, np.random.default_rng(seed), DPI)
    raw = reading(sheets.read(scan), name).raw
    assert raw.get("cells"), raw   # the field has ink: its boxes are read
    got = suggest(raw, f, context.checks(f"{geometry['template']}@{geometry['version']}", f))
    return raw["cells"], got


def _not_left_out(cells: list[dict], got: dict) -> None:
    """The first box's stroke is not lost: the box is read as something, or it is an unsure empty,
    and the digits of the other boxes are never pre-filled as the whole number."""
    first = cells[0]
    if not first.get("alts"):
        assert first.get("edge_ink", 0) > sg.EMPTY_SURE_EDGE, cells
    assert not (got["prefill"] and got["suggestion"] == "85"), got
    assert not (got["cells"][0]["digit"] == "" and got["cells"][0]["sure"]), got


@pytest.mark.parametrize("tier", ["office", "phone"])
@pytest.mark.parametrize("centre_mm", [-0.3, -0.15])
def test_the_1_written_on_the_first_box_side_is_never_left_out_of_the_number(sheet, tier, centre_mm):
    """The very 1 that was lost, its stroke centred 0.15-0.3 mm inside the first box's right side
    (the side it shares with the second box), beside an 8 and a 5: before, 6 of these 8 reads
    pre-filled the whole field as 85."""
    _, image, geometry, _ = sheet
    f = field(geometry, FIELD)
    page = write_comb(image, DPI, f, " 85", seed=3, clear=True)
    x, y, w, _ = f["cells_mm"][0]
    images, labels = digits_synth.load_mnist()
    assert labels[LOST_ONE] == 1 and digits_synth.TRAIN_END <= LOST_ONE < digits_synth.VALID_END
    alpha, _ = digits_synth.ink_alpha(images[LOST_ONE], f["cells_mm"][0], PPM, np.random.default_rng(1))
    centre = (alpha.sum(axis=0) * np.arange(alpha.shape[1])).sum() / alpha.sum() / PPM
    digits_synth.paste(page, page_transform(DPI), alpha, (x + w + centre_mm - centre, y + 1.5), PPM, 30)
    for seed in (0, 1):
        _not_left_out(*_read(sheet, page, FIELD, tier, seed))


@pytest.mark.parametrize("tier", ["office", "phone"])
@pytest.mark.parametrize("width_mm,side,inside_mm", [
    (0.3, "left", 0.25), (0.3, "right", 0.25),          # a thin pen hugging the side inside the box
    (0.5, "right", 0.0), (0.5, "left", 0.25), (0.5, "right", 0.25),
    (0.8, "left", 0.0), (0.8, "right", 0.0),             # a broad pen on the line
    (0.8, "right", 0.25)])
def test_a_stroke_drawn_on_the_first_box_side_is_never_left_out(sheet, tier, width_mm, side, inside_mm):
    """A straight 5.5 mm stroke on the first box's left or right side line (centred on it, or
    0.25 mm inside), pens 0.3-0.8 mm: before, 15 of these 16 read as a surely empty box."""
    _, image, geometry, _ = sheet
    f = field(geometry, FIELD)
    page = write_comb(image, DPI, f, " 85", seed=3, clear=True)
    x, y, w, _ = f["cells_mm"][0]
    line_x = x + w - inside_mm if side == "right" else x + inside_mm
    bar = np.ones((int(5.5 * PPM), max(1, int(round(width_mm * PPM)))), np.float32)
    digits_synth.paste(page, page_transform(DPI), bar, (line_x - width_mm / 2, y + 1.5), PPM, 40)
    _not_left_out(*_read(sheet, page, FIELD, tier, 0))


@pytest.mark.parametrize("tier", ["office", "phone"])
def test_empty_boxes_beside_written_digits_stay_surely_empty(sheet, tier):
    """Numbers with an empty first box and clear digits beside it: every empty box has no edge ink
    above the threshold, so the numbers are still pre-filled whole (no new reviews)."""
    _, image, geometry, _ = sheet
    written = {"c1.pulse": " 72", "c2.pulse": " 96", "c1.bp_systolic": " 98", "c2.bp_diastolic": " 64"}
    page = image
    for j, (name, text) in enumerate(written.items()):
        page = write_comb(page, DPI, field(geometry, name), text, seed=10 + j, k=j, clear=True)
    for seed in (0, 1, 2):
        for name, text in written.items():
            cells, got = _read(sheet, page, name, tier, seed)
            assert not cells[0].get("alts") and cells[0].get("edge_ink", 0) <= sg.EMPTY_SURE_EDGE, cells
            assert got["cells"][0]["digit"] == "" and got["cells"][0]["p"] == 1.0


def test_edge_ink_of_a_drawn_box():
    """On a box drawn at CELL_PPM: its outline alone gives no edge ink, nor does ink beyond it (the
    neighbour's); a stroke inside the band along its side, or lying along the whole line, does;
    the 28 x 28 inputs and ink counts are normalise_many's."""
    ppm = digits.CELL_PPM
    m = int(round(ppm))
    h, w = int(round(10 * ppm)), int(round(7.5 * ppm))
    blank = np.full((h, w), 245, np.uint8)
    for r in (m, h - m):
        blank[r - 1:r + 1, :] = 90
    for c in (m, w - m):
        blank[:, c - 1:c + 1] = 90
    hugging = blank.copy()
    hugging[30:62, w - m - 4:w - m - 1] = 30        # a 1 inside the right side, 1-3 px from the line
    beyond = blank.copy()
    beyond[30:62, w - m + 1:w - m + 4] = 30         # the same just outside the box
    along = blank.copy()
    along[m - 2:h - m + 2, m:m + 4] = 30            # a 0.5 mm stroke on the left line along its whole length
    cells = [blank, hugging, beyond, along]
    got = digits.measure_many(cells, [20.0] * 4)
    assert got[0][2] == 0 and got[2][2] == 0
    assert got[1][2] > sg.EMPTY_SURE_EDGE and got[3][2] > sg.EMPTY_SURE_EDGE
    for (n1, ink1, _), (n2, ink2) in zip(got, digits.normalise_many(cells, [20.0] * 4)):
        assert ink1 == ink2 and (n1 is None) == (n2 is None)
        assert n1 is None or np.array_equal(n1, n2)
    # a Batch stores the edge ink of the boxes read empty, and the suggestion weighs it
    batch = digits.Batch()
    for p in cells:
        batch.cells.append({"ink": 0})
        batch.patches.append(p)
        batch.blacks.append(20.0)
    stored = list(batch.cells)
    batch.finish()
    assert [c.get("edge_ink", 0) > sg.EMPTY_SURE_EDGE for c in stored] == [False, True, False, True]
    assert "edge_ink" not in stored[0] and not any(c.get("alts") for c in stored)
