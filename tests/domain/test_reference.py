"""The domain reference: out-of-fold threshold, far inputs flagged, file round trip."""

from __future__ import annotations

import numpy as np

from lungcad.domain.descriptors import N_DESCRIPTORS, describe
from lungcad.domain.reference import DomainReference, fit_with_threshold


def _images(n, seed=0, invert=False):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:96] / 96.0
    out = []
    for _ in range(n):
        body = np.exp(-((xx - 0.5 + rng.normal(0, 0.03)) ** 2 + (yy - 0.5) ** 2) / 0.08)
        image = np.clip(0.2 + 0.6 * body + rng.normal(0, 0.02, body.shape), 0, 1)
        out.append((1 - image if invert else image).astype(np.float32))
    return out


def test_threshold_from_out_of_fold_scores_and_obvious_outliers_flagged(tmp_path):
    train = np.stack([describe(im, 64) for im in _images(120)])
    assert train.shape == (120, N_DESCRIPTORS)
    folds = np.arange(120) % 5
    reference, oof = fit_with_threshold(train, folds, 64)
    assert np.mean(oof > reference.threshold) <= 0.05
    inverted = np.stack([describe(im, 64) for im in _images(20, seed=1, invert=True)])
    noise = np.stack([describe(np.random.default_rng(i).random((96, 96)).astype(np.float32), 64)
                      for i in range(20)])
    assert not reference.in_domain(reference.score(inverted)).any()
    assert not reference.in_domain(reference.score(noise)).any()
    fresh = np.stack([describe(im, 64) for im in _images(40, seed=7)])
    assert reference.in_domain(reference.score(fresh)).mean() >= 0.9
    loaded = DomainReference.load(reference.save(tmp_path / "domain.npz"))
    assert np.allclose(loaded.score(noise), reference.score(noise), rtol=1e-4)
    assert loaded.threshold == reference.threshold
    assert (tmp_path / "domain.npz").stat().st_size < 300_000
