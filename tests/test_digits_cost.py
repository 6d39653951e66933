"""The digits' cheaper cutting, normalising and forward pass give the models what they were trained on.

Cells of real printed MAR and vitals sheets with real handwritten digits (the test split) in their comb
boxes, office-scanned and phone-photographed, read by the engine: every cell the page hands to
`digits.Batch` is cut, normalised and classified by the scan's code and by the code as it was
(`digits_reference.py`, frozen), and the two must agree: the same cell pixels, the same ink counts,
the same empty cells, the same 28 x 28 inputs (within float noise) and the same probabilities."""
from __future__ import annotations

import cv2
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
    np.testing.assert_allclose(probs, _combined(pa, pb), rtol=0, atol=2e-5)   # a box's: both models' product
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
        mean = _combined(pa, pb)   # a box's probabilities: both models' weighted product (each votes too)
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


def _combined(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """digits.combine from the frozen code's probabilities (each model's log-probabilities are its
    calibrated logits up to a constant per box, which the normalising cancels)."""
    la = np.log(np.maximum(pa.astype(np.float64), 1e-300))
    lb = np.log(np.maximum(pb.astype(np.float64), 1e-300))
    return digits.combine(la, lb)


def test_many_boxes_go_through_the_networks_in_chunks_with_the_same_numbers():
    """A page's boxes pass the networks NET_CHUNK at a time (cheaper: the windows stay in the cache);
    each box reads as it does alone and as the frozen code reads the whole page at once."""
    rng = np.random.default_rng(3)
    n = 3 * digits.NET_CHUNK + 5
    x = ((rng.random((n, 28, 28)) > 0.8) * rng.random((n, 28, 28))).astype(np.float32)
    probs, votes, feats = digits.opinions(x)
    assert probs.shape == (n, 11) and votes.shape == (n, 2) and feats.shape[0] == n
    _, then_votes, then_feats = ref.opinions(digits.model(), digits.second_model(), x)
    then_probs = _combined(ref.read(digits.model(), x), ref.read(digits.second_model(), x))
    np.testing.assert_allclose(probs, then_probs, rtol=0, atol=2e-5)
    np.testing.assert_allclose(feats, then_feats, rtol=0, atol=1e-5)
    for i in range(0, n, 7):
        alone = digits.opinions(x[i:i + 1])
        np.testing.assert_allclose(alone[0][0], probs[i], rtol=0, atol=1e-6)
        assert (alone[1][0] == votes[i]).all() or np.sort(probs[i])[-2] >= probs[i].max() - 1e-4


def test_the_kits_memory_blends_as_before_when_only_the_close_cells_are_searched():
    """Memory.blend looks for a cell's nearest among the memory's cells within MEMORY_SIM of it, not
    among all of them (a kit's memory grows with its decisions): the same probabilities bit for bit
    and the same cells touched, for cells with no close neighbour, fewer than MEMORY_K and many more,
    for a memory smaller than MEMORY_K and for a large one."""
    rng = np.random.default_rng(11)
    dim = 32
    centres = np.abs(rng.normal(size=(10, dim)))
    for size in (3, 40, 4000):
        which = rng.integers(0, 10, size)
        feats = np.abs(centres[which] + rng.normal(scale=0.45, size=(size, dim))).astype(np.float32)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        memory = digits.Memory(feats, which)
        cells = np.abs(centres[rng.integers(0, 10, 60)] + rng.normal(scale=0.45, size=(60, dim)))
        cells[:5] = rng.random((5, dim)) * (rng.random((5, dim)) > 0.9)   # like nothing in the memory
        cells = (cells / np.maximum(np.linalg.norm(cells, axis=1, keepdims=True), 1e-6)).astype(np.float32)
        probs = rng.dirichlet(np.ones(11), 60).astype(np.float32)
        got, touched = memory.blend(cells, probs)
        then, then_touched = ref.blend(memory.feats, memory.labels, cells, probs)
        assert np.array_equal(touched, then_touched) and np.array_equal(got, then)
        close = (cells @ memory.feats.T >= digits.MEMORY_SIM).sum(axis=1)
        assert (close == 0).any() and (close > 0).any()
        if size > 1000:
            assert (close > digits.MEMORY_K).any() and ((close > 0) & (close < digits.MEMORY_K)).any()


def test_pieces_are_labelled_in_16_bits_while_they_fit_and_in_32_bits_beyond():
    """The page's ink pieces are labelled in 16 bits (cheaper) unless there are too many for them:
    either way the labels are OpenCV's 32-bit ones."""
    many = np.zeros((600, 1000), np.uint8)
    many[::2, ::2] = 1                      # 150,000 pieces: more than 16 bits hold
    few = many.copy()
    few[200:] = 0
    few[:, 300:] = 0                        # 15,000 pieces
    for a in (few, many):
        n, labels = digits._components(a)
        n32, labels32 = cv2.connectedComponents(a, connectivity=8, ltype=cv2.CV_32S)
        assert n == n32 and np.array_equal(labels, labels32)
    assert digits._components(few)[1].dtype == np.uint16 and digits._components(many)[1].dtype == np.int32


def test_the_first_layer_taken_the_other_way_round_gives_the_windows_numbers():
    """Both models' first layer as one product of the weights by shifted copies of the images
    (`digits._first_layer`) gives what the product of the images' windows by the weights gave (the
    frozen forward pass), for each model: on this machine's BLAS bit for bit, elsewhere within the
    rounding of a 25-term float32 sum."""
    rng = np.random.default_rng(4)
    x = ((rng.random((37, 28, 28)) > 0.75) * rng.random((37, 28, 28))).astype(np.float32)
    first, second = digits.model(), digits.second_model()
    q = digits._first_layer(x, *digits._first_layer_of(first, second))
    c1 = first.w1.shape[1]
    win = ref._pool_windows(x[..., None], 5)
    for model, part in ((first, q[:c1]), (second, q[c1:])):
        then = ref._conv_pool_relu(win, model.w1, model.b1)                 # (B, 12, 12, C1)
        now = digits._channels_last(part, len(x))
        assert now.shape == then.shape
        np.testing.assert_allclose(now, then, rtol=0, atol=1e-6)
    alone = digits._first_layer(x, *digits._first_layer_of(first))
    np.testing.assert_allclose(alone, q[:c1], rtol=0, atol=1e-6)


def test_a_boxs_probabilities_weigh_both_models_and_the_first_alone_without_a_second(monkeypatch):
    """Both models lean the same way: the box is surer than the first model says; they pull apart:
    less sure than the first says (and a box is pre-filled only where their votes agree anyway).
    An install without the second model's file reads with the first model's probabilities."""
    za = np.log(np.array([[0.9] + [0.01] * 10, [0.9] + [0.01] * 10]))
    zb = np.log(np.array([[0.8] + [0.02] * 10, [0.02, 0.8] + [0.02] * 9]))
    p = digits.combine(za, zb)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p[0, 0] > 0.9 and p[1, 0] < 0.9 and p[1, 1] > 0.01
    x = ((np.random.default_rng(5).random((6, 28, 28)) > 0.8) * 0.9).astype(np.float32)
    monkeypatch.setattr(digits, "second_model", lambda: None)
    probs, votes, _ = digits.opinions(x)
    np.testing.assert_allclose(probs, ref.read(digits.model(), x), rtol=0, atol=2e-5)
    assert (votes[:, 1] == digits.NO_VOTE).all()
