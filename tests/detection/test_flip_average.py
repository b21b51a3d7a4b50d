"""Flip test-time augmentation of a detector's cell maps (MarkSettings.flip_average)."""

from __future__ import annotations

import numpy as np
import pytest

from detector_testing import chest_png, no_lung_model, save_detector_dir
from lungcad.errors import LungcadError


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    import lungcad

    return lungcad.load_model(save_detector_dir(tmp_path_factory.mktemp("det") / "det"))


def _image(tmp_path):
    from lungcad.io import load_image

    return load_image(chest_png(tmp_path / "chest.png", 128, 128, seed=3)).array


def test_flip_average_is_the_mean_of_the_image_and_its_mirror_flipped_back(detector, tmp_path):
    image = _image(tmp_path)
    with no_lung_model():
        plain = detector.detect(image).nodule_map
        mirror = detector.detect(image[:, ::-1].copy()).nodule_map
        both = detector.detect(image, marks={"flip_average": True}).nodule_map
        both_of_mirror = detector.detect(image[:, ::-1].copy(),
                                         marks={"flip_average": True}).nodule_map
    assert not np.allclose(plain, mirror[:, ::-1], atol=1e-3)  # the network is not symmetric
    np.testing.assert_allclose(both, (plain + mirror[:, ::-1]) / 2, atol=1e-5)
    np.testing.assert_allclose(both_of_mirror, both[:, ::-1], atol=1e-5)  # mirror-consistent


def test_flip_average_must_be_a_boolean(detector, tmp_path):
    with pytest.raises(LungcadError, match="flip_average must be true or false"):
        detector.detect(_image(tmp_path), marks={"flip_average": "no"})
