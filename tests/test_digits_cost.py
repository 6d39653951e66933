"""The digits' cheaper cutting, normalising and forward pass give the models what they were trained on.

Cells of real printed MAR and vitals sheets with real handwritten digits (the test split) in their comb
boxes, office-scanned and phone-photographed, read by the engine: every cell the page hands to
`digits.Batch` is cut, normalised and classified by the scan's code and by the code as it was
(`digits_reference.py`, frozen), and the two must agree: the same cell pixels, the same ink counts,
the same empty cells, the same 28 x 28 inputs (within float noise) and the same probabilities."""
from __future__ import annotations

import numpy as np
import pytest

from fallbackkit.generate import print_patient
from fallbackkit.scan import degrade, digits, engine
from fallbackkit.scan.simulate import fill_page
import digits_reference as ref
from digits_helpers import write_comb
from scan_engine_helpers import Sheets

DPI = 200


class _Recorder(digits.Batch):
    """The engine's Batch, keeping what each page handed to it."""
    calls: list = []

    def add(self, image, hmat, field, black, shift_mm=(0.0, 0.0)):
        _Recorder.calls.append((image, hmat.copy(), field, float(black), tuple(shift_mm)))
        return super().add(image, hmat, field, black, shift_mm)


@pytest.fixture
def scanned_cells(kit, tmp_path, monkeypatch):
    """(image, hmat, field, black, shift) of every comb field the engine read on a MAR and a vitals
    sheet, inked about two fields in three, each office-scanned and phone-photographed."""
    mrn = kit.db.execute("SELECT mrn FROM patients LIMIT 1").fetchone()[0]
    pages = []
    for template in ("mar", "vitals"):
        result = print_patient(kit, template, mrn, tmp_path / f"{template}.pdf", actor="tester")
        pages += Sheets(kit, result.out_path, DPI).pages()
    sheets = {sid: g for sid, _, g in pages}
    rng = np.random.default_rng(5)
    _Recorder.calls = []
    monkeypatch.setattr(engine.digits, "Batch", _Recorder)
    k = 0
    for sid, image, geometry in pages:
        page, _ = fill_page(image, geometry, DPI, rng, writing=0.6)
        for f in geometry["fields"]:
            if f.get("cells_mm") and rng.random() < 0.7:
                text = "".join(str(d) for d in rng.integers(0, 10, len(f["cells_mm"])))
                if rng.random() < 0.2:
                    text = " " + text[1:]
                page = write_comb(page, DPI, f, text, seed=int(rng.integers(1 << 20)), k=k)
                k += len(text)
        for tier in (degrade.office, degrade.phone):
            engine.read_page(tier(page, rng), kit_id=kit.kit_id, secret=kit.secret, geometry_for=sheets.get)
    assert len({id(c[0]) for c in _Recorder.calls}) >= 4   # every page located and read
    return _Recorder.calls


