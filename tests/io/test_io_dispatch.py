"""load_image's own checks: sources, options, unknown formats."""

from __future__ import annotations

import io

import pytest

import numpy as np
from PIL import Image

from lungcad.errors import LungcadError
from lungcad.io import SUPPORTED, load_image, sniff_format


def test_missing_file_directory_and_empty(tmp_path):
    with pytest.raises(LungcadError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(LungcadError, match="not a file"):
        load_image(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(LungcadError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(LungcadError, match="empty"):
        load_image(b"")
    with pytest.raises(LungcadError, match="path or bytes"):
        load_image(42)


def test_unknown_format_names_the_supported_ones():
    with pytest.raises(LungcadError) as caught:
        sniff_format(b"GIF89a" + b"\x00" * 50)
    for name in ("JSRT", "PNG", "JPEG", "TIFF", "BMP", "DICOM", ".npy", "MetaImage", "NIfTI"):
        assert name in str(caught.value)
    assert set(SUPPORTED) == {"jsrt-raw", "png", "jpeg", "tiff", "bmp", "dicom", "npy",
                              "metaimage", "nifti"}


@pytest.mark.parametrize("options, message", [
    ({"frame": -1}, "frame"), ({"frame": 1.5}, "frame"), ({"window": "bone"}, "unknown window"),
    ({"window": (0, -5)}, "positive"), ({"window": (1, 2, 3)}, "pair"), ({"hu": "yes"}, "hu"),
    ({"max_pixels": 0}, "max_pixels"),
])
def test_bad_options(options, message):
    with pytest.raises(LungcadError, match=message):
        load_image(b"\x89PNG\r\n\x1a\n", **options)


def test_content_wins_over_extension():
    # A PNG signature named .IMG is still PNG (and damaged here): the error is the PNG reader's.
    assert sniff_format(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, name="x.IMG") == "png"
    with pytest.raises(LungcadError, match="PNG"):
        load_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, name="x.IMG")


def test_misnamed_file_and_every_bytes_type(tmp_path):
    gray = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, "PNG")
    data = buffer.getvalue()
    misnamed = tmp_path / "really_a_png.jpg"
    misnamed.write_bytes(data)
    assert sniff_format(misnamed) == "png"
    for source in (misnamed, str(misnamed), data, bytearray(data), memoryview(data)):
        loaded = load_image(source, name="photo.jpg")
        assert loaded.meta.format == "png"
        np.testing.assert_allclose(loaded.array, gray / 255.0, atol=1e-7)
