"""Preprocessing belongs to the model: saved with it, applied identically in training and prediction.

Input is what :func:`lungcad.io.load_image` returns: a 2-D float32 array in display convention
(bright = dense, such as bone) scaled to [0, 1]. Output is a (channels, size, size) float32 array.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from lungcad.errors import LungcadError

MIN_SIDE = 32
RANGE_TOLERANCE = 1e-3


def resize_area(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float image: area averaging when shrinking, bilinear when enlarging.

    ``size`` is an int (square) or (height, width).
    """
    h, w = (size, size) if isinstance(size, int) else size
    if image.shape == (h, w):
        return image.astype(np.float32, copy=False)
    shrinking = h <= image.shape[0] and w <= image.shape[1]
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    out = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F").resize(
        (w, h), resample=resample)
    return np.asarray(out, dtype=np.float32)


ASPECT_RANGE = (0.33, 3.0)  # width / height that the square resize takes without a word


def aspect_note(shape: tuple[int, ...], source: str = "image") -> str | None:
    """What to tell a user about an image the square resize squeezes out of shape, or None."""
    height, width = shape[:2]
    aspect = width / height
    if ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1]:
        return None
    return (f"{source}: unusual aspect ratio {aspect:.2f} (width / height); the image is "
            "squeezed to a square for the model, which may distort it")


@dataclass(frozen=True)
class Preprocessing:
    size: int = 256
    channels: int = 1
    mean: float = 0.5
    std: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        known = {k: d[k] for k in ("size", "channels", "mean", "std") if k in d}
        return cls(**known)

    def check(self, image: np.ndarray, source: str = "image") -> None:
        check_pixels(image, source)
        note = aspect_note(image.shape, source)
        if note:
            warnings.warn(note, stacklevel=2)

    def apply(self, image: np.ndarray, source: str = "image") -> np.ndarray:
        self.check(image, source)
        resized = resize_area(image, self.size)
        normalised = (resized - self.mean) / self.std
        return np.repeat(normalised[None], self.channels, axis=0).astype(np.float32)


def check_pixels(image: np.ndarray, source: str = "image") -> None:
    """What every model needs of an image, whichever it is: 2-D, big enough, finite, in [0, 1]
    and not blank (a LungcadError that says which). Also checked before the modality routing,
    so that a blank or tiny image is told so rather than routed nowhere."""
    if image.ndim != 2:
        raise LungcadError(f"{source}: expected a 2-D grayscale image, got shape {image.shape}")
    if min(image.shape) < MIN_SIDE:
        raise LungcadError(f"{source}: {image.shape[1]}x{image.shape[0]} px is too small "
                           f"(at least {MIN_SIDE} px a side)")
    if not np.isfinite(image).all():
        raise LungcadError(f"{source}: the image holds NaN or infinite values")
    lo, hi = float(image.min()), float(image.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise LungcadError(
            f"{source}: values span [{lo:g}, {hi:g}], but models expect [0, 1] as "
            "lungcad.io.load_image returns; were raw pixel values passed in?")
    if hi - lo < 1e-6:
        raise LungcadError(f"{source}: the image is blank (every pixel is {lo:g})")
