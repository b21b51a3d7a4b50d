"""NumPy .npy input."""

from __future__ import annotations

import io

import numpy as np
import pytest

from lungcad.errors import LungcadError
from lungcad.io import load_image, sniff_format


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.mark.parametrize("array, expected", [
    (np.array([[0, 128], [255, 7]], np.uint8), np.array([[0, 128], [255, 7]]) / 255),
    (np.array([[0, 1000], [65535, 7]], np.uint16), np.array([[0, 1000], [65535, 7]]) / 65535),
    (np.array([[0.0, 0.25], [1.0, 0.5]], np.float64), np.array([[0.0, 0.25], [1.0, 0.5]])),
    (np.array([[[0.5], [1.0]]], np.float32), np.array([[0.5, 1.0]])),
    (np.array([[0, 1000]], ">u2"), np.array([[0, 1000]]) / 65535),
])
def test_values(tmp_path, array, expected):
    path = tmp_path / "a.npy"
    path.write_bytes(npy_bytes(array))
    assert sniff_format(path) == "npy"
    image = load_image(path)
    np.testing.assert_allclose(image.array, expected, atol=1e-7)
    assert image.array.dtype == np.float32 and image.meta.format == "npy"


@pytest.mark.parametrize("array, message", [
    (np.array([[0.0, 2.0]]), r"floats from 0 to 2.*\[0, 1\].*Scale"),
    (np.array([[-1.0, 0.5]]), r"\[0, 1\]"),
    (np.array([[np.nan, 0.5]]), "NaN"),
    (np.zeros((2, 3, 3)), "2-D"),
    (np.zeros(5), "2-D"),
    (np.zeros((0, 4)), "no pixels"),
    (np.array([[1, 2]], np.int32), "int32"),
    (np.array([[True]]), "bool"),
    (np.array([[1 + 2j]]), "complex"),
])
def test_refused(array, message):
    with pytest.raises(LungcadError, match=message):
        load_image(npy_bytes(array))


def test_pickled_objects_are_never_loaded():
    with pytest.raises(LungcadError, match="never unpickles"):
        load_image(npy_bytes(np.array([[object()]], dtype=object), allow_pickle=True))


def test_truncated():
    data = npy_bytes(np.zeros((30, 30), np.uint8))
    with pytest.raises(LungcadError, match="truncated"):
        load_image(data[:-10])
