"""PNG, JPEG, TIFF, BMP: 8 and 16 bit, gray/RGB/RGBA, synthetic images written in tmp_path."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from lungcad.errors import LungcadError
from lungcad.io import ImageReadWarning, load_image, sniff_format

FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}
LOSSLESS = ("png", "tiff", "bmp")


def gradient8(h: int = 40, w: int = 56) -> np.ndarray:
    """Smooth 8-bit ramp with every level: JPEG keeps smooth content to within a few levels."""
    y, x = np.mgrid[0:h, 0:w]
    return np.rint(255 * (x + y) / (h + w - 2)).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, FORMATS[fmt], **options)
    return buffer.getvalue()


# JPEG has no alpha channel, so RGBA is tested on the other three formats only.
@pytest.mark.parametrize("fmt, mode", [(fmt, mode) for fmt in FORMATS for mode in ("L", "RGB", "RGBA")
                                       if (fmt, mode) != ("jpeg", "RGBA")])
def test_8_bit_gray_and_gray_stored_as_colour(tmp_path, fmt, mode):
    gray = gradient8()
    path = tmp_path / f"img.{fmt}"
    path.write_bytes(encode(Image.fromarray(gray).convert(mode), fmt, **(
        {"quality": 95} if fmt == "jpeg" else {})))
    assert sniff_format(path) == fmt
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageReadWarning)  # gray-as-colour must not warn
        image = load_image(path)
    assert image.array.shape == gray.shape and image.array.dtype == np.float32
    tolerance = 4 / 255 if fmt == "jpeg" else 1e-7
    np.testing.assert_allclose(image.array, gray / 255.0, atol=tolerance)
    assert image.meta.format == fmt and image.meta.bit_depth == 8 and image.meta.notes == []


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_16_bit_gray_scaled_by_65535(tmp_path, fmt):
    values = (np.arange(40 * 56, dtype=np.uint32) * 29 % 65536).astype(np.uint16).reshape(40, 56)
    values[0, 0], values[0, 1] = 0, 65535
    path = tmp_path / f"img16.{fmt}"
    path.write_bytes(encode(Image.fromarray(values), fmt))
    image = load_image(path)
    np.testing.assert_allclose(image.array, values / 65535.0, atol=1e-7)
    assert image.meta.bit_depth == 16


def test_16_bit_png_not_read_as_8_bit():
    values = np.array([[0, 257, 1000, 65535]], dtype=np.uint16)
    image = load_image(encode(Image.fromarray(values), "png"))
    assert image.array[0, 2] == pytest.approx(1000 / 65535)


@pytest.mark.parametrize("fmt", LOSSLESS)
def test_colour_marks_warn_and_are_noted(fmt):
    gray = gradient8()
    rgb = np.stack([gray] * 3, axis=2)
    rgb[5:9, 10:30] = (255, 0, 0)  # a red annotation line burned into the image
    with pytest.warns(ImageReadWarning, match="colour"):
        image = load_image(encode(Image.fromarray(rgb), fmt))
    assert any("colour" in note for note in image.meta.notes)
    # Unmarked pixels keep their gray value; the mark is converted by luminance, not dropped.
    np.testing.assert_allclose(image.array[20:, :], gray[20:, :] / 255.0, atol=1e-6)
    assert image.array[6, 20] == pytest.approx(0.299, abs=1e-3)


def test_colour_marks_in_jpeg_warn():
    rgb = np.stack([gradient8(64, 64)] * 3, axis=2)
    rgb[20:40, 20:40] = (0, 200, 0)
    with pytest.warns(ImageReadWarning, match="colour"):
        load_image(encode(Image.fromarray(rgb), "jpeg", quality=95))


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_transparency_is_noted(fmt):
    rgba = np.dstack([gradient8()] * 3 + [np.full(gradient8().shape, 128, np.uint8)])
    with pytest.warns(ImageReadWarning, match="alpha"):
        image = load_image(encode(Image.fromarray(rgba, "RGBA"), fmt))
    np.testing.assert_allclose(image.array, gradient8() / 255.0, atol=1e-7)


def test_decompression_bomb_refused_before_decoding():
    big = encode(Image.new("L", (3000, 3000)), "png")  # compresses to a few kB
    with pytest.raises(LungcadError, match="max_pixels"):
        load_image(big, max_pixels=1_000_000)
    assert load_image(big, max_pixels=9_000_000).array.shape == (3000, 3000)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_truncated_files_are_lungcad_errors(fmt):
    data = encode(Image.fromarray(gradient8(64, 64)), fmt)
    for cut in (len(data) // 2, len(data) - 40, 20):
        with pytest.raises(LungcadError, match="truncated|damaged|not a valid"):
            load_image(data[:cut])


def test_multi_page_tiff_needs_frame():
    pages = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (10, 200)]
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(LungcadError, match="2 frames"):
        load_image(buffer.getvalue())
    assert load_image(buffer.getvalue(), frame=1).array[0, 0] == pytest.approx(200 / 255)


def test_dicom_options_refused_for_raster():
    data = encode(Image.fromarray(gradient8()), "png")
    with pytest.raises(LungcadError, match="DICOM"):
        load_image(data, hu=True)
    with pytest.raises(LungcadError, match="DICOM"):
        load_image(data, window="lung")


@pytest.mark.data
def test_real_jsrt_png(shared_data):
    path = shared_data / "jsrt" / "images" / "JPCLN001.png"
    image = load_image(path)
    expected = np.asarray(Image.open(path).convert("L")) / 255.0
    np.testing.assert_allclose(image.array, expected, atol=1e-7)
    assert image.array.shape == (512, 512)


def test_16_bit_colour_png_is_read_with_a_note():
    """Pillow can neither write nor fully read 48-bit RGB PNG, so the file is built by hand; the
    reader must say that it kept only 8 bits rather than pass the loss over in silence."""
    import struct
    import zlib

    values = np.array([[1000, 30000, 65535], [0, 257, 512]], dtype=">u2")
    rgb = np.repeat(values[..., None], 3, axis=2)
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb)  # filter type 0 per scanline

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    with pytest.warns(ImageReadWarning, match="16-bit colour PNG"):
        image = load_image(data)
    np.testing.assert_allclose(image.array, values / 65535.0, atol=1 / 255)
