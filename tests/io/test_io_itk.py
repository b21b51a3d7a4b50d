"""MetaImage (.mha, .mhd + raw) and NIfTI (.nii, .nii.gz) through SimpleITK: recognised by
content whatever the file is called, pixels and spacing as stored, damaged files one line."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk  # a dependency of lungcad: NODE21 ships .mha

from lungcad.errors import LungcadError
from lungcad.io import load_image, sniff_format


def _write(path, array, spacing=(0.2, 0.3)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("name, fmt", [("a.mha", "metaimage"), ("a.mhd", "metaimage"),
                                       ("a.nii", "nifti"), ("a.nii.gz", "nifti")])
def test_pixels_and_spacing_round_trip(tmp_path, name, fmt):
    array = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 30  # 12 bits at most
    loaded = load_image(_write(tmp_path / name, array))
    assert sniff_format(tmp_path / name) == fmt and loaded.meta.format == fmt
    assert loaded.array.shape == (12, 10)  # rows, columns as stored
    assert np.allclose(loaded.array * 4095, array, atol=1e-2)
    assert loaded.meta.pixel_spacing_mm == pytest.approx((0.3, 0.2))  # (row, column)


def test_content_decides_not_the_name(tmp_path):
    path = _write(tmp_path / "a.mha", np.zeros((4, 5), np.uint8))
    renamed = path.rename(tmp_path / "scan.png")
    assert sniff_format(renamed) == "metaimage"
    gz = _write(tmp_path / "b.nii.gz", np.full((4, 5), 7, np.uint8))
    data = gz.read_bytes()
    assert load_image(data).array.shape == (4, 5)  # uploaded bytes, gzip NIfTI
    assert np.allclose(load_image(data).array, 7 / 255)


def test_a_volume_needs_a_frame(tmp_path):
    path = _write(tmp_path / "v.mha", np.stack([np.zeros((4, 5)), np.ones((4, 5))])
                  .astype(np.uint8), (1, 1, 1))
    with pytest.raises(LungcadError, match="volume of 2 slices; pass frame"):
        load_image(path)
    assert load_image(path, frame=1).array.max() == pytest.approx(1 / 255)


def test_signed_values_are_stretched_and_said(tmp_path):
    loaded = load_image(_write(tmp_path / "ct.nii", np.array([[-1000, 0], [500, 1000]],
                                                             np.int16)))
    assert loaded.array.min() == 0 and loaded.array.max() == 1
    assert any("stretched" in note for note in loaded.meta.notes)


def test_damaged_files_are_one_line(tmp_path):
    bad = tmp_path / "bad.mha"
    bad.write_bytes(b"ObjectType = Image\nNDims = 2\nDimSize = 400 300\n"
                    b"ElementType = MET_USHORT\nElementDataFile = LOCAL\n" + b"\0" * 10)
    with pytest.raises(LungcadError) as caught:
        load_image(bad)
    assert "bad.mha (MetaImage)" in str(caught.value) and "\n" not in str(caught.value)
    header = _write(tmp_path / "h.mhd", np.zeros((3, 3), np.uint8)).read_bytes()
    with pytest.raises(LungcadError, match="give its path"):
        load_image(header)
