"""Flip test-time augmentation of the nodule-heatmap networks (``flip_average``): every reading
of the cell maps averages the image's and its mirror image's probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lungcad.errors import LungcadError
from lungcad.models import create_model
from lungcad.models.nodule_heatmap import score_features


def _pair(output: str = "nodule"):
    """The same weights without and with flip averaging (ImageNet features, installed offline,
    so that the maps depend on the image; the cell layer scaled up so that they differ)."""
    torch.manual_seed(0)
    plain = create_model("nodule-heatmap-lite0", 2, output=output, head_channels=8)
    with torch.no_grad():
        plain.cells.weight.mul_(20)
        plain.cells.bias.zero_()
    flip = create_model("nodule-heatmap-lite0", 2, output=output, head_channels=8,
                        flip_average=True)
    flip.load_state_dict(plain.state_dict())
    return plain.eval(), flip.eval()


def test_the_maps_are_the_mean_of_the_image_and_its_mirror_flipped_back():
    plain, flip = _pair()
    x = torch.rand(2, 1, 96, 128)
    with torch.no_grad():
        own, mirror = torch.sigmoid(plain.cell_logits(x)), torch.sigmoid(plain.cell_logits(x.flip(-1)))
        averaged = torch.sigmoid(flip.cell_logits(x))
        assert not torch.allclose(own, mirror.flip(-1), atol=1e-3)  # the network is not symmetric
        assert torch.allclose(averaged, (own + mirror.flip(-1)) / 2, atol=1e-5)
        # mirror-consistent: the mirror image's maps are the image's maps, mirrored
        assert torch.allclose(torch.sigmoid(flip.cell_logits(x.flip(-1))), averaged.flip(-1),
                              atol=1e-5)
        # the image probability is the strongest averaged cell, as detection reads it
        assert torch.allclose(torch.sigmoid(flip(x))[:, 0], averaged[:, 0].amax(dim=(1, 2)),
                              atol=1e-5)


@pytest.mark.parametrize("output", ["nodule", "malignant"])
def test_validation_scores_from_cached_features_match_the_forward(output):
    """The trainer scores validation images from cached frozen features (image and mirror):
    with flip averaging they must equal what the saved network predicts."""
    _, flip = _pair(output)
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        f8, f16 = flip.frozen_features(x)
        m8, m16 = flip.frozen_features(x.flip(-1))
        expected = torch.sigmoid(flip(x))[:, 0].numpy()
    feats = {"f8": f8.numpy(), "f16": f16.numpy(), "f8_flip": m8.numpy(), "f16_flip": m16.numpy()}
    np.testing.assert_allclose(score_features(flip, feats, output), expected, atol=1e-5)


def test_flip_average_must_be_a_boolean_for_a_one_output_network():
    with pytest.raises(LungcadError, match="flip_average is true or false"):
        create_model("nodule-heatmap-lite0", 2, pretrained=False, flip_average="no")
    with pytest.raises(LungcadError, match="flip_average"):
        create_model("nodule-heatmap-lite0", 3, pretrained=False, flip_average=True)
