"""MetaImage (``.mha``, ``.mhd`` + raw) and NIfTI (``.nii``, ``.nii.gz``) through SimpleITK.

NODE21 distributes its radiographs as ``.mha``; research pipelines often keep 2-D images as NIfTI.
The format is decided by content (:mod:`lungcad.io.dispatch`): a MetaImage header starts with
``ObjectType =`` or ``NDims =`` text, a NIfTI-1 header has ``sizeof_hdr`` 348 and the magic
``n+1`` (single file) at byte 344, gzip-compressed or not. The image's own spacing
(``ElementSpacing``, ``pixdim``) becomes ``pixel_spacing_mm`` (row, column).

Values: uint8 is divided by 255; other integers by the largest value their significant bits can
hold (12-bit data by 4095, as JSRT); floats already in [0, 1] are kept; anything else (negative
values, floats beyond 1) is stretched from its minimum to its maximum, and the image's notes say
so. Rows and columns are the stored array's (the direction cosines are not applied, as NODE21's
box coordinates index the stored array). A volume with more than one slice needs ``frame``.
"""

from __future__ import annotations

import os
import re
import tempfile
import zlib
from pathlib import Path

import numpy as np

from lungcad.errors import LungcadError
from lungcad.io.base import (ImageMeta, LoadedImage, add_note, check_decode_bytes,
                             check_pixel_count, error_detail, finish, rgb_to_gray)

NIFTI_MAGICS = (b"n+1\x00",)
METAIMAGE_KEYS = (b"ObjectType", b"NDims", b"Comment", b"ObjectSubType")


def is_metaimage(head: bytes) -> bool:
    """A MetaImage header: text starting with one of its first keys, then ``=``."""
    first = head.lstrip().split(b"\n", 1)[0]
    key = first.split(b"=", 1)[0].strip()
    return b"=" in first and key in METAIMAGE_KEYS


def nifti_head(head: bytes) -> bytes:
    """The first bytes of the (decompressed) file: NIfTI may be gzip-compressed."""
    if head.startswith(b"\x1f\x8b"):
        try:  # a truncated stream gives what it can
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 352)
        except zlib.error:
            return b""
    return head


def is_nifti(head: bytes) -> bool:
    head = nifti_head(head)
    if len(head) < 348 or head[344:348] not in NIFTI_MAGICS:
        return False
    return int.from_bytes(head[:4], "little") == 348 or int.from_bytes(head[:4], "big") == 348



def read_itk(data: bytes, fmt: str, label: str, *, path: Path | None = None,
             frame: int | None = None, max_pixels: int = 100_000_000,
             max_decode_bytes: int | None = None) -> LoadedImage:
    """Decode a MetaImage or NIfTI file (``fmt`` "metaimage" or "nifti"). ``path``: the file on
    disk where there is one (a ``.mhd`` header needs it to find its raw data file)."""
    what = f"{label} ({'MetaImage' if fmt == 'metaimage' else 'NIfTI'})"
    if fmt == "metaimage" and path is None and b"ElementDataFile" in data[:4096] \
            and b"LOCAL" not in _header_value(data, b"ElementDataFile"):
        raise LungcadError(f"{what} is a .mhd header whose pixels are in a separate file; give "
                           "its path (not its bytes) so that the data file can be found")
    if path is not None:
        return _read_path(Path(path), fmt, what, frame, max_pixels, max_decode_bytes)
    suffix = ".mha" if fmt == "metaimage" else (".nii.gz" if data[:2] == b"\x1f\x8b" else ".nii")
    handle, name = tempfile.mkstemp(suffix=suffix, prefix="lungcad-")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        return _read_path(Path(name), fmt, what, frame, max_pixels, max_decode_bytes)
    finally:
        Path(name).unlink(missing_ok=True)


def _header_value(data: bytes, key: bytes) -> bytes:
    for line in data[:4096].splitlines():
        if line.split(b"=", 1)[0].strip() == key:
            return line.split(b"=", 1)[1].strip() if b"=" in line else b""
    return b""


def _read_path(path: Path, fmt: str, what: str, frame, max_pixels, max_decode_bytes
               ) -> LoadedImage:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise LungcadError(f"{what} could not be opened: the header is damaged or not a valid "
                           f"{fmt} file ({_first_line(error)})") from None
    size = tuple(int(n) for n in reader.GetSize())  # (x, y[, z])
    components = int(reader.GetNumberOfComponents())
    if len(size) < 2:
        raise LungcadError(f"{what} holds a {len(size)}-D image; lungcad reads 2-D images")
    check_pixel_count((size[1], size[0]), max_pixels, what)
    check_decode_bytes(size[0], size[1], components, 8, max_decode_bytes, what)
    slices = int(np.prod(size[2:])) if len(size) > 2 else 1
    if frame is not None and not 0 <= frame < slices:
        raise LungcadError(f"{what} has {slices} slice(s); frame={frame} is out of range (use 0 "
                           f"to {slices - 1})")
    if frame is None and slices > 1:
        raise LungcadError(f"{what} is a volume of {slices} slices; pass frame=N (0 to "
                           f"{slices - 1}) to pick one")
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise LungcadError(f"{what} could not be decoded: the file is truncated or damaged "
                           f"({_first_line(error)})") from None
    array = sitk.GetArrayFromImage(image)  # (z..., y, x[, components])
    if components > 1:
        array = array.reshape((-1,) + array.shape[-3:])[frame or 0]
    else:
        array = array.reshape((-1,) + array.shape[-2:])[frame or 0]
    spacing = tuple(float(s) for s in image.GetSpacing()[:2])
    meta = ImageMeta(format=fmt, original_shape=tuple(size[::-1]) if components == 1
                     else tuple(size[::-1]) + (components,),
                     bit_depth=8 * array.dtype.itemsize,
                     pixel_spacing_mm=(spacing[1], spacing[0]) if all(
                         np.isfinite(spacing)) and min(spacing) > 0 else None)
    gray = _display(array, meta, what)
    if gray.ndim == 3:
        if gray.shape[2] not in (3, 4):
            raise LungcadError(f"{what} has {gray.shape[2]} components a pixel; lungcad reads "
                               "gray or RGB(A) images")
        gray = rgb_to_gray(gray[..., :3], meta, what)
    return finish(gray, meta, what)


def _display(array: np.ndarray, meta: ImageMeta, what: str) -> np.ndarray:
    """Stored values to [0, 1] (module docstring)."""
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise LungcadError(f"{what} holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if array.dtype == np.uint8:
        meta.bit_depth = 8
        return (values / 255.0).astype(np.float32)
    if array.dtype.kind in "ui" and low >= 0:
        bits = max(8, int(np.ceil(np.log2(high + 1))) if high > 0 else 8)
        meta.bit_depth = bits
        return (values / (2 ** bits - 1)).astype(np.float32)
    if array.dtype.kind == "f" and low >= 0 and high <= 1:
        return values.astype(np.float32)
    add_note(meta, f"{what}: values from {low:g} to {high:g} were stretched to [0, 1] (lowest "
                   "to darkest)", warn=False)
    span = high - low
    return ((values - low) / span if span > 0 else np.zeros_like(values)).astype(np.float32)


def _first_line(error: BaseException) -> str:
    """ITK's message on one line, without source locations or object addresses."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [re.sub(r"\(0x[0-9a-fA-F]+\)", "", line.split("ERROR:", 1)[-1]).strip()
              for line in lines if not line.startswith("Exception thrown in")]
    return (" ".join(useful) or error_detail(error))[:300]
