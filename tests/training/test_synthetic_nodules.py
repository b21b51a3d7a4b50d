"""Synthetic training images for the nodule heatmap: made from training images only, their
targets mark the synthetic nodules, and their malignancy is left unsupervised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from nodule_scenes import SIDE, jsrt_like, lungs, spy_on_training_images

from lungcad.errors import LungcadError
from lungcad.training import synthetic_nodules
from lungcad.training.nodule_heatmap import heatmap_loss, train_tasks
from lungcad.training.synthetic_nodules import SyntheticSet, SyntheticSettings, nodule_discs


def test_synthetic_copies_are_made_from_training_images_only(tmp_path, monkeypatch):
    """A spy on the image and mask loaders: only the fold's training images are read; the
    validation and test images never are, so no nodule can be drawn into them."""
    paths = jsrt_like(tmp_path / "data")
    train, val, test = paths[:6], paths[6:8], paths[8:]
    read = spy_on_training_images(monkeypatch)
    lines: list[str] = []
    config = {"image_size": SIDE, "epochs": 1, "batch_size": 4, "crop_cells": 4,
              "model_args": {"pretrained": False, "head_channels": 8}, "torch_threads": 1,
              "synthetic": {"copies": 2, "per_image": 2, "seed": 3}}
    result = train_tasks(tmp_path / "data", train, val, ["jsrt-nodule"], config,
                         log=lines.append, score_paths=test)
    assert read and set(read) <= set(train)
    assert not set(read) & set(val + test)
    made = [line for line in lines if line.startswith("synthetic nodules:")]
    assert len(made) == 1 and "on 12 copies of 6 training images" in made[0]
    assert int(made[0].split()[2]) >= 12        # most copies got both their nodules
    assert result["scores"]["jsrt-nodule"].shape == (1,)


def test_simulated_training_set_refuses_the_held_out_images():
    rows = pd.DataFrame({"path": ["a", "b"], "x_512": [200.0, np.nan], "y_512": [250.0, np.nan],
                         "size_mm": [20.0, np.nan]})
    image = np.full((SIDE, SIDE), 0.4, np.float32)
    with pytest.raises(LungcadError, match="test image"):
        synthetic_nodules.simulate_training_set(rows, ["b"], lambda p: image, lambda p: lungs(),
                                                2.8, SyntheticSettings(copies=1))
    with pytest.raises(LungcadError, match="JSRT nodule columns"):
        synthetic_nodules.simulate_training_set(rows.drop(columns="size_mm"), [],
                                                lambda p: image, lambda p: lungs(), 2.8,
                                                SyntheticSettings(copies=1))


def test_synthetic_targets_mark_the_discs_and_leave_their_malignancy_unknown():
    nodule = np.zeros((2, 8, 8), np.float32)
    malignant = np.zeros_like(nodule)
    nodule[0, 1, 1] = malignant[0, 1, 1] = 1.0          # image 0: a real malignant nodule
    made = SyntheticSet(images=[np.zeros((128, 128))] * 2, base=[0, 1], nodules=[
        pd.DataFrame({"x": [88.0], "y": [88.0], "diameter_mm": [0.7 * 40]}),
        pd.DataFrame({"x": [24.0, 104.0], "y": [24.0, 40.0], "diameter_mm": [0.7 * 8] * 2})])
    n, m = made.targets(nodule, malignant, stride=16, mm_per_pixel=0.7)
    # image 0's copy: its real nodule kept (malignant) plus a disc of radius 20 px about
    # (88, 88): the cell centred there and its four neighbours 16 px away (not the diagonal
    # ones, 22.6 px away)
    assert n[0, 1, 1] == 1 and m[0, 1, 1] == 1
    disc = nodule_discs(made.nodules[0], 8, 16, 0.7)
    assert sorted(map(tuple, np.argwhere(disc))) == [(4, 5), (5, 4), (5, 5), (5, 6), (6, 5)]
    assert (n[0][disc] == 1).all() and np.isnan(m[0][disc]).all()
    assert np.isfinite(m[0][~disc]).all()
    # image 1's copy: two small nodules, each at least its centre cell
    assert n[1, 1, 1] == 1 and n[1, 2, 6] == 1 and n[1].sum() == 2
    assert np.isnan(m[1, 1, 1]) and np.isnan(m[1, 2, 6])
    # the inputs are not changed
    assert nodule.sum() == 1 and np.isfinite(malignant).all()


def test_heatmap_loss_leaves_a_synthetic_nodules_malignancy_unsupervised():
    torch.manual_seed(0)
    cells = torch.randn(2, 2, 4, 4, requires_grad=True)
    nodule = torch.zeros(2, 4, 4)
    malignant = torch.zeros(2, 4, 4)
    nodule[0, 1, 1] = malignant[0, 1, 1] = 1.0          # a real malignant nodule
    nodule[1, 2, 2] = 1.0
    malignant[1, 2, 2] = float("nan")                  # a synthetic nodule
    loss = heatmap_loss(cells, nodule, malignant, 10.0, 1.0)
    loss.backward()
    assert torch.isfinite(loss)
    grad = cells.grad[:, 1]                            # the malignancy logits
    assert grad[0].abs().sum() > 0                     # the real image's malignancy is learnt
    assert grad[1].abs().sum() == 0                    # the synthetic image's is not


def test_settings_are_checked():
    assert SyntheticSettings.from_mapping(None).copies == 0
    assert SyntheticSettings.from_mapping({"kinds": ["sphere"]}).kinds == ("sphere",)
    with pytest.raises(LungcadError, match="unknown setting"):
        SyntheticSettings.from_mapping({"copy": 2})
    with pytest.raises(LungcadError, match="copies must be"):
        SyntheticSettings.from_mapping({"copies": -1})