def test_scanned_cells_reach_the_models_as_before(scanned_cells):
    patches, blacks = [], []
    for image, hmat, field, black, shift in scanned_cells:
        cut = digits.comb_patches(image, hmat, field, shift)
        before = ref.comb_patches(image, hmat, field, shift)
        assert len(cut) == len(before)
        for a, b, c in zip(cut, before, field["cells_mm"]):
            assert a.shape == b.shape and np.array_equal(a, b)
            # a cell cut alone (training, the kit's memory) differs from the strip's by warp rounding
            alone = digits.cell_patch(image, hmat, c, shift)
            assert np.abs(alone.astype(int) - b).max() <= 2
        patches += before
        blacks += [black] * len(before)
    # and a few cells made harder from empty ones: a dot too small to be a digit, a pale smudge with
    # no dark pixel (not ink), a pale smudge joined to a dark stroke (ink), a stroke over the outline
    then = ref.normalise_many(patches, blacks)
    empty = [i for i, (n, ink) in enumerate(then) if ink == 0][:8]
    for j, i in enumerate(empty):
        p = patches[i].copy()
        if j % 4 == 0:
            p[38:42, 28:32] = 30
        elif j % 4 == 1:
            p[20:60, 20:26] = np.minimum(p[20:60, 20:26], 190)
        elif j % 4 == 2:
            p[20:60, 20:26] = np.minimum(p[20:60, 20:26], 190)
            p[20:60, 26:28] = 40
        else:
            p[2:60, 29:31] = 50
        patches.append(p)
        blacks.append(blacks[i])
    now, then = digits.normalise_many(patches, blacks), ref.normalise_many(patches, blacks)
    inked = [n for n, _ in then if n is not None]
    assert len(patches) >= 150 and 60 <= len(inked) < len(patches)   # inked cells and empty ones
    assert 0 < sum(0 < ink < digits.EMPTY_INK_PX for _, ink in then)  # and a few with specks only
    for (n1, ink1), (n2, ink2) in zip(now, then):
        assert ink1 == ink2 and (n1 is None) == (n2 is None)
        if n1 is not None:
            assert n1.dtype == np.float32 and n1.shape == (28, 28)
            assert np.array_equal(n1, n2)   # bit for bit: the models were trained on these inputs
    # one cell alone (training and the kit's memory normalise one at a time) as on the page
    for i in range(0, len(patches), 17):
        n1, ink1 = digits.normalise(patches[i], blacks[i])
        assert ink1 == then[i][1] and (n1 is None) == (then[i][0] is None)
        assert n1 is None or np.array_equal(n1, then[i][0])
    # the same probabilities from both models, and each model's first choice
    x = np.stack(inked)
    pa, pb = ref.read(digits.model(), x), ref.read(digits.second_model(), x)
    probs, votes, feats = digits.opinions(inked)
    np.testing.assert_allclose(probs, pa, rtol=0, atol=2e-5)   # a box's probabilities: the first model's
    _, _, then_feats = ref.opinions(digits.model(), digits.second_model(), x)
    np.testing.assert_allclose(feats, then_feats, rtol=0, atol=1e-5)
    clear = np.sort(pa, axis=1)[:, -2] < pa.max(axis=1) - 1e-4
    assert (votes[clear, 0] == pa.argmax(axis=1)[clear]).all()
    clear = np.sort(pb, axis=1)[:, -2] < pb.max(axis=1) - 1e-4
    assert (votes[clear, 1] == pb.argmax(axis=1)[clear]).all()
    assert feats.shape == (len(inked), digits.model().w3.shape[1])


def test_a_pages_cells_get_the_raw_measures_they_got_before(scanned_cells):
    """Batch, as the engine runs it page by page: each cell's ink, alternatives and votes as the frozen
    code gives them (probabilities to the stored 4 decimals, a last-decimal rounding apart)."""
    pages: dict[int, list] = {}
    for call in scanned_cells:
        pages.setdefault(id(call[0]), []).append(call)
    for calls in pages.values():
        batch, got = digits.Batch(), []
        patches, blacks = [], []
        for image, hmat, field, black, shift in calls:
            got += batch.add(image, hmat, field, black, shift)
            cut = ref.comb_patches(image, hmat, field, shift)
            patches += cut
            blacks += [black] * len(cut)
        batch.finish()
        then = ref.normalise_many(patches, blacks)
        inked = [i for i, (n, _) in enumerate(then) if n is not None]
        assert [c["ink"] for c in got] == [ink for _, ink in then]
        assert [i for i, c in enumerate(got) if "alts" in c] == inked
        x = np.stack([then[i][0] for i in inked])
        pa, pb = ref.read(digits.model(), x), ref.read(digits.second_model(), x)
        mean = pa   # a box's probabilities are the first model's (the second votes)
        for i, p, qa, qb in zip(inked, mean, pa, pb):
            cell = got[i]
            order = np.argsort(-p)
            near = np.abs(np.diff(p[order])) <= 1e-4         # a neighbour within float noise
            for k, (label, q) in enumerate(cell["alts"]):
                assert abs(q - round(float(p[order[k]]), 4)) <= 1.01e-4
                if not (near[k] or (k and near[k - 1])):
                    assert label == digits.LABELS[order[k]]
            for vote, q in zip(cell["votes"], (qa, qb)):
                top2 = np.sort(q)[-2:]
                assert vote == digits.LABELS[q.argmax()] or top2[1] - top2[0] <= 1e-4


