"""DICOM reading: real CT and CR files from pydicom's test data, plus small synthetic files for
windows, VOI LUTs, BitsStored, multi-frame, colour and compressed transfer syntaxes."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from io_samples import dicom_bytes, encapsulated_dicom_bytes, gradient, jpeg_dicom_bytes
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from lungcad.errors import LungcadError
from lungcad.io import load_image
from lungcad.io.base import ImageReadWarning


def linear_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window, written out independently, to [0, 1]."""
    values = np.asarray(values, dtype=np.float64)
    out = ((values - (centre - 0.5)) / (width - 1) + 0.5)
    out[values <= centre - 0.5 - (width - 1) / 2] = 0.0
    out[values > centre - 0.5 + (width - 1) / 2] = 1.0
    return out


@pytest.fixture(scope="module")
def ct_path() -> str:
    return get_testdata_file("CT_small.dcm")


@pytest.fixture(scope="module")
def cr_path() -> str:
    return get_testdata_file("RG1_UNCI.dcm")


def test_ct_in_hounsfield_units_matches_pydicom(ct_path: str) -> None:
    ds = pydicom.dcmread(ct_path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    loaded = load_image(ct_path, hu=True)
    assert loaded.meta.units == "HU" and loaded.meta.modality == "ct"
    assert loaded.array.dtype == np.float32 and loaded.array.shape == (128, 128)
    np.testing.assert_array_equal(loaded.array, expected.astype(np.float32))
    hu = loaded.array
    # Aerated lung at the top corners, paraspinal muscle along the bottom of this slice.
    assert hu.min() < -850 and np.median(hu[5:30, :15]) < -700 and np.median(hu[5:30, -15:]) < -700
    assert -100 < np.median(hu[100:120, 20:108]) < 100
    assert hu.max() > 300  # vertebral bone


def test_ct_default_is_lung_window(ct_path: str) -> None:
    ds = pydicom.dcmread(ct_path)
    hu = apply_modality_lut(ds.pixel_array, ds)
    loaded = load_image(ct_path)
    assert loaded.meta.window == (-600.0, 1500.0) and loaded.meta.units == "display"
    np.testing.assert_allclose(loaded.array, linear_window(hu, -600, 1500), atol=2e-5)
    assert 0.0 <= loaded.array.min() and loaded.array.max() <= 1.0
    # Lung window: aerated lung (about -800 HU) mid-dark but not clipped to black, muscle
    # (about 0 HU) near white.
    assert 0.2 < np.median(loaded.array[5:30, :15]) < 0.45
    assert np.median(loaded.array[100:120, 20:108]) > 0.8


@pytest.mark.parametrize("window, centre_width", [("mediastinum", (40.0, 400.0)),
                                                  ((100.0, 50.0), (100.0, 50.0))])
def test_ct_other_windows(ct_path: str, window, centre_width) -> None:
    ds = pydicom.dcmread(ct_path)
    hu = apply_modality_lut(ds.pixel_array, ds)
    loaded = load_image(ct_path, window=window)
    assert loaded.meta.window == centre_width
    np.testing.assert_allclose(loaded.array, linear_window(hu, *centre_width), atol=2e-5)


def test_monochrome1_radiograph_is_inverted_so_bone_is_bright(cr_path: str) -> None:
    ds = pydicom.dcmread(cr_path)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and int(ds.BitsStored) == 15
    loaded = load_image(cr_path)
    image = loaded.array
    assert image.shape == (1955, 1841) and loaded.meta.modality == "radiograph"
    assert loaded.meta.photometric == "MONOCHROME1" and loaded.meta.bit_depth == 15
    # The file's own window (15000/30000) is applied, then MONOCHROME1 inverted.
    assert loaded.meta.window == (15000.0, 30000.0)
    expected = 1.0 - linear_window(apply_modality_lut(ds.pixel_array, ds), 15000.0, 30000.0)
    np.testing.assert_allclose(image, expected, atol=2e-5)
    # Looked at: mediastinum and spine form a bright central column between darker lung fields.
    height, width = image.shape
    rows = slice(int(0.3 * height), int(0.6 * height))
    centre = image[rows, int(0.45 * width):int(0.55 * width)].mean()
    left = image[rows, int(0.2 * width):int(0.3 * width)].mean()
    right = image[rows, int(0.7 * width):int(0.8 * width)].mean()
    assert centre > left + 0.1 and centre > right + 0.1, (centre, left, right)


def test_hu_and_ct_presets_refused_on_radiograph(cr_path: str) -> None:
    with pytest.raises(LungcadError, match="needs a CT image"):
        load_image(cr_path, hu=True)
    with pytest.raises(LungcadError, match="CT preset"):
        load_image(cr_path, window="lung")


def test_radiograph_window_tags_and_voi_lut() -> None:
    values = np.arange(0, 4096, 64, dtype=np.uint16).reshape(8, 8)
    windowed = load_image(dicom_bytes(values, modality="DX", bits_stored=12,
                                      window=(1000.0, 1000.0)))
    np.testing.assert_allclose(windowed.array, linear_window(values, 1000, 1000), atol=2e-5)
    lut = (np.sqrt(np.arange(4096) / 4095) * 65535).astype(np.uint16)  # a gamma-like VOI LUT
    through_lut = load_image(dicom_bytes(values, modality="CR", bits_stored=12, voi_lut=lut))
    np.testing.assert_allclose(through_lut.array, lut[values] / 65535, atol=1e-6)
    assert any("VOI LUT" in note for note in through_lut.meta.notes)


def test_radiograph_without_window_is_scaled_min_max_and_monochrome1_inverted() -> None:
    values = np.array([[100, 200], [300, 500]], dtype=np.uint16)
    plain = load_image(dicom_bytes(values, modality="CR", bits_stored=12)).array
    np.testing.assert_allclose(plain, (values - 100) / 400, atol=1e-6)
    inverted = load_image(dicom_bytes(values, modality="CR", bits_stored=12,
                                      photometric="MONOCHROME1")).array
    np.testing.assert_allclose(inverted, 1 - (values - 100) / 400, atol=1e-6)


def test_bits_stored_ignores_junk_in_unused_high_bits() -> None:
    rng = np.random.default_rng(3)
    clean = rng.integers(0, 4096, (6, 7)).astype(np.uint16)
    junk = clean | (rng.integers(1, 16, clean.shape).astype(np.uint16) << 12)
    read = [load_image(dicom_bytes(v, modality="DX", bits_stored=12, window=(2048, 4096))).array
            for v in (clean, junk)]
    np.testing.assert_array_equal(read[0], read[1])


def test_signed_12_bit_ct_is_sign_extended() -> None:
    hu = np.array([[-1000, -500], [0, 2000]], dtype=np.int16)
    stored = (hu.view(np.uint16) & 0x0FFF).view(np.int16)  # 12-bit two's complement
    loaded = load_image(dicom_bytes(stored, bits_stored=12, slope=1.0, intercept=0.0), hu=True)
    np.testing.assert_array_equal(loaded.array, hu)


def test_rescale_slope_and_intercept_applied() -> None:
    stored = np.array([[0, 1000], [2000, 3000]], dtype=np.uint16)
    loaded = load_image(dicom_bytes(stored, slope=0.5, intercept=-1024.0), hu=True)
    np.testing.assert_allclose(loaded.array, stored * 0.5 - 1024.0)


@pytest.mark.parametrize("slope", [b"0.00", b"nan ", b"abcd", b"1\\2 ", b"1e99"])
def test_damaged_rescale_is_refused(slope: bytes) -> None:
    # Patched in the bytes: pydicom itself refuses to set such values.
    data = dicom_bytes(np.zeros((2, 2), np.int16), slope=1.25, intercept=0.0)
    assert data.count(b"1.25") == 1
    with pytest.raises(LungcadError, match="RescaleSlope"):
        load_image(data.replace(b"1.25", slope))


def test_multiframe_needs_explicit_frame() -> None:
    frames = np.stack([np.full((3, 4), v, np.int16) for v in (-1000, 0, 500)])
    data = dicom_bytes(frames, frames=3)
    with pytest.raises(LungcadError, match=r"3 frames; pass frame=N"):
        load_image(data)
    second = load_image(data, frame=1, hu=True)
    np.testing.assert_array_equal(second.array, np.zeros((3, 4)))
    assert any("frame 1 of 3" in note for note in second.meta.notes)
    with pytest.raises(LungcadError, match="out of range"):
        load_image(data, frame=3)


def test_compressed_transfer_syntaxes() -> None:
    values = np.arange(48, dtype=np.uint16).reshape(6, 8) * 80
    rle = load_image(dicom_bytes(values, modality="DX", bits_stored=12, window=(2000, 4000),
                                 rle=True)).array
    plain = load_image(dicom_bytes(values, modality="DX", bits_stored=12,
                                   window=(2000, 4000))).array
    np.testing.assert_array_equal(rle, plain)
    gray8 = (gradient(16, 8) * 255).round().astype(np.uint8)
    jpeg = load_image(jpeg_dicom_bytes(gray8)).array  # min-max scaled: gradient spans 0..255
    assert np.abs(jpeg * 255 - gray8).max() <= 3
    # A syntax no installed package decodes (highdicom brings a JPEG-LS decoder, so the check
    # uses HTJ2K, for which the project installs none): the error names packages to install.
    from pydicom.pixels import get_decoder
    from pydicom.uid import HTJ2KLossless
    assert not get_decoder(HTJ2KLossless).is_available, "pick a syntax with no decoder here"
    with pytest.raises(LungcadError, match=r"High-Throughput JPEG 2000.*Install one of: "):
        load_image(encapsulated_dicom_bytes(b"\xff\x4f\xff\x51" + bytes(40), 4, 4,
                                            HTJ2KLossless))


def test_colour_dicom_warns_and_notes() -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[...] = 120
    rgb[0, 0] = (255, 0, 0)
    with pytest.warns(ImageReadWarning, match="colour"):
        loaded = load_image(dicom_bytes(rgb, modality="OT"))
    assert loaded.meta.notes and loaded.array[1, 1] == pytest.approx(120 / 255, abs=1e-6)
    assert loaded.array[0, 0] == pytest.approx(0.299, abs=1e-3)  # luminance of pure red


def test_dicom_without_pixels_or_truncated() -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality = "SR"
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    with pytest.raises(LungcadError, match="no Pixel Data"):
        load_image(buffer.getvalue())
    full = dicom_bytes(np.zeros((16, 16), np.int16))
    with pytest.raises(LungcadError, match="truncated or damaged"):
        load_image(full[:-100])


def test_shared_copies_match_pydicom_data(shared_data) -> None:
    """The copies in shared/data/dicom_samples read the same as the pydicom-data originals."""
    for name in ("CT_small.dcm", "RG1_UNCI.dcm"):
        copy = load_image(shared_data / "dicom_samples" / name).array
        np.testing.assert_array_equal(copy, load_image(get_testdata_file(name)).array)


def test_dicom_bytes_sniffed_by_content_despite_tiff_like_preamble(ct_path: str) -> None:
    from lungcad.io import sniff_format

    data = Path(ct_path).read_bytes()
    assert data[:4] == b"II*\x00"  # a dual-personality preamble: looks like TIFF at offset 0
    assert sniff_format(data) == sniff_format(ct_path) == "dicom"
    np.testing.assert_array_equal(load_image(data).array, load_image(ct_path).array)
    assert load_image(data).meta.pixel_spacing_mm == pytest.approx((0.661468, 0.661468))


def test_cr_metadata_and_polarity(cr_path: str) -> None:
    ds = pydicom.dcmread(cr_path)
    loaded = load_image(cr_path)
    # The file's PixelSpacing is 0.000 mm: not trusted, and said so in the notes.
    assert loaded.meta.pixel_spacing_mm is None
    assert any("PixelSpacing" in note for note in loaded.meta.notes)
    # MONOCHROME1: the highest stored value is shown darker than the lowest.
    raw = ds.pixel_array
    assert loaded.array.flat[raw.argmax()] < loaded.array.flat[raw.argmin()]


def test_spacing_from_imager_pixel_spacing_when_pixel_spacing_absent() -> None:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.arange(6, dtype=np.uint16).reshape(2, 3), modality="DX")))
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.15, 0.16]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert load_image(buffer.getvalue()).meta.pixel_spacing_mm == pytest.approx((0.15, 0.16))


def test_truncated_real_ct_is_an_error_without_stray_warnings(ct_path: str) -> None:
    data = Path(ct_path).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for cut in (len(data) - 1000, len(data) // 2, 200, 131):
            with pytest.raises(LungcadError, match="truncated|damaged|no Pixel Data"):
                load_image(data[:cut])
