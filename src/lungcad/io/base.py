"""What every reader returns, and the small helpers readers share."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from lungcad.errors import LungcadError


@dataclass
class ImageMeta:
    format: str                          # "jsrt-raw", "png", "jpeg", "tiff", "bmp", "dicom", "npy"
    original_shape: tuple[int, ...]      # as stored, before conversion to 2-D gray
    bit_depth: int                       # significant bits of the stored values (8, 12, 16, ...)
    modality: str = "unknown"            # "radiograph", "ct", or "unknown"
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, column) where known
    photometric: str = "MONOCHROME2"     # as stored; MONOCHROME1 is inverted on reading
    window: tuple[float, float] | None = None  # (centre, width) applied, where one was
    units: str = "display"               # "display" ([0, 1]) or "HU" (CT read with hu=True)
    notes: list[str] = field(default_factory=list)  # warnings worth showing a user
    patient_age: str | None = None       # DICOM PatientAge as stored (e.g. "063Y"), where given
    patient_sex: str | None = None       # DICOM PatientSex as stored (M, F, O), where given


@dataclass
class LoadedImage:
    array: np.ndarray  # 2-D float32
    meta: ImageMeta


class ImageReadWarning(UserWarning):
    """Something about an image a user should know (colour marks dropped, alpha ignored...)."""


def add_note(meta: ImageMeta, message: str, *, warn: bool = True) -> None:
    """Record ``message`` in ``meta.notes`` and (unless ``warn`` is False, for harmless facts)
    emit it as a warning, so that nothing that changes the pixels is silent."""
    meta.notes.append(message)
    if warn:
        warnings.warn(message, ImageReadWarning, stacklevel=3)


# A pixel whose channels spread by more than this is "coloured". JPEG chroma rounding moves gray
# pixels by a level or two out of 255; burned-in marks differ by far more.
COLOUR_SPREAD = 12 / 255
# ITU-R BT.601 luma, Pillow's own weights for "L": keeps coloured marks visible as gray shapes.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def rgb_to_gray(rgb: np.ndarray, meta: ImageMeta, label: str) -> np.ndarray:
    """(H, W, 3) floats in [0, 1] to gray. Gray stored as RGB is taken as is; when the channels
    differ (colour marks burned in) the image is converted by luminance and a note is added."""
    rgb = rgb.astype(np.float32, copy=False)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    coloured = int(np.count_nonzero(spread > COLOUR_SPREAD))
    if coloured == 0:
        return rgb.mean(axis=2)
    add_note(meta, f"{label}: {coloured:,} pixel(s) ({100.0 * coloured / spread.size:.2f}%) have "
                   "differing colour channels (colour marks or annotations burned into the "
                   "image?); converted to gray by luminance, so the marks remain as gray shapes")
    return (rgb.astype(np.float64) @ _LUMA).astype(np.float32)


# A Python object's repr, e.g. "<_io.BytesIO object at 0x7f...>": internals, not for users.
_OBJECT_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")


def without_internals(text: str) -> str:
    """``text`` with Python object reprs (and their memory addresses) taken out."""
    return " ".join(_OBJECT_REPR.sub(" ", text).split())


def error_text(error: BaseException) -> str:
    """A third-party exception's message, fit for a user: no object reprs or addresses."""
    return without_internals(str(error)) or type(error).__name__


def error_detail(error: BaseException) -> str:
    """``Type: message`` of a third-party exception, as :func:`error_text` cleans it."""
    text = without_internals(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def check_pixel_count(shape: tuple[int, ...], max_pixels: int, what: str) -> None:
    """Refuse empty images and decompression bombs before any pixel is decoded."""
    if len(shape) == 0 or any(int(n) <= 0 for n in shape):
        raise LungcadError(f"{what} has no pixels (size {'x'.join(map(str, shape)) or 'none'})")
    count = 1
    for n in shape:
        count *= int(n)
    if count > max_pixels:
        raise LungcadError(
            f"{what} claims {count:,} pixels ({'x'.join(map(str, shape))}), more than the limit "
            f"of {max_pixels:,} (max_pixels); refusing it as a possible decompression bomb. "
            "Pass a larger max_pixels if the image is genuine.")


def check_decode_bytes(width: int, height: int, channels: int, sample_bytes: int,
                       max_decode_bytes: int | None, what: str) -> None:
    """Refuse an image whose decoded pixels (pixels x channels x bytes per sample) would take
    more than ``max_decode_bytes`` (None: no budget), from its header alone: a small file of many
    wide pixels (RGBA, 16-bit) costs memory that the pixel count does not show."""
    if max_decode_bytes is None:
        return
    needed = width * height * channels * sample_bytes
    if needed > max_decode_bytes:
        mb = 1024 * 1024
        raise LungcadError(
            f"{what} is {width}x{height} pixels x {channels} "
            f"channel{'s' if channels > 1 else ''} x {sample_bytes} "
            f"byte{'s' if sample_bytes > 1 else ''}: {needed / mb:.3g} MB to decode, more than "
            f"the limit of {max_decode_bytes / mb:.3g} MB (max_decode_bytes); refusing it "
            "before decoding. Send a smaller or grayscale image, or pass a larger "
            "max_decode_bytes if the image is genuine.")


def finish(array: np.ndarray, meta: ImageMeta, what: str) -> LoadedImage:
    """Last check every reader's output passes: 2-D, non-empty, finite float32 (in [0, 1] unless
    the caller asked for Hounsfield units)."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise LungcadError(f"{what} did not decode to a 2-D image (got shape {array.shape})")
    if not np.isfinite(array).all():
        raise LungcadError(f"{what} decoded to non-finite values (NaN or infinity)")
    if meta.units == "display":
        # Rounding in float32 arithmetic may overshoot by an ulp; anything more is a bug upstream.
        np.clip(array, 0.0, 1.0, out=array)
    return LoadedImage(array=array, meta=meta)
