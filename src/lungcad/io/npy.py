"""NumPy ``.npy``: a 2-D (or HxWx1) array; floats already in [0, 1], uint8 or uint16 scaled."""

from __future__ import annotations

import io

import numpy as np

from lungcad.errors import LungcadError
from lungcad.io.base import (ImageMeta, LoadedImage, check_decode_bytes, check_pixel_count,
                             error_text, finish)

_INTEGER_SCALES = {np.dtype(np.uint8): (255.0, 8), np.dtype(np.uint16): (65535.0, 16)}


def read_npy(data: bytes, label: str = "NumPy array", max_pixels: int = 100_000_000,
             max_decode_bytes: int | None = None) -> LoadedImage:
    """Decode an .npy file's bytes. Pickled (object) arrays are refused: they can run code;
    an array whose values exceed ``max_decode_bytes`` is refused from the header."""
    stream = io.BytesIO(data)
    shape, dtype = _read_header(stream, label)
    check_pixel_count(shape[:2] if len(shape) >= 2 else shape, max_pixels, label)
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 1)):
        raise LungcadError(f"{label} holds an array of shape {shape}; lungcad reads 2-D images "
                           "(H x W, or H x W x 1)")
    if dtype.kind not in "fui" or dtype.itemsize > 8:
        raise LungcadError(f"{label} holds {dtype} values; use float (in [0, 1]), uint8 or uint16")
    check_decode_bytes(int(shape[1]), int(shape[0]), 1, dtype.itemsize, max_decode_bytes, label)
    stream.seek(0)
    try:
        array = np.load(stream, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise LungcadError(f"{label} could not be read: the .npy file is truncated or damaged "
                           f"({error_text(error)})") from error
    if array.ndim == 3:
        array = array[..., 0]
    if dtype.kind == "f":
        if not np.isfinite(array).all():
            raise LungcadError(f"{label} holds NaN or infinite values")
        if array.min() < 0 or array.max() > 1:
            raise LungcadError(
                f"{label} holds floats from {float(array.min()):g} to {float(array.max()):g}; "
                "float arrays must already be in [0, 1] (display convention, 1 = bone). Scale "
                "them first, e.g. (a - a.min()) / (a.max() - a.min()), or save uint8/uint16")
        gray, bit_depth = array.astype(np.float32), dtype.itemsize * 8
    elif dtype.newbyteorder("=") in _INTEGER_SCALES:
        scale, bit_depth = _INTEGER_SCALES[dtype.newbyteorder("=")]
        gray = array.astype(np.float32) / np.float32(scale)
    else:
        raise LungcadError(f"{label} holds {dtype} integers; lungcad reads uint8 (/255), uint16 "
                           "(/65535) or floats in [0, 1]; convert the array to one of these")
    meta = ImageMeta(format="npy", original_shape=tuple(int(n) for n in shape), bit_depth=bit_depth)
    return finish(gray, meta, label)


def _read_header(stream: io.BytesIO, label: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header, before any data is allocated."""
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except Exception as error:  # numpy parses the header with tokenize + literal_eval, which
        # raise TokenError, SyntaxError, ValueError, RecursionError... on damaged text
        raise LungcadError(f"{label} is not a valid .npy file: its header is damaged "
                           f"({error_text(error)})") from error
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise LungcadError(f"{label} holds {dtype} values (objects or records); lungcad reads "
                           "plain float, uint8 or uint16 arrays and never unpickles objects")
    return tuple(int(n) for n in shape), dtype
