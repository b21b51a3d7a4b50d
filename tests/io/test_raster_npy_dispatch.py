"""PNG, JPEG, TIFF and BMP (8/16 bit, gray/RGB/RGBA), NumPy .npy, and load_image's choice of
reader by content, with the errors a user sees for bad input."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from io_samples import gradient, pil_bytes
from PIL import Image

from lungcad.errors import LungcadError
from lungcad.io import load_image, sniff_format
from lungcad.io.base import ImageReadWarning

PIL_NAMES = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "bmp": ".bmp"}
LOSSY = {"jpeg": 3 / 255}  # JPEG at quality 95 on a smooth gradient


def _load_quietly(source, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageReadWarning)  # gray input must not warn
        return load_image(source, **options)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff", "bmp"])
def test_8_bit_gray_and_gray_rgb(tmp_path: Path, fmt: str) -> None:
    gray8 = (gradient(20, 30) * 255).round().astype(np.uint8)
    expected = gray8 / 255.0
    for name, image in (("gray", Image.fromarray(gray8)),
                        ("rgb", Image.fromarray(np.stack([gray8] * 3, axis=2)))):
        path = tmp_path / f"{name}{EXTENSIONS[fmt]}"
        image.save(path, format=PIL_NAMES[fmt], **({"quality": 95} if fmt == "jpeg" else {}))
        loaded = _load_quietly(path)
        assert loaded.meta.format == fmt and loaded.meta.bit_depth == 8
        assert loaded.array.dtype == np.float32 and loaded.array.shape == (20, 30)
        np.testing.assert_allclose(loaded.array, expected, atol=LOSSY.get(fmt, 1e-6))


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_16_bit_gray_scaled_by_65535(tmp_path: Path, fmt: str) -> None:
    gray16 = (gradient(9, 11) * 65535).round().astype(np.uint16)
    gray16[0, 0], gray16[-1, -1] = 1, 65534  # values an 8-bit read would lose
    path = tmp_path / f"deep{EXTENSIONS[fmt]}"
    Image.fromarray(gray16).save(path, format=PIL_NAMES[fmt])
    loaded = _load_quietly(path)
    assert loaded.meta.bit_depth == 16
    np.testing.assert_allclose(loaded.array, gray16 / 65535.0, atol=1e-7)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff", "bmp"])
def test_colour_marks_warn_and_are_noted(fmt: str) -> None:
    gray8 = np.full((24, 24), 128, np.uint8)
    rgb = np.stack([gray8] * 3, axis=2)
    rgb[4:12, 4:12] = (255, 0, 0)  # a red annotation burned in
    data = pil_bytes(Image.fromarray(rgb), PIL_NAMES[fmt])
    with pytest.warns(ImageReadWarning, match="colour channels"):
        loaded = load_image(data)
    assert any("colour" in note for note in loaded.meta.notes)
    # Kept as a gray shape by luminance, not dropped: red reads 0.299, the rest 128/255.
    assert loaded.array[8, 8] == pytest.approx(0.299, abs=LOSSY.get(fmt, 0) + 0.03)
    assert loaded.array[20, 20] == pytest.approx(128 / 255, abs=LOSSY.get(fmt, 1e-6))


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_rgba_alpha_ignored_with_note(fmt: str) -> None:
    gray8 = (gradient(6, 6) * 255).round().astype(np.uint8)
    rgba = np.stack([gray8, gray8, gray8, np.full_like(gray8, 100)], axis=2)
    with pytest.warns(ImageReadWarning, match="alpha"):
        loaded = load_image(pil_bytes(Image.fromarray(rgba), PIL_NAMES[fmt]))
    np.testing.assert_allclose(loaded.array, gray8 / 255.0, atol=1e-6)


def test_format_is_read_from_content_not_extension(tmp_path: Path) -> None:
    gray8 = (gradient(5, 7) * 255).round().astype(np.uint8)
    data = pil_bytes(Image.fromarray(gray8), "PNG")
    misnamed = tmp_path / "really_a_png.jpg"
    misnamed.write_bytes(data)
    assert sniff_format(misnamed) == "png"
    for source in (misnamed, data, bytearray(data), memoryview(data)):
        loaded = load_image(source, name="photo.jpg")
        assert loaded.meta.format == "png"
        np.testing.assert_allclose(loaded.array, gray8 / 255.0, atol=1e-6)


def test_multipage_tiff_needs_frame() -> None:
    pages = [Image.fromarray(np.full((3, 3), v, np.uint8)) for v in (10, 200)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(LungcadError, match="2 frames; pass frame=N"):
        load_image(buffer.getvalue())
    assert load_image(buffer.getvalue(), frame=1).array[0, 0] == pytest.approx(200 / 255)


def test_decompression_bomb_refused_before_decoding() -> None:
    data = pil_bytes(Image.new("L", (3000, 3000)), "PNG")  # tiny file, 9 M pixels
    with pytest.raises(LungcadError, match="max_pixels"):
        load_image(data, max_pixels=1_000_000)


def test_truncated_raster_is_an_error() -> None:
    data = pil_bytes(Image.fromarray((gradient(64, 64) * 255).astype(np.uint8)), "PNG")
    with pytest.raises(LungcadError, match="truncated or damaged"):
        load_image(data[: len(data) // 2])


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("array, expected", [
    (np.array([[0.0, 0.25], [0.5, 1.0]], np.float32), [[0.0, 0.25], [0.5, 1.0]]),
    (np.array([[0, 255]], np.uint8), [[0.0, 1.0]]),
    (np.array([[0, 65535, 32768]], ">u2"), [[0.0, 1.0, 32768 / 65535]]),
    (np.array([[[0.5]], [[0.75]]], np.float64), [[0.5], [0.75]]),
])
def test_npy_values(array: np.ndarray, expected) -> None:
    loaded = load_image(_npy(array))
    assert loaded.meta.format == "npy"
    np.testing.assert_allclose(loaded.array, np.asarray(expected, np.float32), atol=1e-7)


@pytest.mark.parametrize("array, message", [
    (np.array([[0.0, 2.0]]), r"floats from 0 to 2"),
    (np.array([[np.nan, 0.5]]), "NaN"),
    (np.zeros((2, 2, 3)), "shape"),
    (np.zeros((2, 2), np.int32), "int32"),
    (np.zeros((2, 2), np.complex64), "complex64"),
    (np.zeros((0, 4), np.uint8), "no pixels"),
])
def test_npy_refused(array: np.ndarray, message: str) -> None:
    with pytest.raises(LungcadError, match=message):
        load_image(_npy(array))


def test_pickled_npy_is_never_unpickled() -> None:
    data = _npy(np.array([[object()]], dtype=object))
    with pytest.raises(LungcadError, match="never unpickles"):
        load_image(data)


@pytest.mark.parametrize("source, options, message", [
    (b"hello world, not an image", {}, "unrecognised image format"),
    (b"", {}, "empty"),
    (12345, {}, "path or bytes"),
    (pil_bytes(Image.new("L", (2, 2)), "PNG"), {"hu": True}, "DICOM images only"),
    (pil_bytes(Image.new("L", (2, 2)), "PNG"), {"window": "bone"}, "unknown window"),
    (pil_bytes(Image.new("L", (2, 2)), "PNG"), {"window": (0, -5)}, "positive"),
    (pil_bytes(Image.new("L", (2, 2)), "PNG"), {"frame": -1}, "non-negative"),
    (pil_bytes(Image.new("L", (2, 2)), "PNG"), {"max_pixels": 0}, "max_pixels"),
])
def test_bad_input_messages(source, options, message) -> None:
    with pytest.raises(LungcadError, match=message):
        load_image(source, **options)


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(LungcadError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(LungcadError, match="not a file"):
        load_image(tmp_path)
