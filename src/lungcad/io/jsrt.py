"""JSRT raw ``.IMG``: 2048x2048 pixels, 12-bit values in big-endian 16-bit words, no header.

Stored values rise with film density, so bone is dark; the conventional view (mednet, the Kaggle
PNG copies) is 4095 minus the value, which is what :func:`read_jsrt_raw` returns, scaled to [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcad.atomic import atomic_write
from lungcad.jsrt_geometry import JSRT_MATRIX, JSRT_PIXEL_SPACING_MM
from lungcad.errors import LungcadError
from lungcad.io.base import ImageMeta, LoadedImage, finish

JSRT_MAX_VALUE = 4095  # 12 bits
JSRT_BYTES = JSRT_MATRIX * JSRT_MATRIX * 2


def read_jsrt_raw(data: bytes, label: str = "JSRT image") -> LoadedImage:
    """Decode the bytes of a JSRT .IMG into display convention: (4095 - value) / 4095."""
    if len(data) != JSRT_BYTES:
        raise LungcadError(
            f"{label} is not a JSRT raw image: it has {len(data):,} bytes, but a JSRT .IMG "
            f"(2048x2048 pixels, 12-bit values in 16-bit big-endian words, no header) has "
            f"exactly {JSRT_BYTES:,} bytes")
    stored = np.frombuffer(data, dtype=">u2").reshape(JSRT_MATRIX, JSRT_MATRIX)
    highest = int(stored.max())
    if highest > JSRT_MAX_VALUE:
        raise LungcadError(
            f"{label} is not a JSRT raw image: it holds the value {highest}, but JSRT values are "
            f"12-bit (0 to {JSRT_MAX_VALUE}) in big-endian 16-bit words (a little-endian or "
            "otherwise different raw file?)")
    display = (np.float32(JSRT_MAX_VALUE) - stored.astype(np.float32)) / np.float32(JSRT_MAX_VALUE)
    meta = ImageMeta(format="jsrt-raw", original_shape=(JSRT_MATRIX, JSRT_MATRIX), bit_depth=12,
                     modality="radiograph",
                     pixel_spacing_mm=(JSRT_PIXEL_SPACING_MM, JSRT_PIXEL_SPACING_MM),
                     photometric="MONOCHROME1")
    return finish(display, meta, label)


def jsrt_raw_bytes(display: np.ndarray) -> bytes:
    """The bytes of a JSRT .IMG holding ``display`` (2048x2048, [0, 1], bright = bone), rounded
    to 12 bits: the inverse of :func:`read_jsrt_raw`."""
    display = np.asarray(display)
    if display.shape != (JSRT_MATRIX, JSRT_MATRIX):
        raise LungcadError(f"a JSRT .IMG is {JSRT_MATRIX}x{JSRT_MATRIX}; got an array of shape "
                           f"{display.shape} (resize it first)")
    if not np.issubdtype(display.dtype, np.number) or np.issubdtype(display.dtype, np.complexfloating):
        raise LungcadError(f"JSRT display array must be real numbers, not {display.dtype}")
    values = display.astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise LungcadError("JSRT display array must be finite and in [0, 1] (display "
                           "convention: 1 = bone); scale it first")
    stored = JSRT_MAX_VALUE - np.rint(values * JSRT_MAX_VALUE).astype(np.int64)
    return stored.astype(">u2").tobytes()


def write_jsrt_raw(display: np.ndarray, path: str | Path) -> Path:
    """Write ``display`` as a JSRT .IMG at ``path`` (atomically: temp file, then rename)."""
    path = Path(path)
    payload = jsrt_raw_bytes(display)
    try:
        atomic_write(path, payload)
    except OSError as error:
        raise LungcadError(f"could not write {path}: {error.strerror or error}") from error
    return path
