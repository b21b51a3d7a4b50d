"""A model trained on synthetic images whose only signal is a bright disc (trained once)."""

from __future__ import annotations

import pytest

from disc_data import SIDE, disc_network, make_disc_set, train_binary


@pytest.fixture(scope="session")
def disc_model():
    """LungModel (unregistered architecture, so its last Conv2d is the saliency layer) trained
    for 8 epochs on 200 images of SIDE px; about 10 s on one CPU thread."""
    import torch

    from lungcad.api import Model
    from lungcad.lung_model import LungModel

    from lungcad.model_dir import ModelSpec
    from lungcad.preprocess import Preprocessing

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = make_disc_set(200, seed=1)
        preprocessing = Preprocessing(size=SIDE, channels=1, mean=0.5, std=0.25)
        network = train_binary(disc_network(), train.images, train.labels, preprocessing.apply)
    finally:
        torch.set_num_threads(threads)
    spec = ModelSpec(name="disc-test", architecture="test-disc-cnn", task="synthetic-disc",
                     classes=["no_disc", "disc"], preprocessing=preprocessing)
    return Model(LungModel(spec, network))  # the Python API's model


@pytest.fixture(scope="session")
def held_out_discs():
    """60 held-out images, every one with a disc."""
    return make_disc_set(60, seed=2, positive_fraction=1.0)