def test_odd_cells_normalise_as_before():
    """Boxes of other sizes (a template may print smaller or larger combs, down to no interior at
    all), noisy grey, pale specks and dark blobs: the same ink counts and inputs as before."""
    rng = np.random.default_rng(1)
    for shape in [(24, 24), (30, 20), (32, 40), (40, 26), (80, 60), (96, 72)]:
        patches = [(rng.random(shape) ** 0.3 * 255).astype(np.uint8) for _ in range(4)]
        blob = np.full(shape, 250, np.uint8)
        blob[shape[0] // 2 - 2:shape[0] // 2 + 3, shape[1] // 2 - 2:shape[1] // 2 + 3] = 10
        pale = np.full(shape, 250, np.uint8)
        pale[shape[0] // 3:-shape[0] // 3, 6:-6] = 190
        pale[shape[0] // 2, 4:-4] = 20
        patches += [blob, pale]
        blacks = [float(b) for b in rng.uniform(0, 60, len(patches))]
        for (n1, ink1), (n2, ink2) in zip(digits.normalise_many(patches, blacks), ref.normalise_many(patches, blacks)):
            assert ink1 == ink2 and (n1 is None) == (n2 is None), shape
            assert n1 is None or np.allclose(n1, n2, rtol=0, atol=1e-6)


def test_white_paper_specks_and_pale_smudges_in_one_page_normalise_as_before():
    """One page's boxes together: white paper (255, whose darkness is the look-up's blank), paper-white
    pixels in a stroke's pale rim, boxes with specks only, pale smudges beside a digit (not ink) and
    empty boxes between inked ones: the same ink counts and bit for bit the same inputs."""
    rng = np.random.default_rng(7)
    shape = (80, 60)
    patches, blacks = [], []
    for j in range(24):
        paper = 255 if j % 2 else 246
        p = np.full(shape, paper, np.uint8)
        p[8, 8:52] = p[71, 8:52] = 60            # the printed outline, top and bottom
        p[8:72, 8] = p[8:72, 51] = 60            # and its sides
        kind = j % 6
        if kind in (0, 1, 2):                      # a stroke with a pale rim holding paper-white pixels
            x = 20 + kind * 6
            p[18:62, x:x + 4] = 30
            p[18:62, x + 4:x + 6] = 200
            p[18:62:5, x + 4] = 255
            p[30, 24:44] = 40
            if kind == 2:                          # and a pale smudge beside it, joined to nothing dark
                p[20:30, 40:46] = 185
        elif kind == 3:                            # specks only
            p[30:33, 30:33] = 20                  # kept (more than a speck), too little for a digit
            p[50, 20] = 25
        elif kind == 4:                            # a digit over noisy paper
            p = np.minimum(p, (rng.random(shape) * 40 + 215).astype(np.uint8))
            p[20:60, 28:32] = 35
            p[20:24, 20:40] = 35
        patches.append(p)
        blacks.append(float(rng.uniform(10, 50)))
    now, then = digits.normalise_many(patches, blacks), ref.normalise_many(patches, blacks)
    assert sum(n is not None for n, _ in then) >= 10 and sum(n is None for n, _ in then) >= 4
    assert any(0 < ink < digits.EMPTY_INK_PX for _, ink in then)
    for (n1, ink1), (n2, ink2) in zip(now, then):
        assert ink1 == ink2 and (n1 is None) == (n2 is None)
        assert n1 is None or (n1.dtype == np.float32 and np.array_equal(n1, n2))


def test_many_boxes_go_through_the_networks_in_chunks_with_the_same_numbers():
    """A page's boxes pass the networks NET_CHUNK at a time (cheaper: the windows stay in the cache);
    each box reads as it does alone and as the frozen code reads the whole page at once."""
    rng = np.random.default_rng(3)
    n = 3 * digits.NET_CHUNK + 5
    x = ((rng.random((n, 28, 28)) > 0.8) * rng.random((n, 28, 28))).astype(np.float32)
    probs, votes, feats = digits.opinions(x)
    assert probs.shape == (n, 11) and votes.shape == (n, 2) and feats.shape[0] == n
    _, then_votes, then_feats = ref.opinions(digits.model(), digits.second_model(), x)
    then_probs = ref.read(digits.model(), x)   # a box's probabilities are the first model's
    np.testing.assert_allclose(probs, then_probs, rtol=0, atol=2e-5)
    np.testing.assert_allclose(feats, then_feats, rtol=0, atol=1e-5)
    for i in range(0, n, 7):
        alone = digits.opinions(x[i:i + 1])
        np.testing.assert_allclose(alone[0][0], probs[i], rtol=0, atol=1e-6)
        assert (alone[1][0] == votes[i]).all() or np.sort(probs[i])[-2] >= probs[i].max() - 1e-4
