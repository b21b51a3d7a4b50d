import numpy as np
import pytest

from lungcad.errors import LungcadError
from lungcad.preprocess import Preprocessing, resize_area


def test_resize_area_averages_blocks():
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    out = resize_area(image, 2)
    expected = image.reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_resize_area_non_square_and_enlarging():
    image = np.random.default_rng(0).random((30, 60), dtype=np.float32)
    assert resize_area(image, (15, 20)).shape == (15, 20)
    up = resize_area(image, 120)
    assert up.shape == (120, 120) and up.min() >= image.min() - 1e-6 and up.max() <= image.max() + 1e-6


def test_apply_normalises_and_replicates_channels():
    p = Preprocessing(size=32, channels=3, mean=0.5, std=0.25)
    image = np.full((64, 64), 0.75, np.float32)
    image[:2, :2] = 0.25  # one 2x2 block becomes one output pixel
    out = p.apply(image)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    expected = np.ones((32, 32), np.float32)
    expected[0, 0] = -1.0
    for channel in out:
        np.testing.assert_allclose(channel, expected, rtol=1e-6)
    assert Preprocessing.from_dict(p.to_dict()) == p


@pytest.mark.parametrize("image, message", [
    (np.full((64, 64), 200.0, np.float32) * np.eye(64, dtype=np.float32), "raw pixel values"),
    (np.zeros((10, 64), np.float32), "too small"),
    (np.zeros((64, 64, 3), np.float32), "2-D grayscale"),
    (np.full((64, 64), 0.3, np.float32), "blank"),
    (np.where(np.eye(64) > 0, np.nan, 0.5).astype(np.float32), "NaN"),
])
def test_implausible_inputs_are_refused(image, message):
    with pytest.raises(LungcadError, match=message):
        Preprocessing(size=32).apply(image)


def test_extreme_aspect_ratio_warns():
    image = np.random.default_rng(1).random((40, 400)).astype(np.float32)
    with pytest.warns(UserWarning, match="aspect ratio"):
        Preprocessing(size=32).apply(image)
