"""JSRT raw .IMG: round trip of real JSRT radiographs (upsampled to 2048, written as 12-bit
inverted big-endian words) and the size and value checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungcad.errors import LungcadError
from lungcad.io import load_image, sniff_format
from lungcad.io.jsrt import JSRT_BYTES, read_jsrt_raw, write_jsrt_raw
from lungcad.preprocess import resize_area

# 12-bit rounding is at most half a level; float32 arithmetic adds a few ulps.
TOLERANCE = 0.5 / 4095 + 1e-6
EXAMPLES = ("JPCLN001.png", "JPCLN050.png", "JPCNN010.png")


@pytest.fixture(scope="module")
def upsampled(shared_data: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    out = {}
    for name in EXAMPLES:
        with Image.open(shared_data / "jsrt" / "images" / name) as image:
            small = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        big = resize_area(small, 2048)
        assert big.shape == (2048, 2048)
        out[name] = np.clip(big, 0.0, 1.0)
    return out


@pytest.mark.parametrize("name", EXAMPLES)
def test_round_trip_with_write_jsrt_raw(upsampled, tmp_path: Path, name: str) -> None:
    image = upsampled[name]
    path = write_jsrt_raw(image, tmp_path / "case.IMG")
    assert path.stat().st_size == JSRT_BYTES
    loaded = load_image(path)
    assert loaded.meta.format == "jsrt-raw" and loaded.meta.bit_depth == 12
    assert loaded.meta.pixel_spacing_mm == (0.175, 0.175)
    assert loaded.array.dtype == np.float32 and loaded.array.shape == (2048, 2048)
    assert np.abs(loaded.array - image).max() <= TOLERANCE


@pytest.mark.parametrize("name", EXAMPLES)
def test_round_trip_of_independently_built_bytes(upsampled, tmp_path: Path, name: str) -> None:
    """Bytes built here from the format's definition (stored = 4095 x (1 - display), big-endian),
    not by lungcad's writer, so a shared mistake in writer and reader would show."""
    image = upsampled[name]
    payload = np.round((1 - image.astype(np.float64)) * 4095).astype(">u2").tobytes()
    (tmp_path / "case.IMG").write_bytes(payload)
    loaded = load_image(tmp_path / "case.IMG")
    assert np.abs(loaded.array - image).max() <= TOLERANCE
    # Bytes input: the size alone identifies the format, with or without a name.
    assert sniff_format(payload) == "jsrt-raw"
    from_bytes = load_image(payload, name="upload.img")
    np.testing.assert_array_equal(from_bytes.array, loaded.array)
    # Orientation and polarity: the display is bright where the stored value is low.
    stored = np.frombuffer(payload, ">u2").reshape(2048, 2048)
    assert loaded.array[0, 0] == pytest.approx((4095 - int(stored[0, 0])) / 4095, abs=1e-6)
    assert loaded.array[1000, 37] == pytest.approx((4095 - int(stored[1000, 37])) / 4095,
                                                   abs=1e-6)


def test_little_endian_file_is_refused(tmp_path: Path) -> None:
    values = np.full((2048, 2048), 100, dtype=np.uint16)  # 100 little-endian = 25600 big-endian
    (tmp_path / "swapped.img").write_bytes(values.astype("<u2").tobytes())
    with pytest.raises(LungcadError, match=r"holds the value 25600.*12-bit \(0 to 4095\)"):
        load_image(tmp_path / "swapped.img")


def test_values_above_4095_are_refused() -> None:
    words = np.zeros(JSRT_BYTES // 2, dtype=">u2")
    words[123_456] = 4096
    with pytest.raises(LungcadError, match="4096.*0 to 4095"):
        read_jsrt_raw(words.tobytes())


@pytest.mark.parametrize("size", [1, 2, 1024, JSRT_BYTES - 2, JSRT_BYTES + 2, 2048 * 2048])
def test_wrong_size_says_what_was_expected(tmp_path: Path, size: int) -> None:
    path = tmp_path / "short.IMG"
    path.write_bytes(bytes(size))
    with pytest.raises(LungcadError, match=rf"{size:,} bytes.*exactly 8,388,608 bytes"):
        load_image(path)


def test_writer_refuses_bad_arrays(tmp_path: Path) -> None:
    with pytest.raises(LungcadError, match="2048x2048"):
        write_jsrt_raw(np.zeros((512, 512), np.float32), tmp_path / "a.img")
    bad = np.zeros((2048, 2048), np.float32)
    bad[0, 0] = 1.5
    with pytest.raises(LungcadError, match=r"\[0, 1\]"):
        write_jsrt_raw(bad, tmp_path / "b.img")
    bad[0, 0] = np.nan
    with pytest.raises(LungcadError, match="finite"):
        write_jsrt_raw(bad, tmp_path / "c.img")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind
