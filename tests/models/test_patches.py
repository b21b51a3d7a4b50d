"""Candidate patches: centred where asked, at the asked field of view, rotated and mirrored as
asked; the patch classifier learns a bright disc from clutter and scores with averaging."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lungcad.models.patches import DIHEDRAL, PatchSettings, dihedral_patches, sample_patches
from lungcad.errors import LungcadError
from lungcad.models.nodule_patch import build_patch_classifier, score_candidates
from lungcad.training.patch_classifier import (PatchTraining, settings_from,
                                               train_patch_classifier)

MM = 1.0


def _image_with_marker() -> torch.Tensor:
    """A 200 px ramp with a bright pixel block at (x=120, y=80), a dimmer one 6 px right and a
    dimmer still one 7 px below (no symmetry of the square maps the picture onto itself)."""
    image = np.tile(np.linspace(0, 0.2, 200, dtype=np.float32), (200, 1))
    image[78:83, 118:123] = 1.0
    image[78:83, 124:129] = 0.6
    image[86:89, 119:122] = 0.4
    return torch.from_numpy(image)


def test_a_patch_is_centred_on_its_point_at_its_field_of_view():
    settings = PatchSettings(side=21, context_mm=(21.0, 42.0))
    patch = sample_patches(_image_with_marker(), np.array([[120.0, 80.0]]), MM, settings)
    assert patch.shape == (1, 2, 21, 21)
    close, wide = patch[0, 0].numpy(), patch[0, 1].numpy()
    bright = np.argwhere(close > close.max() * 0.9)
    assert np.allclose(bright.mean(axis=0), (10, 10))   # the block's centre on the patch's
    # the close view shows the 5 px block over 5 pixels, the wide one (2 px a pixel) over ~2.5
    assert len(bright) == 25
    assert 4 <= (wide > wide.max() * 0.9).sum() <= 9
    # the dimmer block lies to the right (larger column) in the plain patch ...
    assert close[10, 16] > close[10, 4]
    # ... to the left in the mirror image, and above the centre after a quarter turn
    mirrored = sample_patches(_image_with_marker(), np.array([[120.0, 80.0]]), MM, settings,
                              mirror=[True])[0, 0].numpy()
    assert mirrored[10, 4] > mirrored[10, 16]
    turned = sample_patches(_image_with_marker(), np.array([[120.0, 80.0]]), MM, settings,
                            angle=[np.pi / 2])[0, 0].numpy()
    assert turned[4, 10] > turned[16, 10] and turned[4, 10] > turned[10, 16]
    # each channel is standardised
    assert np.allclose(patch.mean(dim=(2, 3)).numpy(), 0, atol=1e-5)


def test_dihedral_views_are_the_eight_symmetries():
    settings = PatchSettings(side=16, context_mm=(16.0,))
    views = dihedral_patches(_image_with_marker(), np.array([[120.0, 80.0], [60.0, 60.0]]), MM,
                             settings)
    assert views.shape == (8, 2, 1, 16, 16) and len(DIHEDRAL) == 8
    plain = views[0, 0, 0]
    # a sampled mirror image equals the plain patch flipped, to resampling precision
    assert torch.allclose(views[4, 0, 0], plain.flip(-1), atol=1e-4)
    # the eight views of an asymmetric patch differ from each other
    flat = views[:, 0].reshape(8, -1)
    assert (torch.cdist(flat, flat) + torch.eye(8) * 1e3).min() > 1e-2


def test_no_points_give_no_patches_and_bad_settings_are_refused():
    assert sample_patches(_image_with_marker(), np.zeros((0, 2)), MM).shape[0] == 0
    with pytest.raises(LungcadError, match="side of at least 8"):
        PatchSettings(side=4)
    with pytest.raises(LungcadError, match="patch classifier settings"):
        settings_from({"patches": {"size": 32}})
    patches, training = settings_from({"patches": {"context_mm": [20, 40]},
                                       "patch_training": {"steps": 5}})
    assert patches.context_mm == (20.0, 40.0) and training.steps == 5
    with pytest.raises(LungcadError, match="unknown patch classifier"):
        build_patch_classifier("resnet", 2)


def _scene(seed: int) -> tuple[torch.Tensor, list[tuple[float, float]], list[tuple[float, float]]]:
    """Noise with bright discs (nodules) and bright bars (clutter) at known places."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0.4, 0.03, (160, 160)).astype(np.float32)
    rows, cols = np.indices(image.shape)
    discs, bars = [], []
    for i in range(3):
        x, y = 30 + 50 * i, 40.0
        image[(cols - x) ** 2 + (rows - y) ** 2 <= 36] += 0.3
        discs.append((float(x), y))
        image[112:117, 18 + 50 * i:42 + 50 * i] += 0.3
        bars.append((30.0 + 50 * i, 114.0))
    return torch.from_numpy(image), discs, bars


def test_the_patch_classifier_learns_discs_from_bars():
    torch.manual_seed(0)
    images, rows = [], []
    for seed in range(2):
        image, discs, bars = _scene(seed)
        images.append(image)
        rows += [(seed, x, y, 1, 1.0) for x, y in discs] + [(seed, x, y, 0, 1.0) for x, y in bars]
    samples = pd.DataFrame(rows, columns=["image", "x", "y", "label", "jitter_mm"])
    network = build_patch_classifier("cnn", 2, widths=(8, 16))
    settings = PatchSettings(side=16, context_mm=(16.0, 32.0))
    train_patch_classifier(network, images, samples, MM, settings,
                           PatchTraining(steps=60, batch_size=8, lr=3e-3), log=lambda m: None)
    test, discs, bars = _scene(7)
    points = np.array(discs + bars)
    averaged = score_candidates(network, test, points, MM, settings, tta=True)
    single = score_candidates(network, test, points, MM, settings, tta=False)
    assert averaged.shape == single.shape == (6,)
    assert averaged[:3].min() > averaged[3:].max()      # every disc above every bar
    assert not np.allclose(averaged, single)            # averaging is not the single view


def test_scores_read_in_batches_equal_one_pass_over_every_patch(monkeypatch):
    """score_candidates reads SCORE_BATCH patches at a time: the same probabilities, in the
    same order, as one forward pass over every view of every candidate."""
    from lungcad.models import nodule_patch
    from lungcad.models.patches import dihedral_patches

    torch.manual_seed(0)
    network = build_patch_classifier("cnn", 2, widths=(8, 16)).eval()
    settings = PatchSettings(side=16, context_mm=(16.0, 32.0))
    image = torch.rand(128, 128)
    points = np.random.default_rng(0).uniform(20, 108, size=(7, 2))  # 56 views
    monkeypatch.setattr(nodule_patch, "SCORE_BATCH", 5)                # 12 batches, the last short
    batched = score_candidates(network, image, points, MM, settings, tta=True)
    with torch.no_grad():
        views = dihedral_patches(image, points, MM, settings)
        whole = torch.sigmoid(network(views.flatten(0, 1))).reshape(8, 7).mean(dim=0).numpy()
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-6)
    assert np.ptp(batched) > 0                                         # not one value for all
