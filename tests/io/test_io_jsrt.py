"""JSRT raw .IMG: round trip through real JSRT images (as 12-bit inverted big-endian raw)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lungcad.errors import LungcadError
from lungcad.io import jsrt_raw_bytes, load_image, sniff_format, write_jsrt_raw

JSRT_BYTES = 2048 * 2048 * 2
CASES = ["JPCLN001.png", "JPCNN010.png", "JPCLN140.png"]


def upsampled_display(png_path) -> np.ndarray:
    """A 512 px JSRT PNG as a 2048 px [0, 1] display image (nearest-neighbour, 4x)."""
    small = np.asarray(Image.open(png_path).convert("L"), dtype=np.float64) / 255.0
    return np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)


def hand_made_img_bytes(display: np.ndarray) -> bytes:
    """The JSRT layout written out independently of lungcad: v = round(display * 4095), stored
    inverted (film density rises as display brightness falls), big-endian 16-bit words."""
    v = np.rint(display * 4095).astype(np.int64)
    return (4095 - v).astype(">u2").tobytes()


@pytest.mark.data
@pytest.mark.parametrize("case", CASES)
def test_round_trip_with_real_jsrt_images(shared_data, tmp_path, case):
    display = upsampled_display(shared_data / "jsrt" / "images" / case)
    assert display.shape == (2048, 2048)

    written = write_jsrt_raw(display, tmp_path / "written.IMG")
    by_hand = tmp_path / "by_hand.IMG"
    by_hand.write_bytes(hand_made_img_bytes(display))
    assert written.stat().st_size == JSRT_BYTES
    assert written.read_bytes() == by_hand.read_bytes()

    for path in (written, by_hand):
        assert sniff_format(path) == "jsrt-raw"
        image = load_image(path)
        assert image.array.shape == (2048, 2048) and image.array.dtype == np.float32
        assert np.abs(image.array - display).max() <= 1 / 4095
        meta = image.meta
        assert meta.format == "jsrt-raw" and meta.bit_depth == 12
        assert meta.modality == "radiograph" and meta.pixel_spacing_mm == (0.175, 0.175)

    # Bytes input (a web upload): the size alone identifies the format, with or without a name.
    payload = by_hand.read_bytes()
    assert sniff_format(payload) == "jsrt-raw"
    np.testing.assert_array_equal(load_image(payload, name="upload.img").array,
                                  load_image(by_hand).array)
    # Orientation and polarity: bright where the stored value is low, same pixel positions.
    stored = np.frombuffer(payload, ">u2").reshape(2048, 2048)
    loaded = load_image(payload).array
    for row, col in ((0, 0), (1000, 37), (2047, 1500)):
        assert loaded[row, col] == pytest.approx((4095 - int(stored[row, col])) / 4095, abs=1e-6)


def test_reader_inverts_stored_values():
    stored = np.zeros((2048, 2048), dtype=np.uint16)
    stored[0, 0], stored[0, 1], stored[0, 2] = 4095, 1000, 0
    image = load_image(stored.astype(">u2").tobytes(), name="x.IMG")
    assert image.array[0, 0] == 0.0 and image.array[0, 2] == 1.0
    assert image.array[0, 1] == pytest.approx((4095 - 1000) / 4095)


def test_sniffing_by_extension_and_by_size(tmp_path):
    payload = np.zeros(2048 * 2048, ">u2").tobytes()
    assert sniff_format(payload) == "jsrt-raw"  # exact JSRT size, no extension needed
    assert sniff_format(b"\x00" * 100, name="case.img") == "jsrt-raw"
    (tmp_path / "a.IMG").write_bytes(b"\x00" * 100)
    assert sniff_format(tmp_path / "a.IMG") == "jsrt-raw"
    with pytest.raises(LungcadError, match="PNG"):  # unknown bytes: lists supported formats
        sniff_format(b"\x00" * 100, name="case.raw")


@pytest.mark.parametrize("size", [0, 1, 100, JSRT_BYTES - 2, JSRT_BYTES - 1, JSRT_BYTES + 2,
                                  1024 * 1024 * 2])
def test_wrong_size_says_what_was_expected(tmp_path, size):
    path = tmp_path / "bad.IMG"
    path.write_bytes(b"\x01" * size)
    expected = rf"{size:,} bytes.*exactly 8,388,608 bytes" if size else "empty"
    with pytest.raises(LungcadError, match=expected):
        load_image(path)


def test_values_above_4095_are_refused(tmp_path):
    stored = np.full((2048, 2048), 2000, dtype=np.uint16)
    stored[100, 200] = 4096
    path = tmp_path / "bad.IMG"
    path.write_bytes(stored.astype(">u2").tobytes())
    with pytest.raises(LungcadError, match="4096.*12-bit"):
        load_image(path)
    # A little-endian file (bytes swapped) is caught the same way.
    path.write_bytes(np.full((2048, 2048), 2000, dtype="<u2").tobytes())
    with pytest.raises(LungcadError, match="big-endian"):
        load_image(path)


@pytest.mark.parametrize("bad", [np.zeros((512, 512)), np.full((2048, 2048), 1.5),
                                 np.full((2048, 2048), np.nan)])
def test_writer_refuses_wrong_input(tmp_path, bad):
    with pytest.raises(LungcadError, match=r"2048x2048|\[0, 1\]"):
        jsrt_raw_bytes(bad)
    with pytest.raises(LungcadError):
        write_jsrt_raw(bad, tmp_path / "bad.IMG")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind
