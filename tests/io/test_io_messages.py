"""Error messages name the file as a user knows it, never a Python object (no addresses)."""

from __future__ import annotations

import re

import pytest

from lungcad.errors import LungcadError
from lungcad.io import load_image

DAMAGED = {
    "jpeg": b"\xff\xd8\xff" + b"y" * 50,
    "tiff": b"II*\x00" + b"z" * 50,
    "png": b"\x89PNG\r\n\x1a\n" + b"x" * 100,
    "bmp": b"BM" + b"q" * 50,
    "npy": b"\x93NUMPY\x01\x00" + b"w" * 40,
    "dicom": b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f" + b"1" * 20,
}
INTERNALS = re.compile(r"0x[0-9a-f]{6,}|object at|<_io\.|BytesIO", re.IGNORECASE)


@pytest.mark.parametrize("fmt", sorted(DAMAGED))
def test_damaged_upload_message_has_no_python_internals(fmt):
    with pytest.raises(LungcadError) as caught:
        load_image(DAMAGED[fmt])
    message = str(caught.value)
    assert not INTERNALS.search(message), message
    assert message.startswith("uploaded image")


@pytest.mark.parametrize("fmt", sorted(DAMAGED))
def test_damaged_file_message_names_the_file(tmp_path, fmt):
    path = tmp_path / f"scan.{fmt}"
    path.write_bytes(DAMAGED[fmt])
    with pytest.raises(LungcadError) as caught:
        load_image(path)
    message = str(caught.value)
    assert not INTERNALS.search(message), message
    assert str(path) in message


def test_uploaded_file_name_is_used_when_given():
    with pytest.raises(LungcadError) as caught:
        load_image(DAMAGED["jpeg"], name="chest.jpg")
    assert str(caught.value).startswith("chest.jpg") and not INTERNALS.search(str(caught.value))
