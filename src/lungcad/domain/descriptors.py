"""What an input image looks like, as a short vector of cheap statistics (numpy only).

The domain check (:mod:`lungcad.domain.reference`) and the radiograph-vs-CT classifier
(:mod:`lungcad.domain.modality`) both read these descriptors. They are computed from the image
as :func:`lungcad.io.load_image` returns it (2-D, [0, 1]) on the model's own input grid (its
preprocessing size), so that the PyTorch and ONNX runtimes give exactly the same numbers: no
network takes part, and the check works the same for classifiers, detectors and segmenters.

The vector (``N_DESCRIPTORS`` values):

- a 16 x 16 thumbnail (layout: where the body, lungs, bones and background lie);
- a 32-bin grey-level histogram (square-rooted shares; inverted grey levels, windowing);
- grey-level quantiles (1, 5, 25, 50, 75, 95, 99%), mean and standard deviation;
- texture on the input grid and at 64 px: log mean absolute Laplacian (noise), log mean
  gradient magnitude (sharpness, blur), and their ratio;
- row and column profiles at 16 px of the gradient energy (edges' layout).
"""

from __future__ import annotations

import numpy as np

from lungcad.preprocess import resize_area

THUMB = 16
BINS = 32
WORK = 64
QUANTILES = (1, 5, 25, 50, 75, 95, 99)
N_DESCRIPTORS = THUMB * THUMB + BINS + len(QUANTILES) + 2 + 6 + 2 * THUMB
# the global statistics (quantiles, mean, spread, texture): the domain reference's second part
GLOBAL = slice(THUMB * THUMB + BINS, THUMB * THUMB + BINS + len(QUANTILES) + 2 + 6)
_EPS = 1e-4


def _laplacian(a: np.ndarray) -> np.ndarray:
    return (a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4 * a[1:-1, 1:-1])


def _gradient(a: np.ndarray) -> np.ndarray:
    gy = a[2:, 1:-1] - a[:-2, 1:-1]
    gx = a[1:-1, 2:] - a[1:-1, :-2]
    return np.sqrt(gx * gx + gy * gy)


def _texture(a: np.ndarray) -> list[float]:
    lap = float(np.abs(_laplacian(a)).mean())
    grad = float(_gradient(a).mean())
    return [np.log(lap + _EPS), np.log(grad + _EPS), np.log((lap + _EPS) / (grad + _EPS))]


def describe(image: np.ndarray, size: int) -> np.ndarray:
    """The descriptor vector (float64, ``N_DESCRIPTORS``) of one 2-D image in [0, 1], seen on a
    ``size`` x ``size`` grid (the model's input size)."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    grid = resize_area(image, int(size)).astype(np.float64)
    work = resize_area(grid.astype(np.float32), WORK).astype(np.float64)
    thumb = resize_area(work.astype(np.float32), THUMB).astype(np.float64).ravel()
    hist = np.histogram(work, bins=BINS, range=(0.0, 1.0))[0] / work.size
    quantiles = np.percentile(work, QUANTILES)
    grad = _gradient(work)
    rows = resize_area(grad.astype(np.float32), (THUMB, 1)).ravel()
    cols = resize_area(grad.astype(np.float32), (1, THUMB)).ravel()
    parts = [thumb, np.sqrt(hist), quantiles, [work.mean(), work.std()],
             _texture(grid), _texture(work), np.log(rows + _EPS), np.log(cols + _EPS)]
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts])


def describe_many(images, size: int) -> np.ndarray:
    """(N, N_DESCRIPTORS) for a sequence of 2-D images."""
    rows = [describe(im, size) for im in images]
    return np.stack(rows) if rows else np.zeros((0, N_DESCRIPTORS))
