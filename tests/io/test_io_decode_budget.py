"""The decode budget: bytes an image takes once decoded (pixels x channels x bytes per sample),
read from the header and refused before decoding; and lungcad's pixel limit answering before
Pillow's own decompression-bomb error, whatever the size."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lungcad.errors import LungcadError
from lungcad.io import load_image


def png(array: np.ndarray) -> bytes:
    """uint8 (H, W) as 8-bit gray, uint16 as 16-bit gray, (H, W, 3) uint8 as RGB."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int, colour_type: int = 0, bit_depth: int = 8) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_sixteen_bit_samples_count_twice():
    ramp = np.arange(1000 * 1000, dtype=np.uint32).reshape(1000, 1000) % 60000
    deep = png(ramp.astype(np.uint16))   # 2,000,000 bytes decoded
    shallow = png((ramp % 256).astype(np.uint8))  # 1,000,000 bytes decoded
    with pytest.raises(LungcadError) as caught:
        load_image(deep, name="deep.png", max_decode_bytes=1_500_000)
    message = str(caught.value)
    assert "deep.png" in message and "1000x1000 pixels x 1 channel x 2 bytes" in message
    assert "max_decode_bytes" in message
    assert load_image(shallow, name="shallow.png", max_decode_bytes=1_500_000).array.shape == (
        1000, 1000)


def test_channels_count_from_the_header_before_decoding():
    # 25 M pixels of RGBA claimed by a few hundred bytes: refused from the header alone (decoding
    # would fail on the missing data instead).
    with pytest.raises(LungcadError, match=r"5000x5000 pixels x 4 channels x 1 byte") as caught:
        load_image(png_claiming(5000, 5000, colour_type=6), name="rgba.png",
                   max_decode_bytes=64 * 1024 * 1024)
    assert "95.4 MB to decode" in str(caught.value) and "limit of 64 MB" in str(caught.value)


def test_no_budget_by_default_for_the_library():
    image = png(np.full((50, 60, 3), 200, np.uint8))
    assert load_image(image, name="x.png").array.shape == (50, 60)


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "big"])
def test_budget_must_be_a_positive_integer(bad):
    with pytest.raises(LungcadError, match="max_decode_bytes must be a positive integer"):
        load_image(png(np.zeros((40, 40), np.uint8)), max_decode_bytes=bad)


def test_pixel_limit_is_lungcads_beyond_pillows_own():
    with pytest.raises(LungcadError) as caught:
        load_image(png_claiming(20_000, 20_000), name="huge.png", max_pixels=40_000_000)
    message = str(caught.value)
    assert "claims 400,000,000 pixels" in message and "limit of 40,000,000" in message
    assert "DOS attack" not in message


def test_dicom_and_npy_count_their_samples_too(tmp_path):
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm", download=False)  # 128 x 128 x 16 bits: 32 KiB
    with pytest.raises(LungcadError, match=r"128x128 pixels x 1 channel x 2 bytes"):
        load_image(ct, max_decode_bytes=30_000)
    assert load_image(ct, max_decode_bytes=40_000).array.shape == (128, 128)
    path = tmp_path / "wide.npy"
    np.save(path, np.zeros((100, 200), np.float64))  # 160,000 bytes of values
    with pytest.raises(LungcadError, match=r"200x100 pixels x 1 channel x 8 bytes"):
        load_image(path, max_decode_bytes=100_000)
    assert load_image(path, max_decode_bytes=200_000).array.shape == (100, 200)
